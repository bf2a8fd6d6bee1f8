"""The one frame-level type passed from stage to stage: parallel arrays, one row per person.

Modelled on supervision's ``Detections``: every field is an array whose first axis is the detection,
filtering is boolean-mask indexing, and later stages attach their per-detection results to ``data``
(face boxes, state probabilities, consent flags) instead of inventing new containers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

NUM_KEYPOINTS = 17
COCO_KEYPOINTS: tuple[str, ...] = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)
KEYPOINT_INDEX = {name: i for i, name in enumerate(COCO_KEYPOINTS)}
COCO_SKELETON: tuple[tuple[int, int], ...] = (
    (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7),
    (6, 8), (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6),
)
UNTRACKED = -1
# A keypoint below this score is treated as missing by the features and the anonymizer's head masks.
KEYPOINT_MIN_SCORE = 0.3
# Skeleton lines are drawn only between keypoints at least this confident (stricter than the analysis).
KEYPOINT_DRAW_MIN_SCORE = 0.5


def _as_array(value: Any, dtype: Any, shape_tail: tuple[int, ...], n: int, name: str) -> np.ndarray:
    array = np.asarray(value, dtype=dtype)
    if array.size == 0 and n == 0:
        array = array.reshape((0, *shape_tail))
    if array.shape != (n, *shape_tail):
        raise ValueError(f"Detections.{name} must have shape {(n, *shape_tail)}, got {array.shape}")
    return array


@dataclass
class Detections:
    """People found in one frame.

    xyxy: (N, 4) float32 boxes in pixels; confidence: (N,) float32; track_id: (N,) int64, -1 when
    untracked; keypoints: (N, 17, 3) float32 COCO keypoints (x, y, score), score 0 where absent;
    data: per-detection extras, each an array or list of length N.
    """

    xyxy: np.ndarray
    confidence: np.ndarray
    track_id: np.ndarray
    keypoints: np.ndarray
    data: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        xyxy = np.asarray(self.xyxy, dtype=np.float32)
        n = 0 if xyxy.size == 0 else len(xyxy)
        self.xyxy = _as_array(xyxy, np.float32, (4,), n, "xyxy")
        self.confidence = _as_array(self.confidence, np.float32, (), n, "confidence")
        self.track_id = _as_array(self.track_id, np.int64, (), n, "track_id")
        self.keypoints = _as_array(self.keypoints, np.float32, (NUM_KEYPOINTS, 3), n, "keypoints")
        for key, value in self.data.items():
            if len(value) != n:
                raise ValueError(f"Detections.data[{key!r}] has length {len(value)}, expected {n}")

    @classmethod
    def empty(cls) -> "Detections":
        return cls(
            xyxy=np.empty((0, 4), np.float32),
            confidence=np.empty(0, np.float32),
            track_id=np.empty(0, np.int64),
            keypoints=np.empty((0, NUM_KEYPOINTS, 3), np.float32),
        )

    @classmethod
    def from_boxes(
        cls,
        xyxy: np.ndarray,
        confidence: np.ndarray | None = None,
        keypoints: np.ndarray | None = None,
        track_id: np.ndarray | None = None,
        **data: Any,
    ) -> "Detections":
        """Build from boxes alone, filling absent fields (keypoints absent, untracked, confidence 1)."""
        xyxy = np.asarray(xyxy, np.float32).reshape(-1, 4)
        n = len(xyxy)
        return cls(
            xyxy=xyxy,
            confidence=np.ones(n, np.float32) if confidence is None else confidence,
            track_id=np.full(n, UNTRACKED, np.int64) if track_id is None else track_id,
            keypoints=np.zeros((n, NUM_KEYPOINTS, 3), np.float32) if keypoints is None else keypoints,
            data=dict(data),
        )

    @classmethod
    def from_ultralytics(cls, result: Any, person_class: int = 0) -> "Detections":
        """Adapter: the only place that reads an ultralytics ``Results`` object. Keeps people only."""
        boxes = result.boxes
        if boxes is None or len(boxes) == 0:
            return cls.empty()
        xyxy = boxes.xyxy.cpu().numpy()
        confidence = boxes.conf.cpu().numpy()
        classes = boxes.cls.cpu().numpy().astype(int)
        n = len(xyxy)
        keypoints = np.zeros((n, NUM_KEYPOINTS, 3), np.float32)
        if getattr(result, "keypoints", None) is not None and result.keypoints.data.numel() > 0:
            kp = result.keypoints.data.cpu().numpy()
            if kp.shape[-1] == 2:  # models without visibility scores
                kp = np.concatenate([kp, np.ones((*kp.shape[:2], 1), kp.dtype)], axis=-1)
            keypoints[:, : kp.shape[1]] = kp
        detections = cls(xyxy=xyxy, confidence=confidence, track_id=np.full(n, UNTRACKED), keypoints=keypoints)
        return detections[classes == person_class]

    def __len__(self) -> int:
        return len(self.xyxy)

    def __getitem__(self, index: int | slice | np.ndarray | list[int]) -> "Detections":
        """Select rows by boolean mask, integer indices or slice; always returns ``Detections``."""
        if isinstance(index, (int, np.integer)):
            index = [int(index)]
        index = np.asarray(index) if isinstance(index, list) else index
        return Detections(
            xyxy=self.xyxy[index],
            confidence=self.confidence[index],
            track_id=self.track_id[index],
            keypoints=self.keypoints[index],
            data={key: _select(value, index) for key, value in self.data.items()},
        )

    @classmethod
    def merge(cls, parts: list["Detections"]) -> "Detections":
        """Concatenate detections; a ``data`` key must be present in every non-empty part. When every part is
        empty, the result is empty but keeps the first part's ``data`` keys: an empty frame is an ordinary frame."""
        if parts and not any(len(p) for p in parts):
            return parts[0][np.zeros(0, bool)]
        parts = [p for p in parts if len(p)]
        if not parts:
            return cls.empty()
        keys = set(parts[0].data)
        if any(set(p.data) != keys for p in parts):
            raise ValueError("cannot merge Detections whose data keys differ")
        return cls(
            xyxy=np.concatenate([p.xyxy for p in parts]),
            confidence=np.concatenate([p.confidence for p in parts]),
            track_id=np.concatenate([p.track_id for p in parts]),
            keypoints=np.concatenate([p.keypoints for p in parts]),
            data={k: _concat([p.data[k] for p in parts]) for k in keys},
        )

    @property
    def anchor(self) -> np.ndarray:
        """Lower-middle point of each box (N, 2): where a seated person meets the seat zone."""
        return np.stack([(self.xyxy[:, 0] + self.xyxy[:, 2]) / 2, self.xyxy[:, 3]], axis=1)

    @property
    def area(self) -> np.ndarray:
        return (self.xyxy[:, 2] - self.xyxy[:, 0]) * (self.xyxy[:, 3] - self.xyxy[:, 1])


def _select(value: Any, index: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value[index]
    positions = np.arange(len(value))[index]
    return [value[i] for i in np.atleast_1d(positions)]


def _concat(values: list[Any]) -> Any:
    if all(isinstance(v, np.ndarray) for v in values):
        return np.concatenate(values)
    return [item for v in values for item in v]
