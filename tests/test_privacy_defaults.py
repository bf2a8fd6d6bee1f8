"""Whose face a real run shows, per consent path: no registry (nobody consented), a registry course with a consented or
an opted-out student, an explicit --blur choice, and a video turned by rotation metadata. Checked on the output video
with `engagement privacy-check`'s detectors."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pandas as pd
import pytest

from engagement.cli import main
from engagement.consent.registry import Registry
from engagement.privacy import leak_check
from engagement.sinks import VideoWriter
from engagement.sources import read_frames

pytestmark = pytest.mark.slow
FAST = ["--quiet", "--no-report", "--set", "classifier.enabled=false"]


@pytest.fixture(scope="module")
def webcam_clip(webcam_video: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 4 s of the webcam session: one person, track 1, face in view."""
    clip = tmp_path_factory.mktemp("clips") / "webcam4s.mp4"
    frames = list(read_frames(webcam_video, 40))
    writer = VideoWriter(clip, 10.0, frames[0].shape[1], frames[0].shape[0], crf=18)
    for frame in frames:
        writer.write(frame)
    writer.close()
    return clip


def faces_shown(original: Path, run: Path) -> int:
    return leak_check(original, run / "annotated.mp4")["totals"]["leaked_faces"]


def test_default_run_shows_no_face_and_says_so(webcam_clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["process", str(webcam_clip), "--out", str(tmp_path / "run"), *FAST]) == 0
    assert "faces hidden: everyone without a consent record on file (consent.blur: unconsented)" in capsys.readouterr().err
    assert faces_shown(webcam_clip, tmp_path / "run") == 0
    assert not pd.read_parquet(tmp_path / "run" / "tracks.parquet").empty  # still analysed, pseudonymously


def test_explicit_blur_choice_is_kept(webcam_clip: Path, tmp_path: Path) -> None:
    """--blur opted_out without a registry shows confirmed tracks' faces: the user asked for it."""
    assert main(["process", str(webcam_clip), "--out", str(tmp_path / "run"), "--blur", "opted_out", *FAST]) == 0
    assert faces_shown(webcam_clip, tmp_path / "run") > 20


@pytest.mark.parametrize("status, shown", [("consented", True), ("opted_out", False)])
def test_registry_shows_only_a_consented_students_face(webcam_clip: Path, tmp_path: Path, status: str, shown: bool) -> None:
    registry_path = tmp_path / "registry.sqlite"
    with Registry.open(registry_path) as registry:
        registry.add_course("CS101", "Intro")
        registry.add_approval("CS101", "I-1", "A-1", dt.date.today(), "all sessions")
        registry.set_consent("S1", "CS101", status)
    run = tmp_path / "run"
    settings = ["--set", f"consent.registry={registry_path}", "--set", "consent.course=CS101", "--set", "consent.track_students={1: S1}"]
    assert main(["process", str(webcam_clip), "--out", str(run), *settings, *FAST]) == 0
    tracks = pd.read_parquet(run / "tracks.parquet")
    if shown:
        assert faces_shown(webcam_clip, run) > 20 and set(tracks.track_id) == {1}
    else:
        assert faces_shown(webcam_clip, run) == 0 and tracks.empty
        assert json.loads((run / "session.json").read_text())["consent"]["people_excluded"] == 1


def test_rotation_metadata_is_honoured(classroom_video: Path, tmp_path: Path, ffmpeg) -> None:
    """A phone video stored sideways with a rotation flag: frames are analysed and written upright, faces hidden."""
    sideways, clip = tmp_path / "sideways.mp4", tmp_path / "rotated.mp4"
    ffmpeg("-i", classroom_video, "-t", "1", "-an", "-vf", "transpose=1", sideways)
    ffmpeg("-i", sideways, "-c", "copy", "-metadata:s:v:0", "rotate=90", clip)
    run = tmp_path / "run"
    assert main(["process", str(clip), "--out", str(run), *FAST]) == 0
    first = next(read_frames(run / "annotated.mp4"))
    assert first.shape[:2] == (720, 1280)
    result = leak_check(clip, run / "annotated.mp4")["totals"]
    assert result["faces_original"] > 100 and result["leaked_faces"] == 0
