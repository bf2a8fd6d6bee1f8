"""Frame sources: a video file, a camera index or a stream URL. The only code that opens video input."""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from engagement.errors import UserError, require_utf8

STREAM_PREFIXES = ("rtsp://", "rtmp://", "http://", "https://")


@dataclass(frozen=True)
class VideoInfo:
    """What we know about a source before reading it; ``frames`` is None for live sources."""

    source: str
    fps: float
    width: int
    height: int
    frames: int | None
    is_live: bool

    @property
    def duration_s(self) -> float | None:
        return None if self.frames is None else self.frames / self.fps


def parse_source(spec: str | int) -> str | int:
    """A camera index stays an int; anything else is a path or URL string."""
    if isinstance(spec, int) or (isinstance(spec, str) and spec.isdigit()):
        return int(spec)
    return spec


def open_capture(spec: str | int) -> cv2.VideoCapture:
    """``cv2.VideoCapture(spec)``; a name that is not UTF-8 (a stray byte Python keeps as a surrogate) is a
    UserError, since OpenCV ends the whole process on one (segmentation fault)."""
    if isinstance(spec, str):
        require_utf8(spec, "rename it")
    return cv2.VideoCapture(spec)


def _is_empty_video(path: str) -> bool:
    """True for a readable container that has a video stream but no frames in it."""
    import av

    try:
        with av.open(path) as container:
            return bool(container.streams.video) and next(container.decode(video=0), None) is None
    except (av.error.FFmpegError, OSError, StopIteration):
        return False


class FrameSource:
    """Iterate ``(index, frame)`` over a video file, camera or stream, BGR uint8.

    Frames are decoded on a background thread into a small bounded queue, so decoding overlaps
    with analysis without holding more than ``buffer`` frames in memory.
    """

    def __init__(self, spec: str | int, buffer: int = 8) -> None:
        self.spec = parse_source(spec)
        self.buffer = buffer
        self._capture = self._open(self.spec)
        ok, first = self._capture.read()
        if not ok or first is None:
            self._capture.release()
            if isinstance(self.spec, int):
                raise UserError(f"camera {self.spec} opened but gave no frames")
            raise UserError(f"{self.spec}: the video has no frames")
        self._first = first
        fps = self._capture.get(cv2.CAP_PROP_FPS)
        is_live = isinstance(self.spec, int) or str(self.spec).startswith(STREAM_PREFIXES)
        count = int(self._capture.get(cv2.CAP_PROP_FRAME_COUNT))
        self.info = VideoInfo(
            source=str(self.spec),
            fps=fps if fps and 0 < fps < 1000 else 30.0,
            width=first.shape[1],
            height=first.shape[0],
            frames=None if is_live or count <= 0 else count,
            is_live=is_live,
        )
        self._stop = threading.Event()
        self._start_s = self._container_time()
        self._times = [0.0]  # seconds since the first frame, one per frame decoded so far

    def _container_time(self) -> float | None:
        """The last decoded frame's presentation time in the container, in seconds; None for a camera or stream."""
        seconds = self._capture.get(cv2.CAP_PROP_POS_MSEC) / 1000
        return None if self.info.is_live or not np.isfinite(seconds) else float(seconds)

    def _next_time(self) -> float:
        """The frame just decoded, in seconds since the first frame: from the container, or one frame period after
        the last frame where it gives no increasing time (cameras, streams, containers without timestamps)."""
        previous = self._times[-1]
        seconds = self._container_time()
        if seconds is not None and self._start_s is not None and seconds - self._start_s > previous:
            return seconds - self._start_s
        return previous + 1 / self.info.fps

    def time_of(self, index: int) -> float:
        """Presentation time in seconds of frame ``index``, once it has been yielded: correct for variable-frame-rate
        files, where ``index / fps`` drifts."""
        return self._times[index]

    @staticmethod
    def _open(spec: str | int) -> cv2.VideoCapture:
        if isinstance(spec, int):
            capture = open_capture(spec)
            if not capture.isOpened():
                raise UserError(f"camera {spec} could not be opened (is it connected and free?)")
            return capture
        if not spec.startswith(STREAM_PREFIXES):
            path = Path(spec)
            if not path.exists():
                raise UserError(f"{spec}: no such file")
            if not path.is_file():
                raise UserError(f"{spec}: not a file")
        capture = open_capture(str(spec))
        if not capture.isOpened():
            capture.release()
            raise UserError(f"{spec}: {'the video has no frames' if _is_empty_video(spec) else 'cannot be opened as a video'}")
        return capture

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        return self.frames()

    def frames(self, wanted: Iterator[bool] | None = None) -> Iterator[tuple[int, np.ndarray | None]]:
        """``(index, frame)`` for every frame; where ``wanted`` (one flag per frame) says no, the frame is decoded
        (the codec needs it) but not converted to BGR, and comes as None: a first pass needs only its analysis
        frames' pixels."""
        frames: queue.Queue = queue.Queue(maxsize=self.buffer)
        end = object()

        def decode() -> None:
            frame = self._first
            if wanted is not None:
                next(wanted, None)  # the first frame is already converted
            try:
                while not self._stop.is_set():
                    frames.put(frame)
                    if wanted is None or next(wanted, True):
                        ok, frame = self._capture.read()
                    else:
                        ok, frame = self._capture.grab(), None
                    if not ok:
                        break
                    self._times.append(self._next_time())
            finally:
                frames.put(end)

        thread = threading.Thread(target=decode, name="decode", daemon=True)
        thread.start()
        index = 0
        try:
            while (frame := frames.get()) is not end:
                yield index, frame
                index += 1
        finally:
            self._stop.set()
            while thread.is_alive():  # unblock a decoder waiting on a full queue
                try:
                    frames.get_nowait()
                except queue.Empty:
                    time.sleep(0.001)
            self._capture.release()

    def close(self) -> None:
        self._stop.set()
        self._capture.release()


def read_frames(path: str | Path, max_frames: int | None = None) -> Iterator[np.ndarray]:
    """BGR frames of a video file in order, for the tools that read a whole file (leak check, benchmarks);
    a missing or unreadable file is a UserError."""
    if not Path(path).is_file():
        raise UserError(f"video not found: {path}")
    capture = open_capture(str(path))
    if not capture.isOpened():
        raise UserError(f"cannot read video {path}")
    try:
        index = 0
        while max_frames is None or index < max_frames:
            ok, frame = capture.read()
            if not ok:
                if index == 0:
                    raise UserError(f"cannot read video {path}: no frames decoded")
                return
            yield frame
            index += 1
    finally:
        capture.release()


def video_fps(path: str | Path) -> float:
    """The frame rate a video file declares, 30 when it declares none."""
    capture = open_capture(str(path))
    fps = capture.get(cv2.CAP_PROP_FPS) or 30.0
    capture.release()
    return fps


def read_frame_at(path: str | Path, time_s: float, last_if_past_end: bool = False) -> tuple[np.ndarray | None, float, int]:
    """The BGR frame at ``time_s`` seconds of a video file, its frame rate (30 when it declares none) and frame
    count (0 when unknown). Past the end the frame is None, or the last frame with ``last_if_past_end``.
    A missing file or one that is not a video is a UserError."""
    if not Path(path).is_file():
        raise UserError(f"{path}: no such file")
    capture = open_capture(str(path))
    try:
        if not capture.isOpened():
            raise UserError(f"{path}: cannot be opened as a video")
        fps = capture.get(cv2.CAP_PROP_FPS)
        fps = fps if 0 < fps < 1000 else 30.0
        frames = max(0, int(capture.get(cv2.CAP_PROP_FRAME_COUNT)))
        index = round(min(max(time_s * fps, 0.0), 2.0**31))  # far past the end is past the end, not an overflow
        capture.set(cv2.CAP_PROP_POS_FRAMES, min(index, frames - 1) if last_if_past_end and frames else index)
        ok, frame = capture.read()
    finally:
        capture.release()
    return frame if ok else None, fps, frames
