"""Labelled datasets -> feature rows, through the same detector and features as the pipeline.

Each format has a small reader yielding the same ``Item`` record (image, group, clip, head boxes, labels):
- ``cctv_yolo``: YOLO head boxes on classroom frames (``cctv_headstate``: ``SPLIT/images`` + ``SPLIT/labels``);
- ``coco``: an ``annotations.json`` of upper-body boxes on classroom frames (``clabehavior``); each box stands
  for the head at its top (``upper_body_heads``), and an image's ``room``, when present, is its group;
- ``webcam_behaviour``: a ``labels.csv`` of webcam frames, the person taken from the clip name;
- ``labels_csv``: any ``labels.csv`` (``path,label`` and optionally ``person``, ``clip``, ``frame_index``);
  without a ``person`` column every image is its own person;
- ``levels``: a ``labels.csv`` of engagement levels (``disengaged``, ``partially_engaged``, ``engaged``),
  scored as a ranking; a state mapping is optional.
Labelled heads (classroom formats) are matched one-to-one to detected people by head position; an unmatched
head stays a row with ``covered = False`` (scored as wrong, reported as coverage). One label per image
(the csv formats) goes to the largest person; when the detector finds nobody, as on a face crop with no
body, the whole image is taken as that person's head (``image_people``); the row is uncovered only when
no face is found there either. The csv formats stream each person's frames through ``TrackCalibration``
as one track (webcam: clip after clip in a seeded random order, the dataset has no order between clips;
others: by clip and ``frame_index`` when given), so the relative features are what the pipeline would have
computed online; no label is used for them.
Detections are cached per image under the cache folder, so feature or model changes do not re-run the
detector.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO, Iterator, NamedTuple

import numpy as np
import yaml

from engagement.config import ClassifierConfig, DetectorConfig, HandsConfig
from engagement.detections import Detections
from engagement.errors import UserError
from engagement.files import write_atomic
from engagement.features import (
    FEATURE_NAMES, FEATURES_VERSION, FRAME_FEATURES, FeatureExtractor, TrackCalibration, face_rows, head_boxes,
)
from engagement.states import STATE_INDEX, STATES

LABEL_MAP_PATH = Path(__file__).with_name("label_map.yaml")
CCTV, WEBCAM = "cctv_headstate", "webcam_behaviour"
CCTV_YOLO, COCO, LABELS_CSV, LEVELS = "cctv_yolo", "coco", "labels_csv", "levels"
# The packaged label map's section for each format, used when no --label-map is given.
FORMAT_SECTIONS = {CCTV_YOLO: CCTV, WEBCAM: WEBCAM, COCO: "clabehavior", LEVELS: "engagement_levels", LABELS_CSV: None}
# The camera view of each format's images (``classifier.view``): cctv_headstate is a ceiling camera, COCO classroom
# sets such as clabehavior film the class from the front, the csv formats show one person at a webcam.
FORMAT_VIEWS = {CCTV_YOLO: "ceiling", COCO: "front", WEBCAM: "webcam", LEVELS: "webcam", LABELS_CSV: "webcam"}
CROWD_FORMATS = (CCTV_YOLO, COCO)  # many small people per frame: detected on tiles, matched by head
ENGAGEMENT_LEVELS = ("disengaged", "partially_engaged", "engaged")  # in rank order (0, 1, 2)
MATCH_RADIUS = 1.0  # a head matches a person whose head centre lies within one labelled head size
UPPER_BODY_HEAD = 0.5  # the head at the top of a labelled upper-body box is a square of this share of its width
STREAM_SEED = 0  # order of a webcam person's clips in the calibration stream
FEATURE_SET_FORMAT = 4  # bump when the fields FeatureSet saves change: cached sets become stale
NO_STATE = -1  # y of a row whose label has no state (an engagement level without a state mapping)


@dataclass
class FeatureSet:
    """Rows of one dataset: features (NaN rows where uncovered), labels and their states, split groups."""

    X: np.ndarray  # (n, F) float32
    y: np.ndarray  # (n,) int state index, NO_STATE for a label without one
    labels: np.ndarray  # (n,) str: the dataset's own label (several labels can map to one state)
    groups: np.ndarray  # (n,) str: source frame (cctv), room or frame (coco) or person (csv formats)
    clips: np.ndarray  # (n,) str: source frame (cctv, coco) or recording (csv formats; rows in recorded order)
    covered: np.ndarray  # (n,) bool: a detected person was matched to the label
    dataset: str  # the label map section (or the folder, with a user's label map)
    format: str = ""  # which reader read it
    states: tuple[int, ...] = ()  # the states its label map can give (empty: those of the packaged section)
    # (n,) int, csv formats: face frames in the baseline behind each row's relative features (not cached: derived)
    baseline_frames: np.ndarray | None = None
    # (n, len(STATES)) the crop model's state probabilities of each row's person (COCO sets; not cached: model output)
    crop_probs: np.ndarray | None = None

    def subset(self, mask: np.ndarray) -> "FeatureSet":
        return replace(self, X=self.X[mask], y=self.y[mask], labels=self.labels[mask], groups=self.groups[mask],
                       clips=self.clips[mask], covered=self.covered[mask],
                       baseline_frames=None if self.baseline_frames is None else self.baseline_frames[mask],
                       crop_probs=None if self.crop_probs is None else self.crop_probs[mask])

    def save(self, stream: BinaryIO) -> None:
        np.savez_compressed(stream, X=self.X, y=self.y, labels=self.labels, groups=self.groups, clips=self.clips,
                            covered=self.covered, dataset=self.dataset, format=self.format,
                            states=np.array(self.states, np.int64))

    @classmethod
    def load(cls, path: Path) -> "FeatureSet":
        with np.load(path, allow_pickle=False) as data:
            return cls(data["X"], data["y"], data["labels"], data["groups"], data["clips"], data["covered"],
                       str(data["dataset"]), str(data["format"]), tuple(int(s) for s in data["states"]))


class ClassroomCrops(NamedTuple):
    """Upper-body crops of a COCO classroom set's labelled people, as ``DatasetFeaturizer.classroom_crops`` cuts them."""

    crops: np.ndarray  # (n, S, S, 3) uint8 RGB
    y: np.ndarray  # (n,) state index, NO_STATE for a label without one
    groups: np.ndarray  # (n,) room (or image)
    covered: np.ndarray  # (n,) bool: a detected person was matched to the label


class Item(NamedTuple):
    """One labelled image as every reader yields it."""

    image: Path
    group: str
    clip: str
    heads: np.ndarray | None  # (k, 4) labelled head boxes, xyxy relative to the image size; None: one label
    labels: list[str]  # one per head box, or the image's one label


VALID_STATES = f"valid states: {', '.join(STATES)} (null leaves a label out)"


def _read_yaml_mapping(path: Path) -> dict:
    try:
        mapping = yaml.safe_load(path.read_text())
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a label map (not UTF-8 text)") from None
    except (OSError, yaml.YAMLError) as error:
        raise UserError(f"cannot read label map {path}: {' '.join(str(error).split())}") from None
    if not isinstance(mapping, dict):
        raise UserError(f"{path}: a label map is a YAML mapping of label: state")
    return mapping


def _checked(mapping: dict, where: str) -> dict[str, str | None]:
    """``mapping`` with every state checked against ``STATES``; labels as strings."""
    for label, state in mapping.items():
        if state is not None and state not in STATE_INDEX:
            raise UserError(f"{where}: label {label!r} maps to unknown state {state!r}; {VALID_STATES}")
    return {str(label): state for label, state in mapping.items()}


def load_label_map(path: str | Path | None = None) -> dict[str, dict[str, str | None]]:
    """The packaged map (or one like it): dataset -> {label -> state name, or None = left out}."""
    path = Path(path) if path else LABEL_MAP_PATH
    return {dataset: _checked(labels or {}, f"{path}: {dataset}")
            for dataset, labels in _read_yaml_mapping(path).items()}


def load_flat_label_map(path: str | Path) -> dict[str, str | None]:
    """A user's ``--label-map``: a flat ``label: state`` mapping."""
    path = Path(path)
    mapping = _read_yaml_mapping(path)
    if any(isinstance(state, (dict, list)) for state in mapping.values()):
        raise UserError(f"{path}: expected a flat 'label: state' mapping; {VALID_STATES}")
    return _checked(mapping, str(path))


def dataset_format(path: Path, user_map: bool = False) -> str:
    """Which reader fits the folder: ``coco`` (annotations.json), ``levels`` / ``webcam_behaviour`` /
    ``labels_csv`` (labels.csv: engagement levels only / the webcam set's labels and clips, unless the user
    gives a map / anything else), ``cctv_yolo`` (images/ and labels/ folders, or train/ and val/ splits)."""
    if (path / "annotations.json").is_file():
        return COCO
    if (path / "labels.csv").is_file():
        table = _read_labels_csv(path, {"path", "label"})
        labels = set(table["label"].astype(str))
        if labels and labels <= set(ENGAGEMENT_LEVELS):
            return LEVELS
        webcam_labels = set(load_label_map()[WEBCAM])
        if not user_map and "clip" in table.columns and "person" not in table.columns and labels <= webcam_labels:
            return WEBCAM
        return LABELS_CSV
    if (path / "images").is_dir() or any((path / split / "images").is_dir() for split in ("train", "val")):
        return CCTV_YOLO
    raise UserError(f"{path}: not a dataset (expected annotations.json, labels.csv, or images/ and labels/ folders)")


def resolve_label_map(path: Path, fmt: str, label_map: str | Path | None) -> tuple[str, dict[str, str | None]]:
    """The dataset name and label -> state mapping to read ``path`` with: the user's flat map (named after the
    folder), else the packaged section for the format (empty for a plain labels.csv: every label needs a map)."""
    if label_map is not None:
        return path.name, load_flat_label_map(label_map)
    section = FORMAT_SECTIONS[fmt]
    return (section or path.name), (load_label_map().get(section, {}) if section else {})


def state_of(label: str, mapping: dict[str, str | None], where: Path, fmt: str) -> str | None:
    """The state a label maps to (None: left out); a label the map does not know is a UserError."""
    if label in mapping:
        return mapping[label]
    if fmt == LEVELS and label in ENGAGEMENT_LEVELS:
        return None  # a level is scored as a ranking, a state mapping is optional
    raise UserError(f"{where}: label {label!r} has no engagement state; pass --label-map FILE.yaml "
                    f"(label: state); {VALID_STATES}")


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


def upper_body_heads(boxes: np.ndarray) -> np.ndarray:
    """(k, 4) head box at the top of each labelled upper-body box (xyxy, pixels): a square of
    ``UPPER_BODY_HEAD`` of the box width, centred horizontally, touching the box top."""
    size = (boxes[:, 2] - boxes[:, 0]) * UPPER_BODY_HEAD
    center_x = (boxes[:, 0] + boxes[:, 2]) / 2
    return np.stack([center_x - size / 2, boxes[:, 1], center_x + size / 2, boxes[:, 1] + size], axis=1)


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


def folder_fingerprint(path: Path) -> str:
    """A hash of every file's name, size and modification time under ``path``: a cached feature set is reused only
    while its images and labels are unchanged."""
    digest = hashlib.sha1()
    for file in sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]:
        stat = file.stat()
        digest.update(f"{file.relative_to(path) if path.is_dir() else file.name}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


class DatasetFeaturizer:
    """Runs detector + features over a dataset's images, caching detections per image."""

    def __init__(self, cache_dir: str | Path | None = None, models_dir: str | None = None,
                 tile_grid: tuple[int, int] = (3, 3), detector_config: DetectorConfig | None = None,
                 hands: HandsConfig | None = None) -> None:
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.models_dir = models_dir
        self.tile_grid = tile_grid
        self.detector_config = detector_config or DetectorConfig()
        self.hands = hands if hands is not None and hands.enabled else None  # wrists from hands, on untiled images
        self._detector = None
        self._hand_wrists = None
        self.extractor = FeatureExtractor(ClassifierConfig(), models_dir)

    def detections(self, image_path: Path, frame: np.ndarray, grid: tuple[int, int]) -> Detections:
        found = self._pose_detections(image_path, frame, grid)
        if self.hands is None or grid != (1, 1):
            return found
        if self._hand_wrists is None:
            from engagement.hands import HandWrists

            self._hand_wrists = HandWrists.from_config(self.hands, self.models_dir)
        return self._hand_wrists(frame, found)

    def _pose_detections(self, image_path: Path, frame: np.ndarray, grid: tuple[int, int]) -> Detections:
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

    def image_people(self, image_path: Path, frame: np.ndarray, grid: tuple[int, int] = (1, 1),
                     time_s: float = 0.0) -> tuple[np.ndarray, Detections, bool]:
        """Feature rows of everyone detected in ``frame``, their detections, and whether anyone was detected.
        When nobody is, the whole image is taken as one person's head (a face crop has no body for the pose
        detector): one row, whose ``has_face`` says whether a face was found there."""
        found = self.detections(image_path, frame, grid)
        if len(found):
            return self.extractor(frame, found, time_s), found, True
        height, width = frame.shape[:2]
        whole = Detections.from_boxes(np.array([[0, 0, width, height]], np.float32))
        return self.extractor(frame, whole, time_s, heads=whole.xyxy), whole, False

    def featurize(self, path: str | Path, label_map: str | Path | None = None, split: str | None = None,
                  limit: int | None = None) -> FeatureSet:
        """Feature rows for every mapped label in the dataset at ``path`` (uncovered ones as NaN rows), read with
        the packaged label map or a user's flat ``label_map`` file; cached whole when a cache folder is set."""
        path = Path(path)
        if not path.exists():
            raise UserError(f"dataset not found: {path}")
        fmt = dataset_format(path, user_map=label_map is not None)
        if self.hands is not None and fmt in CROWD_FORMATS:
            raise UserError(f"{path}: the hand models run on whole images, and {fmt} classroom sets are detected on "
                            "tiles: leave out --hands")
        dataset, mapping = resolve_label_map(path, fmt, label_map)
        cache_file = None
        if self.cache_dir is not None:
            key = (f"{path.resolve()}|{folder_fingerprint(path)}|{split}|{limit}|{self.tile_grid}|{self.detector_config}|"
                   f"{STREAM_SEED}|{FEATURE_SET_FORMAT}|{FEATURES_VERSION}|{FEATURE_NAMES}|{fmt}|{dataset}|"
                   f"{json.dumps(mapping, sort_keys=True)}" + (f"|hands={self.hands}" if self.hands else ""))
            cache_file = self.cache_dir / "features" / f"{hashlib.sha1(key.encode()).hexdigest()[:16]}.npz"
            if cache_file.is_file():
                return with_stream_baselines(FeatureSet.load(cache_file))
        features = self._featurize(path, fmt, dataset, mapping, split, limit)
        if cache_file is not None:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(cache_file, features.save)
        return with_stream_baselines(features)

    def classroom_crops(self, path: str | Path, label_map: str | Path | None = None,
                        limit: int | None = None) -> "ClassroomCrops":
        """Upper-body crops (``engagement.classifier.crops``) of the detected people matched to the labelled boxes of a
        COCO classroom set, one per row of ``featurize`` with the same arguments, in the same order (grey where no
        detected person was matched), with their states and rooms. Only the detector runs (cached when it was)."""
        import cv2

        from engagement.classifier.crops import CROP_SIZE, cut_crops, upper_body_squares

        path = Path(path)
        fmt = dataset_format(path, user_map=label_map is not None)
        if fmt != COCO:
            raise UserError(f"{path}: crops are cut from COCO classroom sets (front view); this is {fmt}")
        _, mapping = resolve_label_map(path, fmt, label_map)
        crops, labels, groups, covered = [], [], [], []
        for item in list(READERS[fmt](path, mapping, fmt, None))[:limit]:
            frame = cv2.imread(str(item.image))
            if frame is None:
                raise UserError(f"cannot read image {item.image}")
            found = self.detections(item.image, frame, self.tile_grid)
            height, width = frame.shape[:2]
            matches = match_heads(item.heads * np.array([width, height, width, height], np.float32), found)
            image_crops = np.full((len(matches), CROP_SIZE, CROP_SIZE, 3), 114, np.uint8)
            if (matches >= 0).any():
                heads = head_boxes(found.keypoints, found.xyxy)[matches[matches >= 0]]
                image_crops[matches >= 0] = cut_crops(frame, upper_body_squares(heads))
            crops.append(image_crops)
            labels += item.labels
            groups += [item.group] * len(matches)
            covered.append(matches >= 0)
        if not crops:
            raise UserError(f"{path}: no labelled samples with a mapped state")
        y = np.array([STATE_INDEX[mapping[label]] if mapping.get(label) else NO_STATE for label in labels])
        return ClassroomCrops(np.concatenate(crops), y, np.array(groups), np.concatenate(covered))

    def _featurize(self, path: Path, fmt: str, dataset: str, mapping: dict[str, str | None], split: str | None,
                   limit: int | None) -> FeatureSet:
        import cv2

        items = list(READERS[fmt](path, mapping, fmt, split))
        if limit:
            items = items[:limit]
        if not items:
            raise UserError(f"{path}: no labelled samples with a mapped state")
        grid = self.tile_grid if fmt in CROWD_FORMATS else (1, 1)
        rows_X, rows_label, rows_group, rows_clip, rows_covered = [], [], [], [], []
        for item in items:
            frame = cv2.imread(str(item.image))
            if frame is None:
                raise UserError(f"cannot read image {item.image}")
            features, found, person_found = self.image_people(item.image, frame, grid)
            if item.heads is None:
                # one label per image: the largest person, or the whole image when it showed a face
                face_found = bool(features[0, FRAME_FEATURES.index("has_face")] == 1.0)
                matches = np.array([int(np.argmax(found.area)) if person_found or face_found else -1])
            else:
                height, width = frame.shape[:2]
                people = found if person_found else found[np.zeros(len(found), bool)]
                matches = match_heads(item.heads * np.array([width, height, width, height], np.float32), people)
            for match, label in zip(matches, item.labels):
                covered = match >= 0
                rows_X.append(features[match] if covered else np.full(len(FEATURE_NAMES), np.nan, np.float32))
                rows_label.append(label)
                rows_group.append(item.group)
                rows_clip.append(item.clip)
                rows_covered.append(covered)
        X = np.stack(rows_X).astype(np.float32)
        groups, clips = np.array(rows_group), np.array(rows_clip)
        if fmt not in CROWD_FORMATS:
            calibrate_persons(X, groups, clips, STREAM_SEED, ordered=fmt != WEBCAM)
        y = np.array([STATE_INDEX[mapping[label]] if mapping.get(label) else NO_STATE for label in rows_label])
        states = tuple(sorted({STATE_INDEX[state] for state in mapping.values() if state is not None}))
        return FeatureSet(X, y, np.array(rows_label), groups, clips, np.array(rows_covered), dataset, fmt, states)


def view_of(features: FeatureSet) -> str:
    """The camera view of a dataset's rows, from the reader that read them (webcam when unknown)."""
    return FORMAT_VIEWS.get(features.format, "webcam")


def person_streams(persons: np.ndarray, clips: np.ndarray, seed: int, ordered: bool = False) -> dict[str, np.ndarray]:
    """Row indices of each person as one session, frames in their recorded order within a clip: clips in the
    rows' order when ``ordered``, else (webcam: the dataset has no order between clips) in a seeded random order."""
    rng = np.random.default_rng(seed)
    streams = {}
    for person in sorted(set(persons.tolist())):
        person_clips = list(dict.fromkeys(clips[persons == person].tolist()))
        order = person_clips if ordered else rng.permutation(sorted(person_clips))
        streams[person] = np.concatenate([np.flatnonzero((persons == person) & (clips == clip)) for clip in order])
    return streams


def with_stream_baselines(features: FeatureSet) -> FeatureSet:
    """A csv-format set with ``baseline_frames``: how many face frames each row's running baseline holds in the
    calibration stream (``calibrate_persons``), the row's own included."""
    if features.format in CROWD_FORMATS:
        return features
    counts = np.zeros(len(features.y), int)
    has_face = face_rows(features.X[:, :len(FRAME_FEATURES)])
    for rows in person_streams(features.groups, features.clips, STREAM_SEED, ordered=features.format != WEBCAM).values():
        counts[rows] = np.cumsum(has_face[rows])
    return replace(features, baseline_frames=counts)


def calibrate_persons(X: np.ndarray, persons: np.ndarray, clips: np.ndarray, seed: int, ordered: bool = False) -> None:
    """Fill the relative features of per-image rows in place: each person is one track, streamed as
    ``person_streams`` orders them."""
    calibration = TrackCalibration()
    frame_columns = len(FRAME_FEATURES)
    for track_id, rows in enumerate(person_streams(persons, clips, seed, ordered).values()):
        for row in rows:
            X[row, frame_columns:] = calibration(np.array([track_id]), X[row:row + 1, :frame_columns])[0]


def _read_labels_csv(path: Path, required: set[str], optional: tuple[str, ...] = ()):
    """The folder's ``labels.csv`` with the ``required`` columns; every cell of those and of the ``optional`` columns
    it has is filled (an empty one would become a label, person or clip of its own), and a ``frame_index`` read is a
    number. Blank lines are skipped; the table's index is each row's line in the file, for the errors."""
    import pandas as pd

    labels_file = path / "labels.csv"
    try:
        # only an empty cell is missing: "NA" or "None" is a name
        table = pd.read_csv(labels_file, skip_blank_lines=False, keep_default_na=False, na_values=[""]).dropna(how="all")
    except (OSError, ValueError) as error:
        raise UserError(f"cannot read {labels_file}: {' '.join(str(error).split())}") from None
    missing = required - set(table.columns)
    if missing:
        raise UserError(f"{labels_file}: missing columns {sorted(missing)}")
    table.index += 2  # the header is line 1
    read = [column for column in table.columns if column in required or column in optional]
    for column in read:
        empty = table.index[table[column].isna()]
        if len(empty):
            raise UserError(f"{labels_file} line {empty[0]}: the {column} cell is empty")
    if "frame_index" in read:
        numbers = pd.to_numeric(table["frame_index"], errors="coerce")
        if numbers.isna().any():
            line = table.index[numbers.isna()][0]
            raise UserError(f"{labels_file} line {line}: frame_index {table['frame_index'].loc[line]!r} is not a number")
        table["frame_index"] = numbers
    return table


def _webcam_items(path: Path, mapping: dict, fmt: str, split: str | None) -> Iterator[Item]:
    for row in _read_labels_csv(path, {"path", "label", "clip"}).itertuples():
        if state_of(row.label, mapping, path / "labels.csv", fmt) is not None:
            # clips are named LABEL_LIGHTING_PERSON: the person id is the last field
            yield Item(path / row.path, f"person{str(row.clip).rsplit('_', 1)[-1]}", str(row.clip), None, [row.label])


def _labels_csv_items(path: Path, mapping: dict, fmt: str, split: str | None) -> Iterator[Item]:
    """Rows of any labels.csv, each person's rows by clip and ``frame_index`` (when given); without a ``person``
    column every image is its own person."""
    table = _read_labels_csv(path, {"path", "label"}, ("person", "clip", "frame_index"))
    table["label"] = table["label"].astype(str)
    table["person"] = table["person"].astype(str) if "person" in table.columns else table["path"].astype(str)
    table["clip"] = table["clip"].astype(str) if "clip" in table.columns else table["person"]
    if "frame_index" in table.columns:
        table = table.sort_values(["person", "clip", "frame_index"], kind="stable")
    for row in table.itertuples():
        state = state_of(row.label, mapping, path / "labels.csv", fmt)
        if state is not None or (fmt == LEVELS and row.label in ENGAGEMENT_LEVELS):
            yield Item(path / row.path, row.person, row.clip, None, [row.label])


def _coco_items(path: Path, mapping: dict, fmt: str, split: str | None) -> Iterator[Item]:
    """Upper-body boxes of a COCO ``annotations.json``, as the heads at their tops; group: the image's room."""
    annotations_file = path / "annotations.json"
    try:
        data = json.loads(annotations_file.read_text())
        names = {c["id"]: str(c["name"]) for c in data.get("categories", [])}
        boxes: dict[int, list] = {}
        for annotation in data.get("annotations", []):
            boxes.setdefault(annotation["image_id"], []).append(
                (names[annotation["category_id"]], _coco_box(annotation["bbox"])))
        images = data.get("images", [])
        if not isinstance(images, list) or not all(isinstance(image, dict) for image in images):
            raise TypeError("'images' is not a list of objects")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise UserError(f"{annotations_file}: not COCO annotations ({type(error).__name__}: {error})") from None
    for image in images:
        labelled = [(label, box) for label, box in boxes.get(image.get("id"), [])
                    if state_of(label, mapping, annotations_file, fmt) is not None]
        if not labelled:
            continue
        size = [image.get("width"), image.get("height")]
        if "file_name" not in image or not all(_is_number(side) and side > 0 for side in size):
            raise UserError(f"{annotations_file}: image {image.get('id')} lacks file_name, or a positive width and height")
        x, y, w, h = np.array([box for _, box in labelled], np.float32).T
        heads = upper_body_heads(np.stack([x, y, x + w, y + h], axis=1))
        name = str(image["file_name"])
        yield Item(path / name, str(image.get("room") or name), name,
                   heads / np.array(size * 2, np.float32), [label for label, _ in labelled])


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _coco_box(bbox: object) -> list[float]:
    """A COCO annotation's ``bbox``, checked: four numbers (x, y, width, height in pixels)."""
    if not (isinstance(bbox, list) and len(bbox) == 4 and all(map(_is_number, bbox))):
        raise ValueError(f"bbox {bbox!r} is not [x, y, width, height]")
    return bbox


def _cctv_items(path: Path, mapping: dict, fmt: str, split: str | None) -> Iterator[Item]:
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
            keep = np.array([state_of(label, mapping, label_file, fmt) is not None for label in labels])
            if not keep.any():
                continue
            cx, cy, w, h = rows[keep, 1:].T
            boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1).astype(np.float32)
            group = f"{split_dir.name}/{image_path.stem}"
            yield Item(image_path, group, group, boxes, [label for label, kept in zip(labels, keep) if kept])


def _yolo_names(path: Path) -> list[str]:
    """The class names in the ``data.yaml`` of a YOLO set (or of the set a split folder is in): its ``names``, a list
    or a mapping of class id to name."""
    for candidate in (path / "data.yaml", path.parent / "data.yaml"):
        if candidate.is_file():
            try:
                data = yaml.safe_load(candidate.read_text())
            except UnicodeDecodeError:
                raise UserError(f"{candidate}: not a YOLO data.yaml (not UTF-8 text)") from None
            except yaml.YAMLError as error:
                raise UserError(f"{candidate}: not valid YAML ({str(error).splitlines()[0]})") from None
            names = data.get("names") if isinstance(data, dict) else None
            if isinstance(names, dict):
                names = list(names.values())
            if not isinstance(names, list) or not names:
                raise UserError(f"{candidate}: no class names (expected a mapping with 'names: [name, ...]')")
            return [str(name) for name in names]
    raise UserError(f"{path}: data.yaml with class names not found")


READERS = {CCTV_YOLO: _cctv_items, COCO: _coco_items, WEBCAM: _webcam_items, LABELS_CSV: _labels_csv_items,
           LEVELS: _labels_csv_items}
