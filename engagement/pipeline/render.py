"""Pass 2 of a recorded video (and the drawing half of a stream's online pass): anonymize, annotate and write.

Frames between two analysis frames get boxes and keypoints interpolated between them (``detected=False``), so
the annotated video is smooth at the full frame rate and the anonymizer follows every person on every frame.
Anonymization, drawing and encoding run on a background thread, face detection on another, each fed by a
bounded queue.
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import pyarrow as pa

from engagement.annotate import annotate
from engagement.config import PipelineConfig
from engagement.consent.stage import analysable
from engagement.detections import Detections
from engagement.files import ANNOTATED_MP4, STATES_PARQUET, TRACKS_PARQUET
from engagement.pipeline.analyse import Analyzer, StageTimer, analysis_frames, detected_frames, timed_iter
from engagement.sinks import TRACK_SCHEMA, TableWriter, VideoWriter, track_rows
from engagement.sources import FrameSource, VideoInfo


@dataclass
class Keyframe:
    index: int
    detections: Detections


def interpolate(before: Keyframe | None, after: Keyframe | None, index: int) -> Detections:
    """Detections for a frame between two analysis frames.

    A track seen on both sides moves linearly from one box to the other and keeps the data of the nearer side,
    unless the other side hides more (opted out, or blurred): then it takes that side's, so a person who is hidden
    on either side is hidden in between. A person seen on one side only (including untracked detections) is held
    in place, so the anonymizer fails closed.
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
    moving_a, moving_b = a[in_a][np.argsort(a.track_id[in_a])], b[in_b][np.argsort(b.track_id[in_b])]
    hidden_a, hidden_b = _privacy_rank(moving_a), _privacy_rank(moving_b)
    from_b = (hidden_b > hidden_a) | ((hidden_b == hidden_a) & (alpha >= 0.5))
    order = np.concatenate([np.flatnonzero(~from_b), np.flatnonzero(from_b)])
    moving_a, moving_b, from_b = moving_a[order], moving_b[order], from_b[order]
    moving = Detections.merge([moving_a[~from_b], moving_b[from_b]])
    moving.xyxy = (1 - alpha) * moving_a.xyxy + alpha * moving_b.xyxy
    moving.keypoints = moving_a.keypoints.copy()
    moving.keypoints[..., :2] = (1 - alpha) * moving_a.keypoints[..., :2] + alpha * moving_b.keypoints[..., :2]
    moving.keypoints[..., 2] = np.minimum(moving_a.keypoints[..., 2], moving_b.keypoints[..., 2])
    moving.confidence = np.minimum(moving_a.confidence, moving_b.confidence)
    result = Detections.merge([moving, a[~in_a], b[~in_b]])
    result.data["detected"] = np.zeros(len(result), bool)
    return result


def _privacy_rank(detections: Detections) -> np.ndarray:
    """Per row, how much it hides: 2 opted out (no analytics, blurred), 1 blurred only, 0 shown."""
    n = len(detections)
    opted_out = np.asarray(detections.data.get("opted_out", np.zeros(n, bool)), bool)
    return 2 * opted_out + np.asarray(detections.data.get("blur", np.zeros(n, bool)), bool)


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

    def hidden(self, frame: np.ndarray) -> np.ndarray:
        """``frame`` obscured whole (unless the policy hides nobody): what a live view shows before its first
        analysis, when nobody's head region is known and the face detector alone would decide what is shown."""
        if self.anonymizer is None:
            return frame.copy()
        from engagement.anonymize import obscure

        image = frame.copy()
        obscure(image, np.array([0, 0, image.shape[1], image.shape[0]], np.float32), self.anonymizer.config.method)
        return image


class RunWriter:
    """The tables and video of a run, written as frames come (memory stays flat)."""

    def __init__(self, directory: Path, info: VideoInfo, config: PipelineConfig, video: bool) -> None:
        self.directory = directory
        self.config = config
        self.tracks = TableWriter(directory / TRACKS_PARQUET, TRACK_SCHEMA)
        self.states = TableWriter(directory / STATES_PARQUET, states_schema()) if config.classifier.enabled else None
        self.video = None
        if video:
            self.video = VideoWriter(directory / ANNOTATED_MP4, info.fps, info.width, info.height, config.output.crf, config.output.preset)

    def frame(self, index: int, time_s: float, image: np.ndarray, detections: Detections) -> None:
        self.tracks.append(track_rows(index, time_s, detections[analysable(detections)]))
        if self.video is not None:
            self.video.write(image, time_s)

    def analysis(self, index: int, time_s: float, detections: Detections) -> None:
        if self.states is not None:
            self.states.append(state_rows(index, time_s, detections))

    def close(self) -> None:
        self.tracks.close()
        if self.states is not None:
            self.states.close()
        if self.video is not None:
            self.video.close()


class RenderWorker:
    """Anonymize, annotate and write frames in order on a background thread, fed by a bounded queue,
    so the encoder overlaps with detection on the next analysis frame. The anonymizer's face detector
    needs only pixels, so it runs on a thread of its own, up to a queue's length ahead of the drawing."""

    def __init__(self, renderer: Renderer, writer: RunWriter, timer: StageTimer, progress: Any = None, buffer: int = 16) -> None:
        self.renderer, self.writer, self.timer, self.progress = renderer, writer, timer, progress
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
            index, time_s, image, detections, faces = item
            try:
                faces = faces.result()
                with self.timer("render"):
                    image = self.renderer(image, detections, faces)
                with self.timer("write"):
                    self.writer.frame(index, time_s, image, detections)
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

    def submit(self, index: int, time_s: float, image: np.ndarray, detections: Detections) -> None:
        """Queue frame ``index``, shown at ``time_s`` seconds, to be drawn with ``detections`` and written."""
        if self._error is not None:
            raise self._error
        faces = self._prefetched.pop(index, None) or self._faces.submit(self._find_faces, image, index)
        self._queue.put((index, time_s, image, detections, faces))

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        self._faces.shutdown()
        if self._error is not None:
            raise self._error


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
    output = RenderWorker(renderer, writer, timer, progress)
    when = source.time_of
    # A second pass reads the file again: its decoding is timed apart, so the cost of two passes shows.
    decoded = output.prefetching(timed_iter(source, timer, "decode" if keyframes is None else "decode_again"))
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
            keyframe = Keyframe(index, detections if keyframes is not None else analyzer(image, when(index), detections))
            analysed += 1
            writer.analysis(index, when(index), keyframe.detections)
            for pending_index, pending_image in pending:
                output.submit(pending_index, when(pending_index), pending_image, interpolate(previous, keyframe, pending_index))
            pending.clear()
            output.submit(index, when(index), image, keyframe.detections)
            previous = keyframe
        for pending_index, pending_image in pending:
            output.submit(pending_index, when(pending_index), pending_image, interpolate(previous, None, pending_index))
    finally:
        found.close()  # stops the detector's look-ahead thread on an error too
        output.close()
    return frames, analysed
