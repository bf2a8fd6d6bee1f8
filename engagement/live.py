"""Live analysis of a camera, stream or file: the display never waits for the models.

Frames are shown as they arrive; analysis runs on a worker thread that always takes the newest
frame it is offered and skips the rest, and each shown frame uses the latest analysed detections.
"""

from __future__ import annotations

import collections
import contextlib
import os
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from engagement.annotate import TextAnnotator
from engagement.config import PipelineConfig
from engagement.detections import Detections
from engagement.errors import OutputError, UserError, error_line, os_error_reason
from engagement.framing import too_close
from engagement.pipeline.analyse import Analyzer
from engagement.pipeline.render import Renderer
from engagement.pipeline.run import for_source, with_running_baseline
from engagement.sinks import VideoWriter, remove_stale_partials
from engagement.sources import FrameSource

ESCAPE_KEYS = {ord("q"), ord("Q"), 27}
SCORE_WINDOW_S = 60.0  # the live class score is the mean student score over this much of the latest analysis
WINDOW = "engagement live"
NO_WINDOW_HINT = "use --no-window (with --record FILE to keep the view)"
TOO_CLOSE = "too close: move back so that shoulders and hands show"


def require_display() -> None:
    """Refuse a window where none can open: OpenCV's Qt backend aborts the whole process (no exception to catch)
    when Linux has neither an X11 nor a Wayland display."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise UserError(f"no display to open the live window on (DISPLAY and WAYLAND_DISPLAY are unset); {NO_WINDOW_HINT}")


def show(image: np.ndarray) -> bool:
    """Show ``image`` in the live window; whether q or Esc was pressed. An OpenCV without GUI support (the
    headless wheels) or a window that cannot open is a UserError."""
    import cv2

    try:
        cv2.imshow(WINDOW, image)
        return cv2.waitKey(1) & 0xFF in ESCAPE_KEYS
    except cv2.error as error:
        reason = error_line(error, last=True)
        raise UserError(f"cannot open the live window ({reason}); {NO_WINDOW_HINT}") from None


class AnalysisWorker:
    """Runs the analyzer on the newest offered frame; ``latest`` holds the newest result."""

    def __init__(self, analyzer: Analyzer) -> None:
        self.analyzer = analyzer
        self.latest = Detections.empty()
        self.latest.data.update(opted_out=np.zeros(0, bool), blur=np.zeros(0, bool), detected=np.zeros(0, bool))
        self.analysed = 0
        self.error: BaseException | None = None
        self._scores: collections.deque[tuple[float, float]] = collections.deque()  # (time, a student's score)
        self._offer: tuple[np.ndarray, float] | None = None
        self._ready = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="analysis", daemon=True)
        self._thread.start()

    def offer(self, frame: np.ndarray, time_s: float) -> None:
        """Hand over a frame; a frame still waiting is replaced (analysis skips, display does not wait)."""
        with self._ready:
            self._offer = (frame, time_s)
            self._ready.notify()

    def _run(self) -> None:
        while True:
            with self._ready:
                while self._offer is None and not self._stopped:
                    self._ready.wait()
                if self._stopped:
                    return
                frame, time_s = self._offer
                self._offer = None
            try:
                self.latest = self.analyzer(frame, time_s)
                self.analysed += 1
                self._keep_scores(self.latest, time_s)
            except BaseException as error:  # surfaced on the display thread
                self.error = error
                return

    def _keep_scores(self, detections: Detections, time_s: float) -> None:
        scores = np.asarray(detections.data.get("score", []), np.float64)
        self._scores.extend((time_s, float(score)) for score in scores[np.isfinite(scores)])
        while self._scores and self._scores[0][0] < time_s - SCORE_WINDOW_S:
            self._scores.popleft()

    @property
    def class_score(self) -> float | None:
        """The mean engagement score (0-100) of the analysed students over the last ``SCORE_WINDOW_S`` seconds;
        None before any student was scored."""
        scores = [score for _, score in list(self._scores)]
        return float(np.mean(scores)) if scores else None

    def stop(self) -> None:
        with self._ready:
            self._stopped = True
            self._ready.notify()
        self._thread.join()


class LiveView:
    """The analysed, anonymized view of a source, frame by frame: opens the source and the real models (webcam
    pipeline with the running baseline), paces a file to its frame rate when ``realtime``, and counts the frames
    shown and analysed since the start. Until the first analysis returns, every frame is obscured whole. Shared by
    ``engagement live`` and the web app's live page."""

    def __init__(self, source: str, config: PipelineConfig, realtime: bool = True) -> None:
        if config.consent.room is not None:
            raise UserError(f"consent by seat (consent.room {config.consent.room}) needs a recorded video: it places each "
                            "person after the whole recording; a live view cannot wait for that (map tracks by hand or blur everyone)")
        self.frames = FrameSource(source, buffer=2)
        self.info = self.frames.info
        config = for_source(with_running_baseline(config), self.info)  # a live view shows states as it goes
        try:
            self.analyzer = Analyzer.from_config(config)
            self.renderer = Renderer(config, self.info.fps)
            self.analyzer.warm_up(self.info.height, self.info.width)
            self.renderer.warm_up(self.info.height, self.info.width)
        except BaseException:
            self.frames.close()
            raise
        self.worker = AnalysisWorker(self.analyzer)
        self.interval = 1.0 / config.analysis_fps
        self.pace = realtime and not self.info.is_live
        self.shown = 0
        self.started = time.perf_counter()
        self._framed = (0, False)  # (analyses seen, too close)

    @property
    def elapsed(self) -> float:
        return max(time.perf_counter() - self.started, 1e-6)

    def __iter__(self) -> Iterator[np.ndarray]:
        """Rendered frames with the two rates drawn on them, until the source ends."""
        overlay = TextAnnotator()
        next_analysis = 0.0
        fps = self.info.fps
        for index, frame in self.frames:
            if self.pace and index / fps > self.elapsed:
                time.sleep(index / fps - self.elapsed)
            if self.worker.error is not None:
                raise self.worker.error
            if index / fps >= next_analysis:
                self.worker.offer(frame.copy(), index / fps)
                next_analysis += self.interval
            image = self.renderer(frame, self.worker.latest) if self.worker.analysed else self.renderer.hidden(frame)
            self.shown += 1
            rates = f"{self.display_fps:.1f} fps shown, {self.analysis_fps:.1f} fps analysed"
            overlay.annotate(image, rates + (f"; {TOO_CLOSE}" if self.too_close else ""))
            yield image

    @property
    def too_close(self) -> bool:
        """Whether the newest analysis framed the students closer than the states were measured to hold in
        (``engagement.framing``); judged once per analysis."""
        if self._framed[0] != self.worker.analysed:
            latest = self.worker.latest
            self._framed = (self.worker.analysed, too_close(latest, self.info.height))
        return self._framed[1]

    @property
    def display_fps(self) -> float:
        return self.shown / self.elapsed

    @property
    def analysis_fps(self) -> float:
        return self.worker.analysed / self.elapsed

    def stats(self) -> dict[str, Any]:
        """Frames shown and analysed, their rates since the start, and the confirmed tracks."""
        return {
            "frames": self.shown,
            "display_fps": self.display_fps,
            "analysed": self.worker.analysed,
            "analysis_fps": self.analysis_fps,
            "track_ids": self.analyzer.tracklets.tracking_record().confirmed_tracks,
            "class_score_last_minute": self.worker.class_score,
            "too_close": self.too_close,
        }

    def close(self) -> None:
        self.worker.stop()
        self.analyzer.close()
        self.frames.close()


class Recording:
    """The anonymized live view written to ``path``: checked before the models load, written beside it under a
    partial name, moved into place only when the view ended normally (a crash or a full disk keeps nothing)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.partial = path.with_name(f".{path.name}.partial-{os.getpid()}@{socket.gethostname()}.mp4")
        self.writer: VideoWriter | None = None
        if path.suffix.lower() != ".mp4":
            raise UserError(f"cannot record to {path}: the recording is an MP4 (H.264) file, so its name ends in .mp4")
        if not path.parent.is_dir():
            missing = "is not a folder" if path.parent.exists() else "does not exist"
            raise UserError(f"cannot record to {path}: {path.parent} {missing}")
        if path.exists() or path.is_symlink():  # the source video itself, an earlier recording: never replaced
            raise UserError(f"cannot record to {path}: it already exists; choose another name")
        remove_stale_partials(path.parent)
        try:
            tempfile.TemporaryFile(dir=path.parent).close()  # a read-only place fails now, before the models load
        except OSError as error:
            raise OutputError(f"cannot record to {path}: {os_error_reason(error)}") from None

    def open(self, info: Any, crf: int) -> None:
        self.writer = VideoWriter(self.partial, info.fps, info.width, info.height, crf, "ultrafast")

    def write(self, image: np.ndarray) -> None:
        assert self.writer is not None
        self.writer.write(image)

    def close(self, keep: bool) -> None:
        if self.writer is None:
            return
        try:
            self.writer.close()
        except OSError as error:  # a full disk: no half recording is kept
            self.partial.unlink(missing_ok=True)
            raise OutputError(f"cannot record to {self.path}: {os_error_reason(error)}; the recording was not kept") from error
        finally:
            self.writer = None
        if keep:
            self.partial.chmod(0o600)  # it shows people: readable by its owner only, as a run folder
            os.replace(self.partial, self.path)
        else:
            self.partial.unlink(missing_ok=True)


def run_live(
    source: str,
    config: PipelineConfig,
    window: bool = True,
    record: str | None = None,
    duration: float | None = None,
    realtime: bool = True,
) -> dict[str, Any]:
    """Show (and optionally record) the analysed view until the source ends, ``duration`` passes, or q/Esc/Ctrl-C.

    The overlay and the returned figures give two rates since the start: frames shown per second, and frames
    analysed per second (detection, tracking and states; at most ``analysis_fps``, lower when the models cannot keep up).
    """
    import cv2

    if window:
        require_display()
    if record and config.consent.course is not None and config.consent.blur != "all":
        raise UserError(f"--record with a course (consent.course {config.consent.course}) would keep consenting students' "
                        "faces in a file no withdrawal can find: record without a course, or with --blur all, or process "
                        "a recorded video instead")
    recording = Recording(Path(record)) if record else None
    view = LiveView(source, config, realtime)
    if recording is not None:
        recording.open(view.info, config.output.crf)
    completed = False
    try:
        for image in view:
            if duration is not None and view.elapsed >= duration:
                break
            if recording is not None:
                recording.write(image)
            if window and show(image):
                break
        completed = True
    except KeyboardInterrupt:
        completed = True
    finally:
        view.close()
        if recording is not None:
            recording.close(keep=completed)
        if window:
            with contextlib.suppress(cv2.error):  # a window that never opened (see ``show``) cannot be closed either
                cv2.destroyAllWindows()
    return view.stats()
