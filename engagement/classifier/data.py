"""Labelled datasets -> feature rows, through the same detector and features as the pipeline.

Two formats are read:
- YOLO head boxes on classroom frames (``cctv_headstate``: ``SPLIT/images`` + ``SPLIT/labels``); every
  labelled head is matched to a detected person by head position; an unmatched head stays a row with
  ``covered = False`` (scored as wrong, reported as coverage);
- a ``labels.csv`` of webcam frames (``webcam_behaviour``): one label per frame, for the largest person.
  Each person's frames are then streamed through ``TrackCalibration`` as one track, clip after clip in
  a seeded random order (the dataset has no order between clips), so the relative features are what
  the pipeline would have computed online; no label is used for them.
Detections are cached per image under the cache folder, so feature or model changes do not re-run the
detector.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO

import numpy as np
import yaml

from engagement.config import ClassifierConfig, DetectorConfig
from engagement.detections import Detections
from engagement.errors import UserError
from engagement.files import write_atomic
from engagement.features import (
    FEATURE_NAMES, FEATURES_VERSION, FRAME_FEATURES, FeatureExtractor, TrackCalibration, head_boxes,
)
from engagement.states import STATE_INDEX

LABEL_MAP_PATH = Path(__file__).with_name("label_map.yaml")
CCTV, WEBCAM = "cctv_headstate", "webcam_behaviour"
MATCH_RADIUS = 1.0  # a head matches a person whose head centre lies within one labelled head size
STREAM_SEED = 0  # order of a webcam person's clips in the calibration stream
FEATURE_SET_FORMAT = 3  # bump when the fields FeatureSet saves change: cached sets become stale


@dataclass
class FeatureSet:
    """Rows of one dataset: features (NaN rows where uncovered), labels and their states, split groups."""

    X: np.ndarray  # (n, F) float32
    y: np.ndarray  # (n,) int state index
    labels: np.ndarray  # (n,) str: the dataset's own label (several labels can map to one state)
    groups: np.ndarray  # (n,) str: source frame (cctv) or person (webcam)
    clips: np.ndarray  # (n,) str: source frame (cctv) or recording (webcam; rows in recorded order)
    covered: np.ndarray  # (n,) bool: a detected person was matched to the label
    dataset: str

    def subset(self, mask: np.ndarray) -> "FeatureSet":
        return replace(self, X=self.X[mask], y=self.y[mask], labels=self.labels[mask], groups=self.groups[mask],
                       clips=self.clips[mask], covered=self.covered[mask])

    def save(self, stream: BinaryIO) -> None:
        np.savez_compressed(stream, X=self.X, y=self.y, labels=self.labels, groups=self.groups, clips=self.clips,
                            covered=self.covered, dataset=self.dataset)

    @classmethod
    def load(cls, path: Path) -> "FeatureSet":
        with np.load(path, allow_pickle=False) as data:
            return cls(data["X"], data["y"], data["labels"], data["groups"], data["clips"], data["covered"],
                       str(data["dataset"]))


def load_label_map(path: str | Path | None = None) -> dict[str, dict[str, str | None]]:
    """Dataset label -> state name (or None = left out), checked against ``STATES``."""
    path = Path(path) if path else LABEL_MAP_PATH
    try:
        mapping = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise UserError(f"cannot read label map {path}: {error}") from None
    for dataset, labels in mapping.items():
        for label, state in labels.items():
            if state is not None and state not in STATE_INDEX:
                raise UserError(f"{path}: {dataset}.{label} maps to unknown state {state!r}")
    return mapping


def dataset_kind(path: Path) -> str:
    """``webcam_behaviour`` for a labels.csv folder, ``cctv_headstate`` for YOLO images/labels folders."""
    if (path / "labels.csv").is_file():
        return WEBCAM
    if (path / "images").is_dir() or any((path / split / "images").is_dir() for split in ("train", "val")):
        return CCTV
    raise UserError(f"{path}: not a dataset (expected labels.csv, or images/ and labels/ folders)")


def detect_tiled(detector, frame: np.ndarray, grid: tuple[int, int], overlap: float = 0.15) -> Detections:
    """Detect on overlapping tiles and merge with NMS: small, far-away people (ceiling CCTV) are found
    that a single 640 px pass misses."""
    import torch
    from torchvision.ops import nms

    rows, cols = grid
    if rows * cols == 1:
        return detector(frame)
    height, width = frame.shape[:2]
    tile_h, tile_w = height / rows, width / cols
    origins, tiles = [], []
    for r in range(rows):
        for c in range(cols):
            x0, y0 = int(max((c - overlap) * tile_w, 0)), int(max((r - overlap) * tile_h, 0))
            x1, y1 = int(min((c + 1 + overlap) * tile_w, width)), int(min((r + 1 + overlap) * tile_h, height))
            origins.append((x0, y0))
            tiles.append(frame[y0:y1, x0:x1])
    parts = []
    for (x0, y0), found in zip(origins, detector.detect_batch(tiles)):
        keypoints = found.keypoints.copy()
        keypoints[..., 0] += x0
        keypoints[..., 1] += y0
        shift = np.array([x0, y0, x0, y0], np.float32)
        parts.append(Detections(found.xyxy + shift, found.confidence, found.track_id, keypoints))
    merged = Detections.merge(parts)
    if not len(merged):
        return merged
    keep = nms(torch.from_numpy(merged.xyxy), torch.from_numpy(merged.confidence), 0.5).numpy()
    return merged[np.sort(keep)]


def match_heads(label_boxes: np.ndarray, detections: Detections) -> np.ndarray:
    """Index of the detection matched to each labelled head box (xyxy), -1 if none: one-to-one by the
    assignment with the least total head-centre distance (Hungarian), within ``MATCH_RADIUS`` head sizes."""
    from scipy.optimize import linear_sum_assignment

    matches = np.full(len(label_boxes), -1)
    if not len(detections) or not len(label_boxes):
        return matches
    heads = head_boxes(detections.keypoints, detections.xyxy)
    label_centers = (label_boxes[:, :2] + label_boxes[:, 2:]) / 2
    distance = np.linalg.norm(label_centers[:, None] - ((heads[:, :2] + heads[:, 2:]) / 2)[None], axis=2)
    radius = np.maximum(label_boxes[:, 2] - label_boxes[:, 0], label_boxes[:, 3] - label_boxes[:, 1]) * MATCH_RADIUS
    rows, cols = linear_sum_assignment(np.where(distance <= radius[:, None], distance, 1e6))
    ok = distance[rows, cols] <= radius[rows]
    matches[rows[ok]] = cols[ok]
    return matches


class DatasetFeaturizer:
    """Runs detector + features over a dataset's images, caching detections per image."""

    def __init__(self, cache_dir: str | Path | None = None, models_dir: str | None = None,
                 tile_grid: tuple[int, int] = (3, 3), detector_config: DetectorConfig | None = None) -> None:
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.models_dir = models_dir
        self.tile_grid = tile_grid
        self.detector_config = detector_config or DetectorConfig()
        self._detector = None
        self.extractor = FeatureExtractor(ClassifierConfig(), models_dir)

    def detections(self, image_path: Path, frame: np.ndarray, grid: tuple[int, int]) -> Detections:
        cache_file = None
        if self.cache_dir is not None:
            key = hashlib.sha1(f"{image_path.resolve()}|{grid}|{self.detector_config}".encode()).hexdigest()[:16]
            cache_file = self.cache_dir / "detections" / f"{key}.npz"
            if cache_file.is_file():
                with np.load(cache_file) as data:
                    return Detections.from_boxes(data["xyxy"], data["confidence"], data["keypoints"])
        if self._detector is None:
            from engagement.detector import PoseDetector

            self._detector = PoseDetector(self.detector_config, self.models_dir)
        found = detect_tiled(self._detector, frame, grid)
        if cache_file is not None:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(cache_file, lambda stream: np.savez(
                stream, xyxy=found.xyxy, confidence=found.confidence, keypoints=found.keypoints))
        return found

    def featurize(self, path: str | Path, label_map: dict | None = None, split: str | None = None,
                  limit: int | None = None) -> FeatureSet:
        """Feature rows for every mapped label in the dataset at ``path`` (uncovered ones as NaN rows);
        cached whole when a cache folder is set and the packaged label map is used."""
        path = Path(path)
        if not path.exists():
            raise UserError(f"dataset not found: {path}")
        cache_file = None
        if self.cache_dir is not None and label_map is None:
            key = (f"{path.resolve()}|{split}|{limit}|{self.tile_grid}|{self.detector_config}|{STREAM_SEED}|"
                   f"{FEATURE_SET_FORMAT}|{FEATURES_VERSION}|{FEATURE_NAMES}|{LABEL_MAP_PATH.read_text()}")
            cache_file = self.cache_dir / "features" / f"{hashlib.sha1(key.encode()).hexdigest()[:16]}.npz"
            if cache_file.is_file():
                return FeatureSet.load(cache_file)
        features = self._featurize(path, label_map, split, limit)
        if cache_file is not None:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(cache_file, features.save)
        return features

    def _featurize(self, path: Path, label_map: dict | None, split: str | None, limit: int | None) -> FeatureSet:
        import cv2

        kind = dataset_kind(path)
        mapping = (label_map or load_label_map())[kind]
        items = list(_webcam_items(path, mapping) if kind == WEBCAM else _cctv_items(path, mapping, split))
        if limit:
            items = items[:limit]
        if not items:
            raise UserError(f"{path}: no labelled samples with a mapped state")
        grid = (1, 1) if kind == WEBCAM else self.tile_grid
        rows_X, rows_label, rows_group, rows_clip, rows_covered = [], [], [], [], []
        for image_path, group, clip, boxes, labels in items:
            frame = cv2.imread(str(image_path))
            if frame is None:
                raise UserError(f"cannot read image {image_path}")
            found = self.detections(image_path, frame, grid)
            features = self.extractor(frame, found, 0.0)
            if kind == WEBCAM:
                matches = np.array([int(np.argmax(found.area))] if len(found) else [-1])
            else:
                height, width = frame.shape[:2]
                matches = match_heads(boxes * np.array([width, height, width, height], np.float32), found)
            for match, label in zip(matches, labels):
                covered = match >= 0
                rows_X.append(features[match] if covered else np.full(len(FEATURE_NAMES), np.nan, np.float32))
                rows_label.append(label)
                rows_group.append(group)
                rows_clip.append(clip)
                rows_covered.append(covered)
        X = np.stack(rows_X).astype(np.float32)
        groups, clips = np.array(rows_group), np.array(rows_clip)
        if kind == WEBCAM:
            calibrate_persons(X, groups, clips, STREAM_SEED)
        y = np.array([STATE_INDEX[mapping[label]] for label in rows_label])
        return FeatureSet(X, y, np.array(rows_label), groups, clips, np.array(rows_covered), kind)


def person_streams(persons: np.ndarray, clips: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """Row indices of each webcam person as one session: clip after clip in a seeded random order (the dataset
    has no order between clips), frames in their recorded order within a clip."""
    rng = np.random.default_rng(seed)
    streams = {}
    for person in sorted(set(persons.tolist())):
        person_clips = sorted(set(clips[persons == person].tolist()))
        streams[person] = np.concatenate([np.flatnonzero((persons == person) & (clips == clip))
                                          for clip in rng.permutation(person_clips)])
    return streams


def calibrate_persons(X: np.ndarray, persons: np.ndarray, clips: np.ndarray, seed: int) -> None:
    """Fill the relative features of webcam rows in place: each person is one track, streamed as
    ``person_streams`` orders them."""
    calibration = TrackCalibration()
    frame_columns = len(FRAME_FEATURES)
    for track_id, rows in enumerate(person_streams(persons, clips, seed).values()):
        for row in rows:
            X[row, frame_columns:] = calibration(np.array([track_id]), X[row:row + 1, :frame_columns])[0]


def _webcam_items(path: Path, mapping: dict):
    import pandas as pd

    try:
        table = pd.read_csv(path / "labels.csv")
    except (OSError, ValueError) as error:
        raise UserError(f"cannot read {path / 'labels.csv'}: {error}") from None
    missing = {"path", "label", "clip"} - set(table.columns)
    if missing:
        raise UserError(f"{path / 'labels.csv'}: missing columns {sorted(missing)}")
    for row in table.itertuples():
        if row.label not in mapping:
            raise UserError(f"{path / 'labels.csv'}: label {row.label!r} is not in the label map")
        if mapping[row.label] is not None:
            # clips are named LABEL_LIGHTING_PERSON: the person id is the last field
            yield path / row.path, f"person{str(row.clip).rsplit('_', 1)[-1]}", str(row.clip), None, [row.label]


def _cctv_items(path: Path, mapping: dict, split: str | None):
    if (path / "images").is_dir():
        split_dirs = [path]
    else:
        split_dirs = [path / s for s in ([split] if split else ("train", "val")) if (path / s / "images").is_dir()]
        if not split_dirs:
            raise UserError(f"{path}: split {split!r} not found")
    names = _yolo_names(path)
    for split_dir in split_dirs:
        for image_path in sorted((split_dir / "images").glob("*.jpg")):
            label_file = split_dir / "labels" / f"{image_path.stem}.txt"
            if not label_file.is_file():
                continue
            try:
                rows = np.loadtxt(label_file, ndmin=2)
            except ValueError:
                raise UserError(f"{label_file}: not a YOLO label file (rows of: class cx cy w h)") from None
            if rows.size == 0:
                continue
            if rows.shape[1] != 5:
                raise UserError(f"{label_file}: expected 5 columns (class cx cy w h)")
            unknown = sorted({int(c) for c in rows[:, 0]} - set(range(len(names))))
            if unknown:
                raise UserError(f"{label_file}: class ids {unknown} are not in data.yaml's {len(names)} names")
            labels = [names[int(c)] for c in rows[:, 0]]
            keep = np.array([mapping.get(label) is not None for label in labels])
            if not keep.any():
                continue
            cx, cy, w, h = rows[keep, 1:].T
            boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1).astype(np.float32)
            group = f"{split_dir.name}/{image_path.stem}"
            yield image_path, group, group, boxes, [label for label, kept in zip(labels, keep) if kept]


def _yolo_names(path: Path) -> list[str]:
    for candidate in (path / "data.yaml", path.parent / "data.yaml"):
        if candidate.is_file():
            names = yaml.safe_load(candidate.read_text()).get("names")
            return list(names.values()) if isinstance(names, dict) else list(names)
    raise UserError(f"{path}: data.yaml with class names not found")
