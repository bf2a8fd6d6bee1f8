"""Pass 1 of a recorded video, and the online pass of a stream: detect, track, check consent and extract features
on the *analysis frames* (``analysis_fps``, default 5 per second).

``Analyzer`` is built from its stages (``Analyzer.from_config`` builds the real ones), so the frame loop can be
tested with fakes. ``analyse_frames`` reads a whole recording and returns each analysis frame's detections by
frame index, for ``decide`` and then ``render``.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

import numpy as np

from engagement.config import PipelineConfig
from engagement.detections import Detections
from engagement.sources import FrameSource

if TYPE_CHECKING:
    from engagement.classifier.stage import StateStage
    from engagement.consent.stage import ConsentStage, RegistrySnapshot
    from engagement.detector import FaceFallback, PoseDetector
    from engagement.hands import HandWrists
    from engagement.tracker import Tracker


class StageTimer:
    """Wall time per stage, summed over the run (stages may run on several threads)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._lock = threading.Lock()

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            with self._lock:
                self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - start


def timed_iter(items: Any, timer: StageTimer, stage: str) -> Iterator[Any]:
    """Yield from ``items``, charging the time spent waiting for each item to ``stage``."""
    iterator = iter(items)
    while True:
        with timer(stage):
            item = next(iterator, StopIteration)
        if item is StopIteration:
            return
        yield item


def analysis_frames(fps: float, analysis_fps: float) -> Iterator[bool]:
    """For frame 0, 1, 2, ...: whether it is analysed, spreading ``analysis_fps`` evenly over ``fps``."""
    ratio = min(analysis_fps / fps, 1.0)
    index = 0
    while True:
        yield index == 0 or int(index * ratio) != int((index - 1) * ratio)
        index += 1


class Analyzer:
    """Everything that runs on an analysis frame, from raw pixels to flagged, classified detections.

    Besides the detections it keeps a log of every tracklet (``tracklets``: span, boxes, mean appearance), which
    ``decide`` stitches into one ID per person."""

    def __init__(
        self,
        config: PipelineConfig,
        detector: "PoseDetector",
        tracker: "Tracker",
        consent: "ConsentStage",
        states: "StateStage | None" = None,
        timer: StageTimer | None = None,
        fallback: "FaceFallback | None" = None,
        hands: "HandWrists | None" = None,
    ) -> None:
        from engagement.stitch import Tracklets

        self.config = config
        self.detector, self.tracker, self.consent, self.states = detector, tracker, consent, states
        self.fallback, self.hands = fallback, hands
        self.timer = timer or StageTimer()
        self.tracklets: Tracklets = Tracklets()

    @classmethod
    def from_config(cls, config: PipelineConfig, timer: StageTimer | None = None, consent: "RegistrySnapshot | None" = None) -> "Analyzer":
        """The real stages: YOLO pose (with the face fallback and the hands' wrists when enabled), DeepSORT, the
        consent stage (given ``consent``, the course's consent facts read earlier, it does not open the registry)
        and, when enabled, the state stage."""
        from engagement.anonymize import FaceDetector
        from engagement.classifier.stage import StateStage
        from engagement.consent.stage import ConsentStage
        from engagement.detector import FaceFallback, PoseDetector
        from engagement.hands import HandWrists
        from engagement.tracker import Tracker

        states = StateStage(config) if config.classifier.enabled else None
        detector = PoseDetector(config.detector, config.models_dir)
        faces = config.anonymizer
        fallback = FaceFallback(FaceDetector(faces.face_model, faces.face_confidence, faces.face_input_width, config.models_dir)) \
            if config.detector.face_fallback else None
        hands = HandWrists.from_config(config.hands, config.models_dir) if config.hands.enabled else None
        tracker = Tracker(config.tracker, config.analysis_fps)
        return cls(config, detector, tracker, ConsentStage(config.consent, snapshot=consent), states, timer, fallback, hands)

    def warm_up(self, height: int, width: int) -> None:
        """Run each model once on a blank frame, so one-time setup (OpenVINO compilation, MediaPipe graphs)
        happens while loading rather than on the first analysis frames."""
        blank = np.zeros((height, width, 3), np.uint8)
        self.detector.detect_batch([blank])
        if self.hands is not None:
            self.hands.confirmed_palms(blank)
        if self.states is not None:
            self.states.features.face(blank[:64, :64])

    def close(self) -> None:
        if self.states is not None:
            self.states.features.close()

    def detect(self, frames: list[np.ndarray]) -> list[Detections]:
        """The detector on several analysis frames at once (see ``PoseDetector.batch_size``)."""
        with self.timer("detect"):
            return self.detector.detect_batch(frames)

    def __call__(self, frame: np.ndarray, time_s: float, detections: Detections | None = None) -> Detections:
        """Track, check consent and classify the people in ``frame``; detects them unless ``detections`` are given."""
        if detections is None:
            (detections,) = self.detect([frame])
        if self.fallback is not None:
            with self.timer("detect"):
                detections = self.fallback(frame, detections)
        if self.hands is not None:
            with self.timer("hands"):
                detections = self.hands(frame, detections)
        with self.timer("track"):
            detections = self.tracker.update(frame, detections)
        embeddings = detections.data.pop("embedding", None)
        detections = self.consent(detections)
        detections.data["detected"] = np.ones(len(detections), bool)
        self.tracklets.add(time_s, detections, embeddings)
        if self.states is not None:
            detections = self.states(frame, detections, time_s, self.timer)
        return detections


def detected_frames(
    frames: Iterable[tuple[int, np.ndarray]], schedule: Iterator[bool], detect: Callable[[list[np.ndarray]], list[Detections]], batch: int
) -> Iterator[tuple[int, np.ndarray, Detections | None]]:
    """Frames in order, each with its detections if ``schedule`` makes it an analysis frame, else ``None``.

    The detector runs on ``batch`` analysis frames at a time, on a thread of its own and one batch ahead: while
    the caller tracks and classifies the people of one batch, the next is being detected (on two cores, pass 1
    otherwise keeps one core idle). Up to two batches of analysis frames and the frames between them are held.
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="detect") as detector:
        ahead: tuple[list[tuple[int, np.ndarray, bool]], Future] | None = None
        held: list[tuple[int, np.ndarray, bool]] = []
        for index, image in frames:
            held.append((index, image, next(schedule)))
            if sum(is_key for *_, is_key in held) == batch:
                submitted = (held, detector.submit(_detect_keyframes, held, detect))
                if ahead is not None:
                    yield from _with_detections(*ahead)
                ahead, held = submitted, []
        if ahead is not None:
            yield from _with_detections(*ahead)
        yield from _with_detections(held, detector.submit(_detect_keyframes, held, detect))


def _detect_keyframes(held: list[tuple[int, np.ndarray, bool]], detect: Callable[[list[np.ndarray]], list[Detections]]) -> list[Detections]:
    keyframes = [image for _, image, is_key in held if is_key]
    return detect(keyframes) if keyframes else []


def _with_detections(held: list[tuple[int, np.ndarray, bool]], detections: Future) -> Iterator[tuple[int, np.ndarray, Detections | None]]:
    found = iter(detections.result())
    for index, image, is_key in held:
        yield index, image, next(found) if is_key else None


def analyse_frames(source: FrameSource, analyzer: Analyzer, progress: Any = None) -> dict[int, Detections]:
    """Pass 1 of a recorded video: detect, track, check consent and extract features (with the running baseline,
    classify too) on the analysis frames; returns each analysis frame's detections by frame index."""
    fps = source.info.fps
    schedule = analysis_frames(fps, analyzer.config.analysis_fps)
    keyframes = {}
    decoded = timed_iter(source.frames(wanted=analysis_frames(fps, analyzer.config.analysis_fps)), analyzer.timer, "decode")
    for index, image, detections in detected_frames(decoded, schedule, analyzer.detect, analyzer.detector.batch_size):
        if detections is not None:
            keyframes[index] = analyzer(image, source.time_of(index), detections)
        if progress is not None:
            progress.update(1)
    return keyframes
