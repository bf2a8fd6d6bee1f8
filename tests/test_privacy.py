"""Leak check on real video: a policy-``all`` anonymization leaves no detectable face; an untouched copy leaks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from engagement.cli import main
from engagement.config import AnonymizerConfig
from engagement.errors import UserError
from engagement.privacy import anonymize_video, leak_check
from engagement.sources import read_frames

FRAMES = 149  # the whole classroom video: faces turn towards the camera late in it (frames 94, 112)


@pytest.fixture(scope="module")
def anonymized_classroom(classroom_video: Path, models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("privacy") / "anonymized.mp4"
    anonymize_video(classroom_video, target, AnonymizerConfig(), analysis_fps=5.0, max_frames=FRAMES, models_dir=str(models_dir))
    return target


@pytest.mark.slow
def test_policy_all_leaks_no_face(classroom_video: Path, anonymized_classroom: Path, models_dir: Path) -> None:
    report = leak_check(classroom_video, anonymized_classroom, models_dir=str(models_dir), max_frames=FRAMES)
    totals = report["totals"]
    assert totals["frames"] == FRAMES and totals["faces_original"] >= 15 * FRAMES
    assert totals["leak_frames"] == 0 and totals["leaked_faces"] == 0


@pytest.mark.slow
def test_cli_flags_an_untouched_copy(classroom_video: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    copy = tmp_path / "copy.mp4"
    shutil.copy(classroom_video, copy)
    figures = tmp_path / "leaks.json"
    assert main(["privacy-check", str(classroom_video), str(copy), "--max-frames", "3", "--json", str(figures)]) == 1
    report = json.loads(figures.read_text())
    assert report["totals"]["leak_frames"] == 3
    assert report["totals"]["leaked_faces"] == report["totals"]["faces_original"] > 0
    assert "leaked" in capsys.readouterr().out


def test_a_region_off_the_frame_or_a_mistyped_models_folder_is_refused(classroom_video: Path, tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """An untouched copy passed the check with --region off the frame: 0 faces counted, 0 leaked, exit 0."""
    copy = tmp_path / "copy.mp4"
    shutil.copy(classroom_video, copy)
    assert main(["privacy-check", str(classroom_video), str(copy), "--max-frames", "2", "--region", "5000,5000,6000,6000"]) == 2
    error = capsys.readouterr().err
    assert "--region 5000,5000,6000,6000 lies outside the 1280x720 frame: it would check no face" in error
    assert error.count("\n") == 1
    # a mistyped models folder was ignored (the detector came from elsewhere); process refuses it
    assert main(["privacy-check", str(classroom_video), str(copy), "--models-dir", str(tmp_path / "typo")]) == 2
    assert "--models-dir" in capsys.readouterr().err


def test_a_json_file_that_cannot_be_written_is_refused_before_the_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Named as given, not as the hidden temporary file beside it, and before any frame is read."""
    figures = tmp_path / "nodir" / "leaks.json"
    missing = str(tmp_path / "missing.mp4")
    assert main(["privacy-check", missing, missing, "--json", str(figures)]) == 2
    assert capsys.readouterr().err == f"engagement: error: cannot write {figures}: folder {figures.parent} does not exist\n"


def anonymized_classroom_short(classroom_video: Path, tmp_path: Path) -> Path:
    """The first two frames of the classroom video, re-encoded: a stand-in for a truncated output."""
    import cv2

    target = tmp_path / "short.mp4"
    frames = list(read_frames(classroom_video, 2))
    writer = cv2.VideoWriter(str(target), cv2.VideoWriter_fourcc(*"mp4v"), 30, (frames[0].shape[1], frames[0].shape[0]))
    for frame in frames:
        writer.write(frame)
    writer.release()
    return target


@pytest.mark.slow
def test_missing_or_unreadable_video(classroom_video: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not found"):
        leak_check(classroom_video, tmp_path / "missing.mp4")
    with pytest.raises(UserError, match="differ in length"):
        leak_check(classroom_video, anonymized_classroom_short(classroom_video, tmp_path))
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"not a video" * 100)
    with pytest.raises(UserError, match="cannot read video"):
        leak_check(classroom_video, garbage)
