"""The video pipeline: source -> detect -> track -> consent -> features -> classify -> anonymize -> annotate -> sinks.

Detection and everything after it runs on *analysis frames* (``analysis_fps``, default 5 per second).
The frames in between are held in a small buffer until the next analysis frame arrives, then get boxes
and keypoints interpolated between the two (``detected=False``), so the annotated video is smooth at
the full frame rate and the anonymizer follows every person on every frame.
"""

from __future__ import annotations

import json
import platform
import queue
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import pyarrow as pa

from engagement import __version__
from engagement.annotate import annotate
from engagement.config import PipelineConfig, to_dict
from engagement.detections import Detections
from engagement.models import file_sha256, find_model
from engagement.sinks import TRACK_SCHEMA, RunDirectory, TableWriter, VideoWriter, copy_audio, parquet_to_csv, track_rows
from engagement.sources import FrameSource, VideoInfo

VERSIONED_PACKAGES = ("classroom-engagement", "ultralytics", "torch", "openvino", "deep-sort-realtime", "mediapipe", "diffusers", "opencv-python", "numpy", "pandas")


class StageTimer:
    """Wall time per stage, summed over the run."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - start


def analysis_frames(fps: float, analysis_fps: float) -> Iterator[bool]:
    """For frame 0, 1, 2, ...: whether it is analysed, spreading ``analysis_fps`` evenly over ``fps``."""
    ratio = min(analysis_fps / fps, 1.0)
    index = 0
    while True:
        yield index == 0 or int(index * ratio) != int((index - 1) * ratio)
        index += 1


@dataclass
class Keyframe:
    index: int
    detections: Detections


def interpolate(before: Keyframe | None, after: Keyframe | None, index: int) -> Detections:
    """Detections for a frame between two analysis frames.

    A track seen on both sides moves linearly from one box to the other; a person seen on one side
    only (including untracked detections) is held in place, so the anonymizer fails closed.
    """
    sides = [k for k in (before, after) if k is not None]
    if not sides:
        return Detections.empty()
    if len(sides) == 1:
        held = sides[0].detections[np.arange(len(sides[0].detections))]
        held.data["detected"] = np.zeros(len(held), bool)
        return held
    alpha = (index - before.index) / (after.index - before.index)
    a, b = before.detections, after.detections
    shared = np.intersect1d(a.track_id[a.track_id >= 0], b.track_id[b.track_id >= 0])
    in_a, in_b = np.isin(a.track_id, shared), np.isin(b.track_id, shared)
    order_a = np.argsort(a.track_id[in_a])
    order_b = np.argsort(b.track_id[in_b])
    moving_a, moving_b = a[in_a][order_a], b[in_b][order_b]
    moving = (moving_a if alpha < 0.5 else moving_b)[np.arange(len(shared))]
    moving.xyxy = (1 - alpha) * moving_a.xyxy + alpha * moving_b.xyxy
    moving.keypoints = moving_a.keypoints.copy()
    moving.keypoints[..., :2] = (1 - alpha) * moving_a.keypoints[..., :2] + alpha * moving_b.keypoints[..., :2]
    moving.keypoints[..., 2] = np.minimum(moving_a.keypoints[..., 2], moving_b.keypoints[..., 2])
    moving.confidence = np.minimum(moving_a.confidence, moving_b.confidence)
    result = Detections.merge([moving, a[~in_a], b[~in_b]])
    result.data["detected"] = np.zeros(len(result), bool)
    return result


class Analyzer:
    """Everything that runs on an analysis frame, from raw pixels to flagged, classified detections."""

    def __init__(self, config: PipelineConfig, timer: StageTimer | None = None) -> None:
        from engagement.consent.stage import ConsentStage
        from engagement.detector import PoseDetector
        from engagement.tracker import Tracker

        self.config = config
        self.timer = timer or StageTimer()
        self.detector = PoseDetector(config.detector, config.models_dir)
        self.tracker = Tracker(config.tracker, config.analysis_fps)
        self.consent = ConsentStage(config.consent)
        self.states = StateStage(config) if config.classifier.enabled else None
        self.max_people = 0
        self.confirmed_ids: set[int] = set()

    def warm_up(self, height: int, width: int) -> None:
        """Run each model once on a blank frame, so one-time setup (OpenVINO compilation, MediaPipe graphs)
        happens while loading rather than on the first analysis frames."""
        blank = np.zeros((height, width, 3), np.uint8)
        self.detector.detect_batch([blank])
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
        with self.timer("track"):
            detections = self.tracker.update(frame, detections)
        detections = self.consent(detections)
        detections.data["detected"] = np.ones(len(detections), bool)
        self.max_people = max(self.max_people, len(detections))
        self.confirmed_ids.update(detections.track_id[detections.track_id >= 0].tolist())
        if self.states is not None:
            detections = self.states(frame, detections, time_s, self.timer)
        return detections


def with_running_baseline(config: PipelineConfig) -> PipelineConfig:
    """The configuration with ``classifier.baseline: running``: what a live view, a camera or a stream can run
    (there is no whole session yet to compare each person with, and a stream cannot be read twice)."""
    return replace(config, classifier=replace(config.classifier, baseline="running"))


def analysable(detections: Detections) -> np.ndarray:
    """Rows that may enter analytics: confirmed tracks of people who are not opted out."""
    return (detections.track_id >= 0) & ~np.asarray(detections.data["opted_out"], bool)


class StateStage:
    """Features -> classifier -> per-track smoothing -> engagement score, for consenting tracks only.

    With ``classifier.baseline: session`` each analysis frame's rows are only recorded; ``settle`` then
    compares every track with its whole session and fills in the states (the first pass of a recorded video).
    """

    def __init__(self, config: PipelineConfig) -> None:
        from engagement.classifier.model import load_classifier
        from engagement.features import FeatureExtractor
        from engagement.states import StateSmoother

        self.features = FeatureExtractor(config.classifier, config.models_dir)
        self.classifier = load_classifier(config.classifier)
        self.smoother = StateSmoother(config.classifier.smoothing_s)
        self.weights = config.classifier.weights
        self.session_baseline = config.classifier.baseline == "session"
        # (detections, analysable rows, their frame features, fresh-face flags, time) per analysis frame
        self._recorded: list[tuple[Detections, np.ndarray, np.ndarray, np.ndarray, float]] = []

    def classifier_record(self) -> dict[str, Any]:
        """Provenance of the state classifier, with its model card for the report."""
        from engagement.classifier.model import PACKAGED_WEIGHTS

        path = Path(self.weights) if self.weights else PACKAGED_WEIGHTS
        return {"name": "engagement state classifier", "file": str(path), "sha256": file_sha256(path), "card": self.classifier.model_card()}

    def __call__(self, frame: np.ndarray, detections: Detections, time_s: float, timer: StageTimer) -> Detections:
        from engagement.states import STATES

        rows = analysable(detections)
        if self.session_baseline:
            with timer("features"):
                frame_features, fresh = self.features.frame_features(frame, detections[rows], time_s)
            self._recorded.append((detections, rows, frame_features, fresh, time_s))
            return detections
        probs = np.full((len(detections), len(STATES)), np.nan, np.float32)
        if rows.any():
            subset = detections[rows]
            with timer("features"):
                features = self.features(frame, subset, time_s)
            with timer("classify"):
                raw = self.classifier.predict_proba(features)
                probs[rows] = self.smoother.update(subset.track_id, raw, time_s)
        set_states(detections, rows, probs)
        return detections

    def settle(self, timer: StageTimer) -> None:
        """Classify the recorded rows against each track's whole-session baseline, then smooth them per track
        in time order, as the running mode would have: states for every recorded analysis frame."""
        from engagement.features import RELATIVE_FEATURES, session_relative
        from engagement.states import STATES

        if not self._recorded:
            return
        with timer("classify"):
            track_ids = np.concatenate([detections.track_id[rows] for detections, rows, *_ in self._recorded])
            frame_features = np.concatenate([features for _, _, features, _, _ in self._recorded])
            fresh = np.concatenate([flags for *_, flags, _ in self._recorded])
            relative = np.full((len(track_ids), len(RELATIVE_FEATURES)), np.nan, np.float32)
            for track_id in np.unique(track_ids):
                mine = track_ids == track_id
                relative[mine] = session_relative(frame_features[mine], fresh[mine])
            raw = self.classifier.predict_proba(np.concatenate([frame_features, relative], axis=1))
            start = 0
            for detections, rows, features, _, time_s in self._recorded:
                probs = np.full((len(detections), len(STATES)), np.nan, np.float32)
                if len(features):
                    probs[rows] = self.smoother.update(detections.track_id[rows], raw[start:start + len(features)], time_s)
                start += len(features)
                set_states(detections, rows, probs)
        self._recorded.clear()


def set_states(detections: Detections, rows: np.ndarray, probs: np.ndarray) -> None:
    """Attach smoothed state probabilities, the state and the engagement score to the analysable ``rows``."""
    from engagement.scoring import engagement_score
    from engagement.states import STATES

    detections.data["state_probs"] = probs
    detections.data["state"] = [STATES[int(np.argmax(p))] if ok else "" for p, ok in zip(probs, rows)]
    detections.data["score"] = np.where(rows, engagement_score(np.nan_to_num(probs)), np.nan)


def state_rows(frame_index: int, time_s: float, detections: Detections) -> dict[str, Any]:
    """Columns of ``states.parquet`` for one analysis frame's classified rows."""
    from engagement.states import STATES

    keep = np.array([bool(s) for s in detections.data.get("state", [""] * len(detections))], bool)
    rows = detections[keep]
    columns: dict[str, Any] = {
        "frame": np.full(len(rows), frame_index, np.int64),
        "time_s": np.full(len(rows), time_s),
        "track_id": rows.track_id,
    }
    for i, state in enumerate(STATES):
        columns[f"p_{state}"] = rows.data["state_probs"][:, i] if len(rows) else np.empty(0, np.float32)
    columns["state"] = list(rows.data["state"])
    return columns


def states_schema() -> pa.Schema:
    from engagement.states import STATES

    return pa.schema([("frame", pa.int64()), ("time_s", pa.float64()), ("track_id", pa.int64())]
                     + [(f"p_{s}", pa.float32()) for s in STATES] + [("state", pa.string())])


class Renderer:
    """Per output frame: anonymize (before anything is drawn), then draw the opted-out seat zones, boxes, IDs,
    skeletons and states, and with the classifier on a legend of the state colours and the class score."""

    def __init__(self, config: PipelineConfig, fps: float) -> None:
        from engagement.annotate import DEFAULT_ANNOTATORS, ClassScoreAnnotator, LegendAnnotator, SeatZoneAnnotator

        self.blur_all = config.consent.blur == "all"
        self.anonymizer = None
        if config.consent.blur != "none":
            from engagement.anonymize import Anonymizer

            self.anonymizer = Anonymizer(config.anonymizer, fps, config.models_dir)
        scoring = (LegendAnnotator(), ClassScoreAnnotator()) if config.classifier.enabled else ()
        self.annotators = (SeatZoneAnnotator(config.consent.opted_out_seats), *DEFAULT_ANNOTATORS, *scoring)

    def warm_up(self, height: int, width: int) -> None:
        """Compile the face detector for this frame size before the first frame (see ``Analyzer.warm_up``)."""
        if self.anonymizer is not None:
            self.anonymizer.warm_up(height, width)

    def faces(self, frame: np.ndarray, index: int) -> np.ndarray | None:
        """The anonymizer's face boxes for frame ``index`` (None without an anonymizer)."""
        return self.anonymizer.find_faces(frame, index) if self.anonymizer is not None else None

    def __call__(self, frame: np.ndarray, detections: Detections, faces: np.ndarray | None = None) -> np.ndarray:
        if self.anonymizer is not None:
            frame = self.anonymizer.annotate(frame, detections, self.blur_all, faces)
        return annotate(frame, detections, self.annotators)


class RunWriter:
    """The tables and video of a run, written as frames come (memory stays flat)."""

    def __init__(self, directory: Path, info: VideoInfo, config: PipelineConfig, video: bool) -> None:
        self.directory = directory
        self.config = config
        self.tracks = TableWriter(directory / "tracks.parquet", TRACK_SCHEMA)
        self.states = TableWriter(directory / "states.parquet", states_schema()) if config.classifier.enabled else None
        self.video = None
        if video:
            self.video = VideoWriter(directory / "annotated.mp4", info.fps, info.width, info.height, config.output.crf, config.output.preset)

    def frame(self, index: int, time_s: float, image: np.ndarray, detections: Detections) -> None:
        self.tracks.append(track_rows(index, time_s, detections[analysable(detections)]))
        if self.video is not None:
            self.video.write(image)

    def analysis(self, index: int, time_s: float, detections: Detections) -> None:
        if self.states is not None:
            self.states.append(state_rows(index, time_s, detections))

    def close(self) -> None:
        self.tracks.close()
        if self.states is not None:
            self.states.close()
        if self.video is not None:
            self.video.close()


def timed_iter(items: Any, timer: StageTimer, stage: str) -> Iterator[Any]:
    """Yield from ``items``, charging the time spent waiting for each item to ``stage``."""
    iterator = iter(items)
    while True:
        with timer(stage):
            item = next(iterator, StopIteration)
        if item is StopIteration:
            return
        yield item


class RenderWorker:
    """Anonymize, annotate and write frames in order on a background thread, fed by a bounded queue,
    so the encoder overlaps with detection on the next analysis frame. The anonymizer's face detector
    needs only pixels, so it runs on a thread of its own, up to a queue's length ahead of the drawing."""

    def __init__(self, renderer: Renderer, writer: RunWriter, timer: StageTimer, fps: float, progress: Any = None, buffer: int = 16) -> None:
        self.renderer, self.writer, self.timer, self.fps, self.progress = renderer, writer, timer, fps, progress
        self._queue: queue.Queue = queue.Queue(maxsize=buffer)
        self._error: BaseException | None = None
        self._faces = ThreadPoolExecutor(max_workers=1, thread_name_prefix="faces")
        self._prefetched: dict[int, Future] = {}
        self._thread = threading.Thread(target=self._run, name="render", daemon=True)
        self._thread.start()

    def _find_faces(self, image: np.ndarray, index: int) -> np.ndarray | None:
        with self.timer("faces"):
            return self.renderer.faces(image, index)

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            if self._error is not None:
                continue  # drain so the producer never blocks
            index, image, detections, faces = item
            try:
                faces = faces.result()
                with self.timer("render"):
                    image = self.renderer(image, detections, faces)
                with self.timer("write"):
                    self.writer.frame(index, index / self.fps, image, detections)
                if self.progress is not None:
                    self.progress.update(1)
            except BaseException as error:  # re-raised on the producer's thread
                self._error = error

    def prefetching(self, frames: Iterable[tuple[int, np.ndarray]]) -> Iterator[tuple[int, np.ndarray]]:
        """Pass ``frames`` through, starting face detection on each as it is read, so it runs while the
        analysis of the next keyframe (which the frame's boxes wait for) is still going on."""
        for index, image in frames:
            self._prefetched[index] = self._faces.submit(self._find_faces, image, index)
            yield index, image

    def submit(self, index: int, image: np.ndarray, detections: Detections) -> None:
        if self._error is not None:
            raise self._error
        faces = self._prefetched.pop(index, None) or self._faces.submit(self._find_faces, image, index)
        self._queue.put((index, image, detections, faces))

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        self._faces.shutdown()
        if self._error is not None:
            raise self._error


def detected_frames(
    frames: Iterable[tuple[int, np.ndarray]], schedule: Iterator[bool], detect: Callable[[list[np.ndarray]], list[Detections]], batch: int
) -> Iterator[tuple[int, np.ndarray, Detections | None]]:
    """Frames in order, each with its detections if ``schedule`` makes it an analysis frame, else ``None``.

    The detector runs on ``batch`` analysis frames at a time, so up to that many analysis frames and the
    frames between them are held in memory.
    """
    held: list[tuple[int, np.ndarray, bool]] = []
    for index, image in frames:
        held.append((index, image, next(schedule)))
        if sum(is_key for *_, is_key in held) == batch:
            yield from _with_detections(held, detect)
            held = []
    yield from _with_detections(held, detect)


def _with_detections(held: list[tuple[int, np.ndarray, bool]], detect: Callable[[list[np.ndarray]], list[Detections]]) -> Iterator[tuple[int, np.ndarray, Detections | None]]:
    keyframes = [image for _, image, is_key in held if is_key]
    found = iter(detect(keyframes) if keyframes else [])
    for index, image, is_key in held:
        yield index, image, next(found) if is_key else None


def analyse_frames(source: FrameSource, analyzer: Analyzer, progress: Any = None) -> dict[int, Detections]:
    """First pass of a ``classifier.baseline: session`` run: detect, track, check consent and extract features
    on the analysis frames, then settle the states; returns each analysis frame's detections by frame index."""
    fps = source.info.fps
    schedule = analysis_frames(fps, analyzer.config.analysis_fps)
    keyframes = {}
    decoded = timed_iter(source, analyzer.timer, "decode")
    for index, image, detections in detected_frames(decoded, schedule, analyzer.detect, analyzer.detector.batch_size):
        if detections is not None:
            keyframes[index] = analyzer(image, index / fps, detections)
        if progress is not None:
            progress.update(1)
    if analyzer.states is not None:
        analyzer.states.settle(analyzer.timer)
    return keyframes


def run_frames(
    source: FrameSource,
    analyzer: Analyzer,
    renderer: Renderer,
    writer: RunWriter,
    progress: Any = None,
    keyframes: dict[int, Detections] | None = None,
) -> tuple[int, int]:
    """Drive every frame of ``source`` through the stages; returns (frames read, frames analysed). Given the
    ``keyframes`` of a first pass (``analyse_frames``), they are drawn instead of analysing again."""
    fps = source.info.fps
    timer = analyzer.timer
    previous: Keyframe | None = None
    pending: list[tuple[int, np.ndarray]] = []
    analysed = frames = 0
    output = RenderWorker(renderer, writer, timer, fps, progress)
    decoded = output.prefetching(timed_iter(source, timer, "decode"))
    if keyframes is None:
        schedule = analysis_frames(fps, analyzer.config.analysis_fps)
        found = detected_frames(decoded, schedule, analyzer.detect, analyzer.detector.batch_size)
    else:
        found = ((index, image, keyframes.get(index)) for index, image in decoded)
    try:
        for index, image, detections in found:
            frames += 1
            if detections is None:
                pending.append((index, image))
                continue
            keyframe = Keyframe(index, detections if keyframes is not None else analyzer(image, index / fps, detections))
            analysed += 1
            writer.analysis(index, index / fps, keyframe.detections)
            for pending_index, pending_image in pending:
                output.submit(pending_index, pending_image, interpolate(previous, keyframe, pending_index))
            pending.clear()
            output.submit(index, image, keyframe.detections)
            previous = keyframe
        for pending_index, pending_image in pending:
            output.submit(pending_index, pending_image, interpolate(previous, None, pending_index))
    finally:
        output.close()
    return frames, analysed


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def model_record(name: str, models_dir: str | None) -> dict[str, Any]:
    """Name, resolved file and sha256 of a model, for provenance."""
    path = find_model(name, models_dir)
    return {"name": name, "file": str(path) if path else None, "sha256": file_sha256(path) if path else None}


def model_records(analyzer: Analyzer, renderer: Renderer) -> dict[str, Any]:
    config = analyzer.config
    detector = analyzer.detector
    records: dict[str, Any] = {"detector": {"name": config.detector.model, "file": str(detector.weights), "sha256": detector.sha256}}
    if renderer.anonymizer is not None:
        records["face_detector"] = model_record(config.anonymizer.face_model, config.models_dir)
    if analyzer.states is not None:
        records["face_landmarker"] = model_record(config.classifier.face_landmarker, config.models_dir)
        records["classifier"] = analyzer.states.classifier_record()
    return records


def session_record(source: FrameSource, config: PipelineConfig, analyzer: Analyzer, renderer: Renderer, analysed: int, frames: int, seconds: float) -> dict[str, Any]:
    info = source.info
    timings = dict(sorted(analyzer.timer.seconds.items()))
    timings["total"] = seconds
    is_file = not info.is_live and Path(info.source).is_file()
    return {
        "engagement_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "input": {
            "path": str(Path(info.source).resolve()) if is_file else info.source,
            "fps": info.fps, "frames": frames, "width": info.width, "height": info.height,
            "duration_s": frames / info.fps,
            "sha256": file_sha256(info.source) if is_file else None,
        },
        "models": model_records(analyzer, renderer),
        "config": to_dict(config),
        "timings_s": timings,
        "frames_analysed": analysed,
        "tracking": {
            "confirmed_tracks": len(analyzer.confirmed_ids),
            "max_people_in_frame": analyzer.max_people,
            "id_ratio": len(analyzer.confirmed_ids) / analyzer.max_people if analyzer.max_people else None,
        },
        "consent": consent_record(config, analyzer),
        "versions": package_versions(),
    }


def consent_record(config: PipelineConfig, analyzer: Analyzer) -> dict[str, Any]:
    """The session's consent facts: policy, exclusions and, with a course, the registry's status."""
    from engagement.consent.forms import load_policy

    policy = load_policy()
    record: dict[str, Any] = {
        "policy": config.consent.blur,
        "unknown": config.consent.unknown,
        "people_excluded": len(analyzer.consent.excluded_track_ids),
        "course": config.consent.course,
        "form_version": policy.get("form_version"),
        "retention_days": policy.get("retention_days"),
        "status_counts": None,
    }
    if config.consent.course is not None:
        from engagement.consent.registry import Registry

        with Registry.open(config.consent.registry) as registry:
            records = registry.consent(config.consent.course)
            retention = registry.course(config.consent.course).get("retention_days")
        counts: dict[str, int] = {}
        for entry in records:
            counts[entry.status] = counts.get(entry.status, 0) + 1
        versions = sorted({entry.form_version for entry in records if entry.form_version})
        record.update(status_counts=counts, form_version=", ".join(versions) or record["form_version"])
        record["retention_days"] = retention or record["retention_days"]
    record["retention_until"] = (datetime.now(timezone.utc) + timedelta(days=record["retention_days"])).date().isoformat()
    return record


def register_session(config: PipelineConfig, run_dir: Path, session: dict[str, Any]) -> None:
    """With a course set, remember the run in the consent registry so withdrawal and purge can find it."""
    from engagement.consent.registry import Registry

    with Registry.open(config.consent.registry) as registry:
        registry.record_session(
            config.consent.course,
            datetime.now(timezone.utc).date(),
            run_dir,
            session["input"]["sha256"],
            {int(t): s for t, s in config.consent.track_students.items()},
        )


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")


def process_video(
    video: str,
    out: str | Path,
    config: PipelineConfig,
    overwrite: bool = False,
    quiet: bool = False,
    report: bool = True,
) -> dict[str, Any]:
    """Process one recorded video into a run directory; returns the session record."""
    from tqdm import tqdm

    source = FrameSource(video)  # opens and validates the input before any output exists
    if source.info.is_live:
        config = with_running_baseline(config)
    with RunDirectory(out, overwrite=overwrite) as directory:
        started = time.perf_counter()
        timer = StageTimer()
        with timer("load_models"):
            analyzer = Analyzer(config, timer)
            renderer = Renderer(config, source.info.fps)
            analyzer.warm_up(source.info.height, source.info.width)
            renderer.warm_up(source.info.height, source.info.width)
        writer = RunWriter(directory, source.info, config, video=config.output.video)
        two_passes = analyzer.states is not None and analyzer.states.session_baseline
        total = source.info.frames * 2 if two_passes and source.info.frames else source.info.frames
        with tqdm(total=total, unit="frame", disable=quiet, desc=Path(video).name, dynamic_ncols=True) as progress:
            try:
                keyframes = None
                if two_passes:  # the whole session first, so each track is compared with all of it
                    keyframes = analyse_frames(source, analyzer, progress)
                    source = FrameSource(video)
                frames, analysed = run_frames(source, analyzer, renderer, writer, progress, keyframes)
            finally:
                writer.close()
                analyzer.close()
        finish_outputs(directory, config, source.info)
        session = session_record(source, config, analyzer, renderer, analysed, frames, time.perf_counter() - started)
        write_json(directory / "session.json", session)
        if config.classifier.enabled:
            write_summary(directory, session)
        if report and config.output.report:
            from engagement.report import build_report

            build_report(directory)
    if config.consent.course is not None:
        register_session(config, Path(out), session)
        from engagement.consent.outputs import delete_source
        delete_source(config.consent.registry, config.consent.course, video, out)
    return session


def finish_outputs(directory: Path, config: PipelineConfig, info: VideoInfo) -> None:
    """Audio (only when asked: dropped by default) and CSV copies of the tables."""
    video = directory / "annotated.mp4"
    if config.output.keep_audio and video.exists() and not info.is_live:
        with_audio = directory / "annotated.audio.mp4"
        if copy_audio(video, info.source, with_audio):
            with_audio.replace(video)
    if config.output.csv:
        parquet_to_csv(directory / "tracks.parquet", directory / "tracks.csv")


def write_summary(directory: Path, session: dict[str, Any]) -> None:
    """scores.csv and summary.json from the states table."""
    import pandas as pd

    from engagement.scoring import summarize

    states = pd.read_parquet(directory / "states.parquet")
    scores, summary = summarize(states, session["input"]["duration_s"], session["consent"]["people_excluded"])
    scores.to_csv(directory / "scores.csv", index=False)
    write_json(directory / "summary.json", summary)
