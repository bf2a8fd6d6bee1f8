"""Output faults against the real CLI with real files: a disk that fills up (a small tmpfs) during
``engagement process`` and ``engagement live --record``, and a read-only place. Each ends with one line and exit code
74, no traceback, and nothing half-written that looks complete."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest

pytestmark = pytest.mark.slow


def test_process_on_a_disk_that_fills_up_keeps_nothing(clip: Path, tmpfs: Callable, engagement: Callable, one_line_error: Callable) -> None:
    with tmpfs(size="2m", free=256 * 1024) as disk:  # the 3-second run writes about 700 kB
        line = one_line_error(engagement("process", clip, "--out", disk / "run", "--quiet"), exit_code=74)
        assert line == f"engagement: error: cannot write {disk / 'run'}: No space left on device; nothing of the run was kept"
        assert [path.name for path in disk.iterdir()] == ["filler"]  # no run, no hidden partial folder


def test_process_into_a_read_only_place(clip: Path, tmpfs: Callable, engagement: Callable, one_line_error: Callable) -> None:
    with tmpfs(read_only=True) as place:
        line = one_line_error(engagement("process", clip, "--out", place / "run", "--quiet"), exit_code=74)
        assert line == f"engagement: error: cannot create output directory {place / 'run'}: Read-only file system"


@pytest.mark.parametrize("read_only, reason", [
    (True, "Read-only file system"),
    (False, "No space left on device; the recording was not kept"),
])
def test_live_record_to_a_place_that_cannot_take_it(
    clip: Path, tmpfs: Callable, engagement: Callable, one_line_error: Callable, read_only: bool, reason: str
) -> None:
    with tmpfs(size="1m", read_only=read_only, free=None if read_only else 16 * 1024) as place:
        result = engagement("live", "--source", clip, "--no-window", "--as-fast-as-possible", "--record", place / "view.mp4")
        line = one_line_error(result, exit_code=74)
        assert line == f"engagement: error: cannot record to {place / 'view.mp4'}: {reason}"
        assert [path.name for path in place.iterdir()] == ([] if read_only else ["filler"])  # no half recording


@pytest.mark.slow
@pytest.mark.parametrize("pipeline", ["lecture", "webcam"])
def test_an_empty_room_is_an_ordinary_video(tmp_path: Path, pipeline: str) -> None:
    """Nobody in view for many analysis frames in a row (an empty room, a missed close-up): no crash, empty tables."""
    import numpy as np
    import pandas as pd

    from engagement.cli import main
    from engagement.sinks import VideoWriter

    video = tmp_path / "empty_room.mp4"
    writer = VideoWriter(video, 30.0, 320, 240)
    for index in range(60):
        writer.write(np.full((240, 320, 3), 40 + index % 3, np.uint8))
    writer.close()
    out = tmp_path / "run"
    assert main(["process", str(video), "--out", str(out), "--pipeline", pipeline, "--quiet", "--no-report"]) == 0
    assert pd.read_parquet(out / "tracks.parquet").empty and pd.read_parquet(out / "states.parquet").empty


def test_a_file_that_is_no_video_is_one_line_without_ffmpegs_own(tmp_path: Path, engagement: Callable, one_line_error: Callable,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """FFmpeg prints its reason ("moov atom not found") on its own; only -v shows it."""
    monkeypatch.delenv("OPENCV_FFMPEG_LOGLEVEL", raising=False)  # set by an in-process main() of an earlier test
    notes = tmp_path / "notes.mp4"
    notes.write_text("lecture notes, not a video")
    line = one_line_error(engagement("process", notes, "--out", tmp_path / "run"))
    assert line == f"engagement: error: {notes}: cannot be opened as a video" and not (tmp_path / "run").exists()
    assert "moov atom not found" in engagement("-v", "process", notes, "--out", tmp_path / "run").stderr
