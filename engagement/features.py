"""Per-person feature vectors for the engagement-state classifier.

Three groups, concatenated in ``FEATURE_NAMES`` order:
- pose geometry from the 17 COCO keypoints (head orientation from nose, eyes and ears; head below the
  shoulder line; wrists above the shoulders or at the face; lean; motion since the track's last frame);
- a head-crop descriptor (HOG and brightness of the head region), which carries the signal when the
  keypoints are weak and the face too small for landmarks, as in ceiling CCTV views (missing when the
  face landmarker found the face);
- MediaPipe face blendshapes and head pose when the face is large enough;
- the same pose geometry, blendshapes and head pose relative to the track's own running baseline
  (``TrackCalibration``): a z-score against the track's history, so that a person's resting face and
  posture count as ordinary for that person (expressions differ more between people than between states).
Anything that cannot be measured is NaN, with a presence flag beside it: missing parts are marked, never
invented. Geometry is normalised by the person's scale so that near and far students compare.
"""

from __future__ import annotations

import warnings

import numpy as np

from engagement.config import ClassifierConfig
from engagement.detections import KEYPOINT_INDEX, KEYPOINT_MIN_SCORE, UNTRACKED, Detections
from engagement.face import BLENDSHAPES, HEAD_POSE, FaceAnalyzer

FEATURES_VERSION = 3  # bump when the meaning of a feature changes: cached feature rows become stale
HEAD_CROP_PX = 32
MOTION_MAX_GAP_S = 2.0  # older history is too stale to call the difference motion
CALIBRATION_MIN_FRAMES = 10  # a baseline from fewer face frames is too noisy to compare against

_FLAGGED_KEYPOINTS = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
)
POSE_FEATURES: tuple[str, ...] = (
    *(f"has_{name}" for name in _FLAGGED_KEYPOINTS),
    "head_yaw", "ear_balance", "head_pitch", "head_roll", "nose_above_ears",
    "head_above_shoulders", "head_below_shoulders", "head_offset_x",
    "left_wrist_above_shoulder", "right_wrist_above_shoulder", "left_wrist_to_nose", "right_wrist_to_nose",
    "wrist_above_shoulder", "wrist_near_face", "left_elbow_angle", "right_elbow_angle",
    "shoulder_tilt", "lean", "box_aspect", "head_size",
)
MOTION_FEATURES: tuple[str, ...] = ("head_motion", "box_motion")
_HOG_BINS = 9
_HOG_LENGTH = 4 * 4 * _HOG_BINS  # 2x2 blocks of 2x2 cells of 8 px on a 32 px crop
HEAD_FEATURES: tuple[str, ...] = (
    *(f"head_hog_{i}" for i in range(_HOG_LENGTH)),
    "head_gray_mean", "head_gray_std", "head_saturation", "head_dark_share",
)
FACE_FEATURES: tuple[str, ...] = ("has_face", *BLENDSHAPES, *HEAD_POSE)
CALIBRATED_FEATURES: tuple[str, ...] = (
    *(name for name in POSE_FEATURES if not name.startswith("has_")), *BLENDSHAPES, *HEAD_POSE,
)
RELATIVE_FEATURES: tuple[str, ...] = tuple(f"rel_{name}" for name in CALIBRATED_FEATURES)
FRAME_FEATURES: tuple[str, ...] = (*POSE_FEATURES, *MOTION_FEATURES, *HEAD_FEATURES, *FACE_FEATURES)
FEATURE_NAMES: tuple[str, ...] = (*FRAME_FEATURES, *RELATIVE_FEATURES)
_CALIBRATED_INDEX = np.array([FRAME_FEATURES.index(name) for name in CALIBRATED_FEATURES])
_HAS_FACE_INDEX = FRAME_FEATURES.index("has_face")


def _point(keypoints: np.ndarray, name: str) -> np.ndarray:
    """(N, 2) coordinates of one keypoint, NaN where its score is too low."""
    kp = keypoints[:, KEYPOINT_INDEX[name]]
    return np.where(kp[:, 2:3] >= KEYPOINT_MIN_SCORE, kp[:, :2], np.nan)


def _midpoint(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a + b) / 2


def _distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.linalg.norm(a - b, axis=1)


def _angle_at(a: np.ndarray, vertex: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angle a-vertex-b in degrees (180 = straight arm)."""
    u, v = a - vertex, b - vertex
    cosine = np.sum(u * v, axis=1) / (np.linalg.norm(u, axis=1) * np.linalg.norm(v, axis=1) + 1e-9)
    return np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0)))


def person_scale(keypoints: np.ndarray, xyxy: np.ndarray) -> np.ndarray:
    """(N,) length unit per person: shoulder width, else half the box width."""
    shoulders = _distance(_point(keypoints, "left_shoulder"), _point(keypoints, "right_shoulder"))
    fallback = (xyxy[:, 2] - xyxy[:, 0]) / 2
    scale = np.where(np.isfinite(shoulders) & (shoulders > 1.0), shoulders, fallback)
    return np.maximum(scale, 1.0)


def head_boxes(keypoints: np.ndarray, xyxy: np.ndarray) -> np.ndarray:
    """(N, 4) head box per person: around the visible face keypoints, else the top of the person box."""
    names = ("nose", "left_eye", "right_eye", "left_ear", "right_ear")
    face = np.stack([_point(keypoints, name) for name in names], axis=1)  # (N, 5, 2)
    visible = np.isfinite(face[..., 0]).sum(axis=1)
    width = xyxy[:, 2] - xyxy[:, 0]
    boxes = np.empty((len(xyxy), 4), np.float32)
    for i in range(len(xyxy)):
        if visible[i] >= 2:
            center = np.nanmean(face[i], axis=0)
            spread = np.nanmax(face[i], axis=0) - np.nanmin(face[i], axis=0)
            size = max(spread[0] * 1.8, spread[1] * 3.0, width[i] * 0.25, 8.0)
            size = min(size, width[i] * 0.9) if width[i] > 16 else size
            # face keypoints sit in the upper-middle of the head: centre a little lower
            center = center + np.array([0.0, size * 0.05])
        else:
            size = max(width[i] * 0.45, 8.0)
            center = np.array([(xyxy[i, 0] + xyxy[i, 2]) / 2, xyxy[i, 1] + size / 2])
        boxes[i] = [center[0] - size / 2, center[1] - size / 2, center[0] + size / 2, center[1] + size / 2]
    return boxes


def pose_features(keypoints: np.ndarray, xyxy: np.ndarray) -> np.ndarray:
    """(N, len(POSE_FEATURES)) geometry from keypoints (N, 17, 3) and boxes (N, 4); NaN where unmeasurable."""
    keypoints = np.asarray(keypoints, np.float32)
    xyxy = np.asarray(xyxy, np.float32)
    points = {name: _point(keypoints, name) for name in _FLAGGED_KEYPOINTS}
    flags = [np.isfinite(points[name][:, 0]).astype(np.float32) for name in _FLAGGED_KEYPOINTS]
    scale = person_scale(keypoints, xyxy)
    nose = points["nose"]
    eyes_mid = _midpoint(points["left_eye"], points["right_eye"])
    ears_mid = _midpoint(points["left_ear"], points["right_ear"])
    eye_dist = np.maximum(_distance(points["left_eye"], points["right_eye"]), 1.0)
    ear_dist = np.maximum(_distance(points["left_ear"], points["right_ear"]), 1.0)
    shoulders_mid = _midpoint(points["left_shoulder"], points["right_shoulder"])
    hips_mid = _midpoint(points["left_hip"], points["right_hip"])

    # Yaw: nose off the ear midpoint (both ears), else off the eye midpoint.
    yaw = np.where(np.isfinite(ears_mid[:, 0]), (nose[:, 0] - ears_mid[:, 0]) / ear_dist,
                   (nose[:, 0] - eyes_mid[:, 0]) / eye_dist)
    ear_scores = keypoints[:, [KEYPOINT_INDEX["left_ear"], KEYPOINT_INDEX["right_ear"]], 2]
    ear_balance = ear_scores[:, 0] - ear_scores[:, 1]
    pitch = (nose[:, 1] - eyes_mid[:, 1]) / eye_dist
    eye_vector = points["left_eye"] - points["right_eye"]
    roll = np.degrees(np.arctan2(eye_vector[:, 1], eye_vector[:, 0]))
    head_ref = np.where(np.isfinite(ears_mid), ears_mid, eyes_mid)
    nose_above_ears = (head_ref[:, 1] - nose[:, 1]) / scale
    head_y = np.where(np.isfinite(nose[:, 1]), nose[:, 1], eyes_mid[:, 1])
    head_above_shoulders = (shoulders_mid[:, 1] - head_y) / scale
    head_below = np.where(np.isfinite(head_above_shoulders), (head_above_shoulders < 0).astype(np.float32), np.nan)
    head_offset_x = (nose[:, 0] - shoulders_mid[:, 0]) / scale

    wrist_rise = {side: (points[f"{side}_shoulder"][:, 1] - points[f"{side}_wrist"][:, 1]) / scale
                  for side in ("left", "right")}
    wrist_to_nose = {side: _distance(points[f"{side}_wrist"], nose) / scale for side in ("left", "right")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows stay NaN, as intended
        wrist_above = np.nanmax(np.stack(list(wrist_rise.values())), axis=0)
        wrist_near_face = np.nanmin(np.stack(list(wrist_to_nose.values())), axis=0)
    elbow_angle = {side: _angle_at(points[f"{side}_shoulder"], points[f"{side}_elbow"], points[f"{side}_wrist"])
                   for side in ("left", "right")}
    shoulder_vector = points["left_shoulder"] - points["right_shoulder"]
    shoulder_tilt = np.degrees(np.arctan2(shoulder_vector[:, 1], np.abs(shoulder_vector[:, 0]) + 1e-9))
    torso = shoulders_mid - hips_mid
    lean = np.degrees(np.arctan2(torso[:, 0], -torso[:, 1]))
    width = np.maximum(xyxy[:, 2] - xyxy[:, 0], 1.0)
    box_aspect = (xyxy[:, 3] - xyxy[:, 1]) / width
    heads = head_boxes(keypoints, xyxy)
    head_size = (heads[:, 2] - heads[:, 0]) / width

    columns = [
        *flags, yaw, ear_balance, pitch, roll, nose_above_ears, head_above_shoulders, head_below, head_offset_x,
        wrist_rise["left"], wrist_rise["right"], wrist_to_nose["left"], wrist_to_nose["right"],
        wrist_above, wrist_near_face, elbow_angle["left"], elbow_angle["right"],
        shoulder_tilt, lean, box_aspect, head_size,
    ]
    return np.stack(columns, axis=1).astype(np.float32)


def head_crop_features(frame: np.ndarray, head_box: np.ndarray) -> np.ndarray:
    """(len(HEAD_FEATURES),) HOG and brightness of one head crop; NaN when the box leaves the frame."""
    import cv2

    height, width = frame.shape[:2]
    x0, y0, x1, y1 = (int(round(v)) for v in head_box)
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    if x1 - x0 < 4 or y1 - y0 < 4:
        return np.full(len(HEAD_FEATURES), np.nan, np.float32)
    crop = cv2.resize(frame[y0:y1, x0:x1], (HEAD_CROP_PX, HEAD_CROP_PX), interpolation=cv2.INTER_AREA)
    gray = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
    hog = _hog().compute(gray).ravel()
    saturation = cv2.cvtColor(crop, cv2.COLOR_BGR2HSV)[:, :, 1]
    stats = [gray.mean() / 255, gray.std() / 255, saturation.mean() / 255, float(np.mean(gray < 60))]
    return np.concatenate([hog, stats]).astype(np.float32)


_HOG_DESCRIPTOR = None


def _hog():
    global _HOG_DESCRIPTOR
    if _HOG_DESCRIPTOR is None:
        import cv2

        _HOG_DESCRIPTOR = cv2.HOGDescriptor((HEAD_CROP_PX, HEAD_CROP_PX), (16, 16), (16, 16), (8, 8), _HOG_BINS)
    return _HOG_DESCRIPTOR


def face_crop(frame: np.ndarray, head_box: np.ndarray, margin: float = 0.6) -> np.ndarray:
    """The head box enlarged by ``margin`` on each side, clipped to the frame: room for the landmarker."""
    height, width = frame.shape[:2]
    size = head_box[2] - head_box[0]
    x0, y0 = int(max(head_box[0] - margin * size, 0)), int(max(head_box[1] - margin * size, 0))
    x1, y1 = int(min(head_box[2] + margin * size, width)), int(min(head_box[3] + margin * size, height))
    return frame[y0:y1, x0:x1]


class RunningStats:
    """Mean and standard deviation of feature vectors seen so far (Welford), per feature, skipping NaN."""

    def __init__(self, size: int) -> None:
        self.frames = 0  # vectors added
        self.count = np.zeros(size)
        self.mean = np.zeros(size)
        self._sum_sq = np.zeros(size)

    def add(self, values: np.ndarray) -> None:
        self.frames += 1
        seen = np.isfinite(values)
        self.count[seen] += 1
        delta = np.where(seen, values - self.mean, 0.0)
        self.mean += delta / np.maximum(self.count, 1)
        self._sum_sq += delta * np.where(seen, values - self.mean, 0.0)

    def zscore(self, values: np.ndarray, min_count: int = CALIBRATION_MIN_FRAMES) -> np.ndarray:
        """(values - mean) / std, NaN where fewer than ``min_count`` values were seen."""
        std = np.sqrt(self._sum_sq / np.maximum(self.count, 1))
        z = (values - self.mean) / (std + 1e-3)
        return np.where(self.count >= min_count, z, np.nan)


def face_rows(frame_features: np.ndarray) -> np.ndarray:
    """Rows whose face was analysed: only these feed and receive a calibration."""
    return frame_features[:, _HAS_FACE_INDEX] == 1.0


def without_relative(rows: np.ndarray) -> np.ndarray:
    """A copy of feature rows (``FEATURE_NAMES`` first) with the relative features missing: a model fitted on such
    rows never reads a baseline."""
    rows = np.array(rows, copy=True)
    rows[:, len(FRAME_FEATURES):len(FEATURE_NAMES)] = np.nan
    return rows


def warming_up(frame_features: np.ndarray, baseline_frames: np.ndarray, warmup_frames: int) -> np.ndarray:
    """Rows with an analysed face whose track's baseline holds fewer than ``warmup_frames`` face frames: the
    classifier's warm-up model takes them (``classifier.warmup_frames``; 0: none)."""
    return face_rows(frame_features) & (np.asarray(baseline_frames) < warmup_frames)


class TrackCalibration:
    """``RELATIVE_FEATURES`` from each track's running baseline, causally: a frame is compared with the
    track's face frames up to and including itself. Untracked rows and rows without a face stay NaN.
    Rows marked not to ``learn`` (a face result reused from an earlier frame) are compared but not added, so
    each face observation counts once in the baseline, as in training."""

    def __init__(self) -> None:
        self._stats: dict[int, RunningStats] = {}

    def __call__(self, track_ids: np.ndarray, frame_features: np.ndarray, learn: np.ndarray | None = None) -> np.ndarray:
        """(N, len(RELATIVE_FEATURES)) for (N, len(FRAME_FEATURES)) rows; updates the tracks' baselines
        with the rows where ``learn`` is true (all rows by default)."""
        relative = np.full((len(frame_features), len(RELATIVE_FEATURES)), np.nan, np.float32)
        with_face = face_rows(frame_features)
        for i, track_id in enumerate(np.asarray(track_ids).tolist()):
            if track_id == UNTRACKED or not with_face[i]:
                continue
            values = frame_features[i, _CALIBRATED_INDEX].astype(np.float64)
            stats = self._stats.setdefault(track_id, RunningStats(len(CALIBRATED_FEATURES)))
            if learn is None or learn[i]:
                stats.add(values)
            relative[i] = stats.zscore(values)
        return relative

    def baseline_frames(self, track_ids: np.ndarray) -> np.ndarray:
        """How many face frames each track's baseline holds (0 for a track without one)."""
        return np.array([self._stats[t].frames if t in self._stats else 0 for t in np.asarray(track_ids).tolist()], int)

    def forget(self, track_id: int) -> None:
        self._stats.pop(track_id, None)


def session_relative(frame_features: np.ndarray, learn: np.ndarray | None = None) -> np.ndarray:
    """``RELATIVE_FEATURES`` against the baseline of the whole session (all rows of one person, or those
    marked to ``learn``): what the running baseline converges to. Training adds these rows so the model knows
    settled baselines too; the pipeline's ``classifier.baseline: session`` uses them for recorded videos."""
    stats = RunningStats(len(CALIBRATED_FEATURES))
    with_face = face_rows(frame_features)
    values = frame_features[:, _CALIBRATED_INDEX].astype(np.float64)
    learned = with_face if learn is None else with_face & np.asarray(learn, bool)
    for row in values[learned]:
        stats.add(row)
    relative = np.full((len(frame_features), len(RELATIVE_FEATURES)), np.nan, np.float32)
    relative[with_face] = stats.zscore(values[with_face])
    return relative


class FeatureExtractor:
    """Features for every detection of one analysis frame; keeps per-track history for motion and
    for the running baseline of the relative features."""

    def __init__(self, config: ClassifierConfig | None = None, models_dir: str | None = None) -> None:
        self.config = config or ClassifierConfig()
        self.models_dir = models_dir
        self._face: FaceAnalyzer | None = None
        self._history: dict[int, tuple[float, np.ndarray, np.ndarray, float]] = {}
        self.calibration = TrackCalibration()
        self._faces: dict[int, tuple[float, np.ndarray]] = {}

    @property
    def face(self) -> FaceAnalyzer:
        if self._face is None:
            self._face = FaceAnalyzer(self.config.face_landmarker, self.models_dir)
        return self._face

    def __call__(self, frame: np.ndarray, detections: Detections, time_s: float,
                 heads: np.ndarray | None = None) -> np.ndarray:
        """(N, len(FEATURE_NAMES)) float32 features for ``detections`` in BGR ``frame``, the relative ones
        against each track's running baseline; ``heads`` replaces the head boxes found from the keypoints."""
        frame_features, fresh = self.frame_features(frame, detections, time_s, heads)
        relative = self.calibration(detections.track_id, frame_features, learn=fresh)
        return np.concatenate([frame_features, relative], axis=1)

    def frame_features(self, frame: np.ndarray, detections: Detections, time_s: float,
                       heads: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(N, len(FRAME_FEATURES)) float32 features without the relative ones, and whether each row's face
        was analysed on this frame (a reused face result must count once in a baseline). ``heads`` (N, 4)
        replaces the head boxes found from the keypoints (a face crop is its own head)."""
        n = len(detections)
        if n == 0:
            return np.empty((0, len(FRAME_FEATURES)), np.float32), np.empty(0, bool)
        pose = pose_features(detections.keypoints, detections.xyxy)
        heads = head_boxes(detections.keypoints, detections.xyxy) if heads is None else np.asarray(heads, np.float32)
        motion = self._motion(detections, heads, time_s)
        head = np.stack([head_crop_features(frame, box) for box in heads])
        faces = [self._tracked_face_features(frame, box, track_id, time_s) for box, track_id in zip(heads, detections.track_id.tolist())]
        face = np.stack([features for features, _ in faces])
        fresh = np.array([is_fresh for _, is_fresh in faces])
        # The crop descriptor is the fallback for faces too small for landmarks; with landmarks it mostly
        # encodes who the person is, which does not carry over to unseen people.
        head[face[:, 0] == 1.0] = np.nan
        return np.concatenate([pose, motion, head, face], axis=1).astype(np.float32), fresh

    def _tracked_face_features(self, frame: np.ndarray, head_box: np.ndarray, track_id: int, time_s: float) -> tuple[np.ndarray, bool]:
        """Face features of a tracked person, reused for ``face_refresh_s`` after they were computed, and
        whether they were computed on this frame."""
        cached = self._faces.get(track_id)
        if track_id != UNTRACKED and cached is not None and 0 <= time_s - cached[0] < self.config.face_refresh_s:
            return cached[1], False
        features = self._face_features(frame, head_box)
        if track_id != UNTRACKED:
            self._faces[track_id] = (time_s, features)
        return features, True

    def _face_features(self, frame: np.ndarray, head_box: np.ndarray) -> np.ndarray:
        missing = np.full(len(FACE_FEATURES), np.nan, np.float32)
        missing[0] = 0.0
        if head_box[2] - head_box[0] < self.config.min_face_px:
            return missing
        result = self.face(face_crop(frame, head_box))
        if result is None:
            return missing
        return np.concatenate([[1.0], result.blendshapes, result.head_pose]).astype(np.float32)

    def _motion(self, detections: Detections, heads: np.ndarray, time_s: float) -> np.ndarray:
        """Head and box centre speed (person scales per second) since the track's previous frame."""
        scale = person_scale(detections.keypoints, detections.xyxy)
        head_centers = (heads[:, :2] + heads[:, 2:]) / 2
        box_centers = (detections.xyxy[:, :2] + detections.xyxy[:, 2:]) / 2
        motion = np.full((len(detections), len(MOTION_FEATURES)), np.nan, np.float32)
        for i, track_id in enumerate(detections.track_id.tolist()):
            if track_id == UNTRACKED:
                continue
            previous = self._history.get(track_id)
            if previous is not None and 0 < time_s - previous[0] <= MOTION_MAX_GAP_S:
                dt = time_s - previous[0]
                unit = (scale[i] + previous[3]) / 2
                motion[i, 0] = np.linalg.norm(head_centers[i] - previous[1]) / unit / dt
                motion[i, 1] = np.linalg.norm(box_centers[i] - previous[2]) / unit / dt
            self._history[track_id] = (time_s, head_centers[i], box_centers[i], float(scale[i]))
        return motion

    def forget(self, track_id: int) -> None:
        """Drop a finished track's history."""
        self._history.pop(track_id, None)
        self.calibration.forget(track_id)
        self._faces.pop(track_id, None)

    def close(self) -> None:
        """Release the face landmarker now: MediaPipe's own finalizer fails when run at interpreter exit."""
        if self._face is not None:
            self._face.close()
            self._face = None
