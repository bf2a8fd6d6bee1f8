"""Hands as a second source of wrists: MediaPipe's hand models fill the wrists the pose model misses.

In a close (laptop, video-call) framing the arm is out of the picture and YOLO pose finds no wrist, so a raised
hand beside the face is invisible to the pose features. The palm detector sees the hand itself; seen that close, a
face also looks like a palm to it, so the hand landmark model's hand-presence output confirms each palm (the check
MediaPipe's own hand tracker makes). ``PalmDetector`` and ``HandPresence`` are the adapters (the only code that
reads the two models' outputs); ``HandWrists`` gives each person the wrist of a confirmed palm within reach of their
head, only where the pose model found none, so the pose features (``wrist_rise``, ``wrist_to_nose``) measure it
like any other wrist.

The models are MediaPipe's ``palm_detection_full.tflite`` and ``hand_landmark_full.tflite`` (Apache-2.0), shipped
inside the ``mediapipe`` 0.10 wheels (``mediapipe/modules/``); ``engagement models hands`` copies them into the
models directory. Both run on OpenVINO (or OpenCV's DNN module): no TensorFlow Lite runtime is needed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engagement.anonymize import box_iou
from engagement.config import HandsConfig
from engagement.detections import KEYPOINT_INDEX, KEYPOINT_MIN_SCORE, Detections
from engagement.errors import UserError, error_line
from engagement.models import OPENVINO_ONE_THREAD, openvino_available, resolve_model

INPUT_SIZE = 192
LANDMARK_INPUT_SIZE = 224
# SSD anchors of the palm model: (stride, anchors per cell), one fixed-size anchor per entry.
_ANCHOR_LAYERS = ((8, 2), (16, 6))
_PALM_KEYPOINTS = 7  # wrist, index, middle, ring and little finger bases, two thumb joints
_MIDDLE_FINGER_BASE = 2
_REACH_HEADS = 4.0  # a hand further from the head than this many head widths is someone else's
# MediaPipe's crop of the hand around a palm: 2.6 palm sizes, moved half a palm towards the fingers.
_HAND_CROP_SCALE, _HAND_CROP_SHIFT = 2.6, 0.5


@dataclass
class Palms:
    """Palms found in one frame, in frame pixels: scores (K,), boxes (K, 4) xyxy, wrist points (K, 2) and the base
    of the middle finger (K, 2), which says which way the hand points."""

    scores: np.ndarray
    xyxy: np.ndarray
    wrists: np.ndarray
    knuckles: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)

    def __getitem__(self, index: np.ndarray) -> "Palms":
        return Palms(self.scores[index], self.xyxy[index], self.wrists[index], self.knuckles[index])

    @classmethod
    def concatenate(cls, parts: list["Palms"]) -> "Palms":
        """One set of the palms of several tiles (empty parts included)."""
        return cls(*(np.concatenate([getattr(p, name) for p in parts]).reshape(-1, *shape)
                     for name, shape in (("scores", ()), ("xyxy", (4,)), ("wrists", (2,)), ("knuckles", (2,)))))


def palm_anchors() -> np.ndarray:
    """(2016, 2) anchor centres of the 192x192 palm model, in its input's 0-1 coordinates."""
    centres = []
    for stride, per_cell in _ANCHOR_LAYERS:
        cells = INPUT_SIZE // stride
        for y in range(cells):
            for x in range(cells):
                centres.extend([((x + 0.5) / cells, (y + 0.5) / cells)] * per_cell)
    return np.array(centres, np.float32)


def decode_palms(regressors: np.ndarray, logits: np.ndarray, anchors: np.ndarray, min_score: float) -> Palms:
    """Boxes and wrists in the model's 0-1 input coordinates from its raw (2016, 18) and (2016,) outputs."""
    scores = 1.0 / (1.0 + np.exp(-np.clip(logits, -100.0, 100.0)))
    keep = scores >= min_score
    raw, centres = regressors[keep] / INPUT_SIZE, anchors[keep]
    box_centre = raw[:, :2] + centres
    half = raw[:, 2:4] / 2
    xyxy = np.concatenate([box_centre - half, box_centre + half], axis=1)
    keypoints = raw[:, 4:].reshape(-1, _PALM_KEYPOINTS, 2) + centres[:, None]
    return Palms(scores[keep].astype(np.float32), xyxy.astype(np.float32), keypoints[:, 0].astype(np.float32),
                 keypoints[:, _MIDDLE_FINGER_BASE].astype(np.float32))


def suppress(palms: Palms, iou: float = 0.3) -> Palms:
    """Greedy non-maximum suppression: the best-scoring palm of each overlapping group."""
    overlaps = box_iou(palms.xyxy, palms.xyxy)
    kept: list[int] = []
    for i in np.argsort(-palms.scores):
        if all(overlaps[i, j] <= iou for j in kept):
            kept.append(int(i))
    return palms[np.array(kept, int)]


def square_tiles(height: int, width: int) -> list[tuple[int, int, int]]:
    """(x0, y0, side) squares covering the frame along its longer side: the model sees a square input, and a
    letterboxed wide frame would shrink the hands."""
    side = min(height, width)
    count = math.ceil(max(height, width) / side)
    starts = np.linspace(0, max(height, width) - side, count).round().astype(int) if count > 1 else np.zeros(1, int)
    return [(int(s), 0, side) if width >= height else (0, int(s), side) for s in starts]


def hand_crop_corners(palms: Palms) -> np.ndarray:
    """(K, 3, 2) top-left, top-right and bottom-left corners of the square hand crop around each palm, turned so that
    the fingers point up in the crop."""
    up = palms.knuckles - palms.wrists
    up = up / np.maximum(np.linalg.norm(up, axis=1, keepdims=True), 1e-6)
    right = np.stack([-up[:, 1], up[:, 0]], axis=1)
    size = palms.xyxy[:, 2:] - palms.xyxy[:, :2]
    centre = (palms.xyxy[:, :2] + palms.xyxy[:, 2:]) / 2 + up * _HAND_CROP_SHIFT * size[:, 1:]
    half = _HAND_CROP_SCALE * size.max(axis=1, keepdims=True) / 2
    return np.stack([centre + (up - right) * half, centre + (up + right) * half, centre - (up + right) * half], axis=1)


class TFLiteModel:
    """A ``.tflite`` model on OpenVINO (one CPU thread, as the project's other small models: about 4 ms for the palm
    detector here, against about 30 ms in OpenCV's DNN module), else on OpenCV's DNN module (``backend``: auto, openvino
    or opencv). Takes one RGB image (0-1 floats, height x width x 3) and gives its outputs by name."""

    def __init__(self, path: Path, what: str, backend: str = "auto") -> None:
        if backend == "openvino" or (backend == "auto" and openvino_available()):
            import openvino as ov

            try:
                compiled = ov.Core().compile_model(str(path), "CPU", OPENVINO_ONE_THREAD)
            except RuntimeError as error:
                raise UserError(f"cannot load {what} {path}: {error_line(error, last=True)}") from None
            names = [output.get_any_name() for output in compiled.outputs]
            self._run = lambda image: dict(zip(names, compiled(image[None]).values()))
        else:
            import cv2

            try:
                net = cv2.dnn.readNetFromTFLite(str(path))
            except cv2.error as error:
                raise UserError(f"cannot load {what} {path}: {error_line(error, last=True)}") from None
            names = list(net.getUnconnectedOutLayersNames())

            def run(image: np.ndarray) -> dict[str, np.ndarray]:
                net.setInput(np.ascontiguousarray(image.transpose(2, 0, 1)[None]))
                return dict(zip(names, net.forward(names)))

            self._run = run

    def __call__(self, image: np.ndarray) -> dict[str, np.ndarray]:
        return self._run(image)


def _rgb(image: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0


class PalmDetector:
    """MediaPipe's palm detector, run on square tiles of the frame."""

    def __init__(self, model: str = HandsConfig.palm_model, min_score: float = 0.5, models_dir: str | None = None) -> None:
        self._model = TFLiteModel(resolve_model(model, models_dir), "palm detector")
        self.min_score = min_score
        self._anchors = palm_anchors()

    def __call__(self, frame: np.ndarray) -> Palms:
        """Palms in a BGR frame, in frame pixels."""
        import cv2

        found = []
        for x0, y0, side in square_tiles(*frame.shape[:2]):
            tile = cv2.resize(frame[y0:y0 + side, x0:x0 + side], (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_AREA)
            outputs = self._model(_rgb(tile))
            regressors = outputs["Identity"].reshape(-1, 4 + 2 * _PALM_KEYPOINTS)
            palms = decode_palms(regressors, outputs["Identity_1"].reshape(-1), self._anchors, self.min_score)
            offset = np.array([x0, y0], np.float32)
            found.append(Palms(palms.scores, palms.xyxy * side + np.tile(offset, 2), palms.wrists * side + offset,
                               palms.knuckles * side + offset))
        return suppress(Palms.concatenate(found))


class HandPresence:
    """MediaPipe's hand landmark model, read for its hand-presence output only: whether each palm's hand crop holds
    a hand (0-1)."""

    def __init__(self, model: str = HandsConfig.landmark_model, models_dir: str | None = None) -> None:
        # outputs: Identity 21 landmarks (63 values), Identity_1 hand presence, Identity_2 handedness, Identity_3
        # 21 world landmarks
        self._model = TFLiteModel(resolve_model(model, models_dir), "hand landmark model")

    def __call__(self, frame: np.ndarray, palms: Palms) -> np.ndarray:
        import cv2

        target = np.float32([[0, 0], [LANDMARK_INPUT_SIZE, 0], [0, LANDMARK_INPUT_SIZE]])
        presence = np.zeros(len(palms), np.float32)
        for i, corners in enumerate(hand_crop_corners(palms)):
            warp = cv2.getAffineTransform(corners.astype(np.float32), target)
            crop = cv2.warpAffine(frame, warp, (LANDMARK_INPUT_SIZE, LANDMARK_INPUT_SIZE), borderValue=(0, 0, 0))
            presence[i] = float(self._model(_rgb(crop))["Identity_1"].reshape(-1)[0])
        return presence


class HandWrists:
    """Fill each person's missing wrists from the confirmed palms near their head (the ``hands`` config)."""

    def __init__(self, palm_detector: PalmDetector, presence: HandPresence, min_presence: float) -> None:
        self.palm_detector, self.presence, self.min_presence = palm_detector, presence, min_presence

    @classmethod
    def from_config(cls, config: HandsConfig, models_dir: str | None = None) -> "HandWrists":
        return cls(PalmDetector(config.palm_model, config.min_palm_score, models_dir),
                   HandPresence(config.landmark_model, models_dir), config.min_presence)

    def confirmed_palms(self, frame: np.ndarray) -> Palms:
        """The palms in ``frame`` that the landmark model confirms as hands."""
        palms = self.palm_detector(frame)
        return palms[self.presence(frame, palms) >= self.min_presence] if len(palms) else palms

    def __call__(self, frame: np.ndarray, detections: Detections) -> Detections:
        wrists = detections.keypoints[:, [KEYPOINT_INDEX["left_wrist"], KEYPOINT_INDEX["right_wrist"]], 2]
        if (wrists >= KEYPOINT_MIN_SCORE).all():  # nobody, or every wrist found: nothing to fill
            return detections
        return with_palm_wrists(detections, self.confirmed_palms(frame))


def with_palm_wrists(detections: Detections, palms: Palms) -> Detections:
    """A copy of ``detections`` whose missing wrists come from ``palms``.

    Each palm goes to the person whose head is nearest, if within reach (``_REACH_HEADS`` head widths); a palm on
    the image's left of the head is the person's right hand (they face the camera). A wrist the pose model found
    is kept, and each wrist is filled at most once, by the best palm."""
    from engagement.features import head_boxes

    if not len(detections) or not len(palms):
        return detections
    keypoints = detections.keypoints.copy()
    heads = head_boxes(keypoints, detections.xyxy)
    head_centres = (heads[:, :2] + heads[:, 2:]) / 2
    head_widths = np.maximum(heads[:, 2] - heads[:, 0], 1.0)
    palm_centres = (palms.xyxy[:, :2] + palms.xyxy[:, 2:]) / 2
    missing = keypoints[:, :, 2] < KEYPOINT_MIN_SCORE
    for p in np.argsort(-palms.scores):
        distances = np.linalg.norm(head_centres - palm_centres[p], axis=1) / head_widths
        person = int(np.argmin(distances))
        if distances[person] > _REACH_HEADS:
            continue
        side = "right" if palm_centres[p, 0] < head_centres[person, 0] else "left"
        wrist = KEYPOINT_INDEX[f"{side}_wrist"]
        if missing[person, wrist]:
            keypoints[person, wrist] = [*palms.wrists[p], palms.scores[p]]
            missing[person, wrist] = False
    filled = detections[np.ones(len(detections), bool)]
    filled.keypoints = keypoints
    return filled
