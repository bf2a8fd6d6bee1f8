"""``engagement live`` where no window can open: one line and exit 2, never an abort inside Qt."""

import os
import re
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from engagement.errors import UserError


def short_clip(source: Path, target: Path, frames: int = 20) -> Path:
    """The first ``frames`` frames of ``source`` as an MJPG AVI."""
    capture = cv2.VideoCapture(str(source))
    writer = None
    for _ in range(frames):
        ok, frame = capture.read()
        assert ok
        if writer is None:
            writer = cv2.VideoWriter(str(target), cv2.VideoWriter_fourcc(*"MJPG"), 10, (frame.shape[1], frame.shape[0]))
        writer.write(frame)
    writer.release()
    capture.release()
    return target


def test_live_without_a_display_is_one_line_and_exit_2(webcam_video: Path, tmp_path: Path):
    clip = short_clip(webcam_video, tmp_path / "clip.avi")
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env["QT_QPA_PLATFORM"] = "xcb"  # what a desktop session uses; without a display Qt aborts the process on it
    # A subprocess: if the check were missing, Qt's abort would take the test runner down with it.
    result = subprocess.run([sys.executable, "-m", "engagement.cli", "live", "--source", str(clip), "--duration", "2"],
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.count("\n") == 1 and "no display" in result.stderr and "--no-window" in result.stderr


def test_a_window_opencv_cannot_open_is_a_user_error(monkeypatch: pytest.MonkeyPatch):
    from engagement import live

    def imshow(name, image):
        raise cv2.error("OpenCV(5.1.0) window.cpp:1301: error: (-2:Unspecified error) The function is not implemented.")

    monkeypatch.setattr(cv2, "imshow", imshow)
    with pytest.raises(UserError, match=r"cannot open the live window \(.*not implemented.*\); use --no-window"):
        live.show(None)


def test_no_display_is_refused_before_anything_opens(monkeypatch: pytest.MonkeyPatch):
    from engagement import live

    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(UserError, match="no display"):
        live.require_display()
    monkeypatch.setenv("WAYLAND_DISPLAY", "wayland-0")
    live.require_display()


def test_the_live_class_score_is_the_mean_of_the_last_minute():
    import time

    import numpy as np

    from engagement.detections import Detections
    from engagement.live import AnalysisWorker

    def analyzer(frame, time_s):  # a fake analysis: two students, the second opted out (no score)
        people = Detections.from_boxes(np.array([[0, 0, 10, 10], [20, 0, 30, 10]], np.float32), track_id=np.array([1, 2]))
        people.data["score"] = np.array([time_s, np.nan])
        return people

    worker = AnalysisWorker(analyzer)
    try:
        assert worker.class_score is None
        for time_s, expected in ((10.0, 10.0), (50.0, 30.0), (100.0, 75.0)):  # at 100 s, the row at 10 s is over a minute old
            worker.offer(np.zeros((4, 4, 3), np.uint8), time_s)
            deadline = time.monotonic() + 5
            while worker.class_score != expected and time.monotonic() < deadline:
                time.sleep(0.01)
            assert worker.class_score == expected
    finally:
        worker.stop()


def test_nothing_is_shown_before_the_first_analysis(models_dir: Path):
    """Until the analysis thread returns its first result nobody's head region is known, so the live view obscures
    the whole frame; from then on it shows the anonymized, annotated frame."""
    import numpy as np

    from engagement.config import load_pipeline
    from engagement.detections import Detections
    from engagement.live import LiveView
    from engagement.pipeline.render import Renderer

    class NoAnalysisYet:
        analysed, error, latest = 0, None, Detections.empty()

        def offer(self, frame, time_s):
            pass

    config = load_pipeline("webcam", [f"models_dir={models_dir}"])
    frame = np.random.default_rng(0).integers(0, 255, (120, 160, 3), np.uint8)
    view = LiveView.__new__(LiveView)
    view.frames, view.info = [(0, frame), (1, frame)], type("Info", (), {"fps": 10.0, "height": 120})()
    view.renderer, view.worker = Renderer(config, 10.0), NoAnalysisYet()
    view.interval, view.pace, view.shown, view.started, view._framed = 0.1, False, 0, 0.0, (0, False)
    first = next(iter(view))
    assert first[60:, :].std() < 0.2 * frame.std()  # obscured whole (the rates overlay is drawn at the top)
    view.worker.analysed = 1
    shown = list(iter(view))[-1]
    expected = Renderer(config, 10.0)(frame, Detections.empty())  # nobody in view: the frame with its legend
    assert np.array_equal(shown[60:, :], expected[60:, :]) and shown[60:, :].std() > 0.6 * frame.std()
    config = load_pipeline("webcam", [f"models_dir={models_dir}", "consent.blur=none"])
    assert np.array_equal(Renderer(config, 10.0).hidden(frame), frame)  # the policy hides nobody


def test_recording_a_live_view_with_a_course_is_refused(tmp_path: Path):
    """Consenting students' faces would be kept in a file that no withdrawal or purge can find."""
    from engagement.config import load_pipeline
    from engagement.live import run_live

    config = load_pipeline("webcam", ["consent.course=CS101", "consent.track_students={1: S1}"])
    with pytest.raises(UserError, match="no withdrawal can find"):
        run_live(str(tmp_path / "never-opened.mp4"), config, window=False, record=str(tmp_path / "view.mp4"))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["view.avi", "view", "view.mp4.txt"])
def test_a_recording_not_named_mp4_is_refused_before_anything_opens(tmp_path: Path, name: str):
    """The recording is written as MP4 whatever its name: a name that says otherwise is refused."""
    from engagement.config import load_pipeline
    from engagement.live import run_live

    with pytest.raises(UserError, match="its name ends in .mp4"):
        run_live(str(tmp_path / "never-opened.mp4"), load_pipeline("webcam"), window=False, record=str(tmp_path / name))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("existing, message", [
    ("source.mp4", "source.mp4: it already exists; choose another name"),  # --record named the video being watched
    ("view.mp4", "view.mp4: it already exists; choose another name"),  # an earlier recording
    ("folder.mp4/view.mp4", "folder.mp4/view.mp4: " + "{tmp}/folder.mp4 is not a folder"),
    ("missing/view.mp4", "missing/view.mp4: {tmp}/missing does not exist"),
])
def test_a_recording_never_replaces_a_file_and_names_a_bad_folder(tmp_path: Path, existing: str, message: str):
    """``live --source v.mp4 --record v.mp4`` replaced the video with its recording, and any file was replaced."""
    from engagement.config import load_pipeline
    from engagement.live import run_live

    for name in ("source.mp4", "view.mp4", "folder.mp4"):
        (tmp_path / name).write_bytes(b"keep me")
    with pytest.raises(UserError, match=re.escape(message.format(tmp=tmp_path))):
        run_live(str(tmp_path / "source.mp4"), load_pipeline("webcam"), window=False, record=str(tmp_path / existing))
    assert all((tmp_path / name).read_bytes() == b"keep me" for name in ("source.mp4", "view.mp4", "folder.mp4"))


def test_the_live_view_says_when_the_student_is_framed_too_close():
    """One analysed student whose head fills most of the frame: the live view's line says to move back (it is judged
    once per analysis); a student at a normal distance gets no such line."""
    import numpy as np

    from engagement.detections import KEYPOINT_INDEX, NUM_KEYPOINTS, Detections
    from engagement.live import TOO_CLOSE, LiveView

    def student(eye_spread: float) -> Detections:
        keypoints = np.zeros((1, NUM_KEYPOINTS, 3), np.float32)
        for name, (x, y) in {"nose": (80, 60), "left_eye": (80 + eye_spread, 50), "right_eye": (80 - eye_spread, 50)}.items():
            keypoints[0, KEYPOINT_INDEX[name]] = (x, y, 0.9)
        return Detections.from_boxes(np.array([[0, 0, 160, 120]], np.float32), keypoints=keypoints, track_id=np.array([1]),
                                     opted_out=np.array([False]), blur=np.array([False]))

    view = LiveView.__new__(LiveView)
    view.info, view._framed = type("Info", (), {"height": 120})(), (0, False)
    view.worker = type("Worker", (), {"analysed": 1, "latest": student(40)})()  # a head box 144 px in a 120 px frame
    assert view.too_close
    view.worker.latest, view.worker.analysed = student(5), 2  # head box 40 px (a quarter of the box's width)
    assert not view.too_close
    assert "move back" in TOO_CLOSE
