"""Face anonymization that fails closed.

Masks come from two independent sources so that one missing a face does not expose it:
1. a face detector (YuNet, ``cv2.FaceDetectorYN``) on the frame;
2. the head region of each person from pose keypoints (nose, eyes, ears; when those are weak, the
   top of the person box).
Each mask is the source box enlarged by ``mask_scale`` and is held for ``hold_s`` after its last
sighting, so a missed detection or a turned head never shows a face for a frame. Of the faces the
detector finds, at most one per consenting person is shown, the one at that person's head; every other
face is blurred too: nobody is shown unless the pipeline knows they consented.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from engagement.config import AnonymizerConfig
from engagement.detections import KEYPOINT_INDEX, KEYPOINT_MIN_SCORE, Detections
from engagement.errors import UserError, error_line
from engagement.models import OPENVINO_ONE_THREAD, openvino_available, resolve_model

HEAD_KEYPOINTS = [KEYPOINT_INDEX[name] for name in ("nose", "left_eye", "right_eye", "left_ear", "right_ear")]
SHOULDERS = [KEYPOINT_INDEX["left_shoulder"], KEYPOINT_INDEX["right_shoulder"]]
OWN_FACE_KEYPOINTS = [KEYPOINT_INDEX[name] for name in ("nose", "left_eye", "right_eye")]
OWN_FEATURES_INSIDE = 2  # of those keypoints, inside a face box for it to be shown as that person's face...
OWN_FACE_SCALE = 1.5  # ...enlarged this much: YuNet's box is tight, and a small face's keypoints fall on its edge
MASK_MATCH_IOU = 0.3  # a new mask this close to a held one absorbs it (their union), instead of piling up...
MASK_MAX_GROWTH = 2.0  # ...while the union stays within this many times the new mask's area; else both are kept
MASK_COVERED = 0.95  # a new mask this much inside a held one adds nothing: the held one is kept alive instead
OBSCURE_CELLS = 3  # blur and pixelate reduce a mask to 3x3 cells
YUNET_STRIDES = (8, 16, 32)
YUNET_NMS_IOU = 0.3
YUNET_TOP_K = 5000


class FaceDetector:
    """YuNet face boxes (N, 4) xyxy in frame pixels, optionally run on a downscaled copy for speed.

    Backends: ``opencv`` (``cv2.FaceDetectorYN``, the reference) and ``openvino``, which runs the same ONNX
    model about twice as fast on a CPU and decodes its outputs as OpenCV does (``decode_yunet``); ``auto``
    picks OpenVINO when it is installed. The privacy check always uses ``opencv``, so the anonymizer is
    checked by an implementation other than its own.
    """

    def __init__(self, model: str, confidence: float = 0.5, input_width: int = 0, models_dir: str | None = None,
                 backend: str = "auto") -> None:
        if backend not in ("auto", "opencv", "openvino"):
            raise ValueError(f"unknown face detector backend {backend!r}")
        self.path = resolve_model(model, models_dir)
        self.confidence = confidence
        self.input_width = input_width
        if backend == "auto":
            backend = "openvino" if openvino_available() else "opencv"
        self.backend = backend
        self._run = self._openvino() if backend == "openvino" else self._opencv()

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        import cv2

        height, width = frame.shape[:2]
        scale = min(1.0, self.input_width / width) if self.input_width else 1.0
        image = cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else frame
        return self._run(image) / scale

    def _opencv(self) -> Callable[[np.ndarray], np.ndarray]:
        import cv2

        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)  # OpenCV 5 warns about DNN targets it ignores
        try:
            net = cv2.FaceDetectorYN.create(str(self.path), "", (320, 320), self.confidence, YUNET_NMS_IOU, YUNET_TOP_K)
        except cv2.error as error:
            raise UserError(f"cannot load face detector {self.path}: {error_line(error, last=True)}") from None
        sizes = [(320, 320)]

        def run(image: np.ndarray) -> np.ndarray:
            size = (image.shape[1], image.shape[0])
            if size != sizes[0]:
                net.setInputSize(size)
                sizes[0] = size
            _, faces = net.detect(image)
            if faces is None:
                return np.empty((0, 4), np.float32)
            x, y, w, h = (faces[:, i] for i in range(4))
            return np.stack([x, y, x + w, y + h], axis=1).astype(np.float32)

        return run

    def _openvino(self) -> Callable[[np.ndarray], np.ndarray]:
        import cv2
        import openvino as ov
        from openvino.preprocess import PrePostProcessor

        core = ov.Core()
        try:
            model = core.read_model(self.path)
        except RuntimeError as error:
            raise UserError(f"cannot load face detector {self.path}: {error_line(error)}") from None
        steps = PrePostProcessor(model)
        steps.input().tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC"))
        steps.input().model().set_layout(ov.Layout("NCHW"))
        steps.input().preprocess().convert_element_type(ov.Type.f32)
        model = steps.build()
        compiled: dict[tuple[int, int], Any] = {}  # one compiled model per padded input size

        def run(image: np.ndarray) -> np.ndarray:
            height, width = image.shape[:2]
            padded_h, padded_w = -(-height // 32) * 32, -(-width // 32) * 32
            if (padded_h, padded_w) not in compiled:
                model.reshape([1, padded_h, padded_w, 3])
                compiled[padded_h, padded_w] = core.compile_model(model, "CPU", OPENVINO_ONE_THREAD)
            padded = cv2.copyMakeBorder(image, 0, padded_h - height, 0, padded_w - width, cv2.BORDER_CONSTANT, value=0)
            outputs = compiled[padded_h, padded_w](padded[None])
            named = {name: value for output, value in outputs.items() for name in output.get_names()}
            return decode_yunet(named, padded_h, padded_w, self.confidence)

        return run


def decode_yunet(outputs: dict[str, np.ndarray], height: int, width: int, confidence: float) -> np.ndarray:
    """YuNet's raw outputs -> face boxes (N, 4) xyxy, decoded as ``cv2.FaceDetectorYN`` does (OpenCV's
    face_detect.cpp): per stride, score = sqrt(cls * obj), centre = (cell + offset) * stride, size =
    exp(log-size) * stride; then non-maximum suppression."""
    import cv2

    boxes, scores = [], []
    for stride in YUNET_STRIDES:
        rows, cols = height // stride, width // stride
        cls = np.clip(outputs[f"cls_{stride}"].reshape(-1), 0, 1)
        obj = np.clip(outputs[f"obj_{stride}"].reshape(-1), 0, 1)
        offsets = outputs[f"bbox_{stride}"].reshape(-1, 4)
        row, col = np.divmod(np.arange(rows * cols), cols)
        centre_x, centre_y = (col + offsets[:, 0]) * stride, (row + offsets[:, 1]) * stride
        box_w, box_h = np.exp(offsets[:, 2]) * stride, np.exp(offsets[:, 3]) * stride
        boxes.append(np.stack([centre_x - box_w / 2, centre_y - box_h / 2, box_w, box_h], axis=1))
        scores.append(np.sqrt(cls * obj))
    boxes_xywh, score = np.concatenate(boxes), np.concatenate(scores)
    candidates = score >= confidence
    boxes_xywh, score = boxes_xywh[candidates], score[candidates]
    # OpenCV suppresses on integer rectangles; float boxes tip borderline overlaps the other way.
    integer_boxes = boxes_xywh.astype(np.int32).tolist()
    keep = cv2.dnn.NMSBoxes(integer_boxes, score.tolist(), confidence, YUNET_NMS_IOU, top_k=YUNET_TOP_K)
    keep = np.asarray(keep, int).reshape(-1)
    x, y, w, h = boxes_xywh[keep].T
    return np.stack([x, y, x + w, y + h], axis=1).astype(np.float32).reshape(-1, 4)


TURNS = (90, 180, 270)  # degrees clockwise


def turn(frame: np.ndarray, degrees: int) -> np.ndarray:
    """``frame`` turned clockwise by 90, 180 or 270 degrees."""
    import cv2

    code = {90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_COUNTERCLOCKWISE}[degrees]
    return cv2.rotate(frame, code)


def unturn_boxes(boxes: np.ndarray, degrees: int, width: int, height: int) -> np.ndarray:
    """Boxes (N, 4) xyxy found in a ``width`` x ``height`` frame turned clockwise by ``degrees``, in the
    upright frame's pixels."""
    x0, y0, x1, y1 = np.asarray(boxes, np.float32).reshape(-1, 4).T
    corners = {
        90: (y0, height - x1, y1, height - x0),
        180: (width - x1, height - y1, width - x0, height - y0),
        270: (width - y1, x0, width - y0, x1),
    }[degrees]
    return np.stack(corners, axis=1).astype(np.float32)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of boxes ``a`` (N, 4) and ``b`` (M, 4), xyxy."""
    a = np.asarray(a, np.float32).reshape(-1, 4)[:, None]
    b = np.asarray(b, np.float32).reshape(-1, 4)[None]
    inter_w = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    inter_h = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = inter_w * inter_h
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return inter / np.maximum(area_a + area_b - inter, 1e-6)


def _intersection_areas(boxes: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Area of each of ``boxes`` (N, 4) that overlaps ``box`` (4,)."""
    width = np.minimum(boxes[:, 2], box[2]) - np.maximum(boxes[:, 0], box[0])
    height = np.minimum(boxes[:, 3], box[3]) - np.maximum(boxes[:, 1], box[1])
    return np.clip(width, 0, None) * np.clip(height, 0, None)


def _areas(boxes: np.ndarray) -> np.ndarray:
    return np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)


def scale_boxes(boxes: np.ndarray, factor: float) -> np.ndarray:
    """Enlarge boxes about their centres."""
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = (boxes[:, 2:] - boxes[:, :2]) / 2 * factor
    return np.concatenate([centre - half, centre + half], axis=1)


def face_mask_boxes(detections: Detections) -> np.ndarray:
    """A face-sized box per person (N, 4) to hide: from head keypoints, else the top square of the person box.
    Looser than ``engagement.features.head_boxes`` (the crop the classifier was trained on): a mask errs large."""
    boxes = np.empty((len(detections), 4), np.float32)
    for row in range(len(detections)):
        x0, y0, x1, y1 = detections.xyxy[row]
        box_width = max(x1 - x0, 1.0)
        keypoints = detections.keypoints[row]
        head = keypoints[HEAD_KEYPOINTS]
        head = head[head[:, 2] >= KEYPOINT_MIN_SCORE, :2]
        if len(head) >= 2:
            shoulders = keypoints[SHOULDERS]
            shoulder_width = (
                float(np.linalg.norm(shoulders[0, :2] - shoulders[1, :2]))
                if np.all(shoulders[:, 2] >= KEYPOINT_MIN_SCORE) else 0.0
            )
            extent = float(np.ptp(head, axis=0).max())
            size = min(max(1.6 * extent, 0.5 * shoulder_width, 0.3 * box_width), box_width)
            cx, cy = head.mean(axis=0)
            boxes[row] = (cx - size / 2, cy - size / 2, cx + size / 2, cy + size / 2)
        else:
            side = min(box_width, y1 - y0)
            boxes[row] = (x0, y0, x1, y0 + side)
    return boxes


def centres_inside(points_boxes: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(N, M): whether the centre of each of ``points_boxes`` lies inside each of ``boxes``."""
    centre = (points_boxes[:, None, :2] + points_boxes[:, None, 2:]) / 2
    return (
        (centre[..., 0] >= boxes[None, :, 0]) & (centre[..., 0] <= boxes[None, :, 2])
        & (centre[..., 1] >= boxes[None, :, 1]) & (centre[..., 1] <= boxes[None, :, 3])
    )


def _holds_own_features(faces: np.ndarray, detections: Detections) -> np.ndarray:
    """(faces, people): whether a face box (enlarged ``OWN_FACE_SCALE`` times) holds at least ``OWN_FEATURES_INSIDE``
    of the person's confident nose and eye keypoints, i.e. is that person's own face and not another face that
    happens to lie in their head region."""
    points = detections.keypoints[:, OWN_FACE_KEYPOINTS]  # (people, 3, 3)
    confident = points[..., 2] >= KEYPOINT_MIN_SCORE
    x, y = points[None, ..., 0], points[None, ..., 1]
    box = scale_boxes(faces, OWN_FACE_SCALE)[:, None, None, :]
    inside = (x >= box[..., 0]) & (x <= box[..., 2]) & (y >= box[..., 1]) & (y <= box[..., 3]) & confident[None]
    return inside.sum(axis=2) >= OWN_FEATURES_INSIDE


def obscure(frame: np.ndarray, box: np.ndarray, method: str) -> None:
    """Hide the pixels of ``box`` in place: blur, pixelate or solid fill, each too coarse for a face detector."""
    import cv2

    height, width = frame.shape[:2]
    x0, y0 = max(int(box[0]), 0), max(int(box[1]), 0)
    x1, y1 = min(int(np.ceil(box[2])), width), min(int(np.ceil(box[3])), height)
    if x1 <= x0 or y1 <= y0:
        return
    region = frame[y0:y1, x0:x1]
    if method == "fill":
        region[:] = region.reshape(-1, region.shape[-1]).mean(axis=0).astype(frame.dtype)
        return
    cells = cv2.resize(region, (OBSCURE_CELLS, OBSCURE_CELLS), interpolation=cv2.INTER_AREA)
    if method == "blur":
        # Halving the contrast of the smoothed cells removes the light/dark face layout YuNet still finds.
        mean = cells.reshape(-1, cells.shape[-1]).mean(axis=0)
        cells = (mean + (cells - mean) * 0.5).astype(frame.dtype)
    interpolation = cv2.INTER_LINEAR if method == "blur" else cv2.INTER_NEAREST
    region[:] = cv2.resize(cells, (x1 - x0, y1 - y0), interpolation=interpolation)


class Anonymizer:
    """Blurs faces on every output frame; call ``annotate`` once per frame, in order."""

    def __init__(self, config: AnonymizerConfig, fps: float, models_dir: str | None = None) -> None:
        self.config = config.validate()
        self.detector = FaceDetector(config.face_model, config.face_confidence, 0, models_dir)
        self.fast_detector = FaceDetector(config.face_model, config.face_confidence, config.face_input_width, models_dir)
        self.mask_scale = config.mask_scale
        self.hold_frames = max(1, round(config.hold_s * fps))
        self.face_every = max(1, int(config.face_every))
        self.turn_probe_every = max(1, round(config.turned_faces_every_s * fps)) if config.turned_faces_every_s else 0
        self._turn_until = {degrees: -1 for degrees in TURNS}  # last frame each turn is searched on every frame
        self.faces = np.empty((0, 4), np.float32)
        self.masks = np.empty((0, 4), np.float32)
        self._last_seen = np.empty(0, np.int64)
        self._frame = -1

    def warm_up(self, height: int, width: int) -> None:
        for blank in (np.zeros((height, width, 3), np.uint8), np.zeros((width, height, 3), np.uint8)):
            self.detector(blank)
            self.fast_detector(blank)

    def find_faces(self, frame: np.ndarray, index: int) -> np.ndarray:
        """Face boxes in frame number ``index``: full resolution every ``face_every`` frames, downscaled between;
        also in the frame turned sideways or upside down, where a probe every ``turned_faces_every_s`` found faces.
        Call once per frame, in order (turns found by one probe are searched until the one after next); it does
        not depend on ``annotate``, so a pipeline can run it ahead on another thread."""
        full_pass = index % self.face_every == 0 or not self.config.face_input_width
        detector = self.detector if full_pass else self.fast_detector
        upright = detector(frame)
        faces = [upright]
        probe = self.turn_probe_every and index % self.turn_probe_every == 0
        height, width = frame.shape[:2]
        for degrees in TURNS:
            searched = index <= self._turn_until[degrees]
            if not (probe or searched):
                continue
            # A probe only has to notice that faces appear turned, so it runs downscaled; a turn that shows faces
            # the upright search missed is then searched like the upright frame. Faces it finds again (a
            # classroom's upright faces are often found turned too) hide nothing new and keep no search going.
            found = unturn_boxes((detector if searched else self.fast_detector)(turn(frame, degrees)), degrees, width, height)
            if len(found) and not centres_inside(found, upright).any(axis=1).all():
                self._turn_until[degrees] = index + 2 * self.turn_probe_every
            faces.append(found)
        return np.concatenate(faces)

    def annotate(self, frame: np.ndarray, detections: Detections, blur_all_faces: bool, faces: np.ndarray | None = None) -> np.ndarray:
        """A copy of ``frame`` with every face that may not be shown hidden; ``faces`` from ``find_faces`` for
        this frame, else found here."""
        self._frame += 1
        self.faces = self.find_faces(frame, self._frame) if faces is None else faces
        blur = np.asarray(detections.data.get("blur", np.ones(len(detections), bool)), bool)
        if blur_all_faces:
            blur = np.ones(len(detections), bool)
        heads = face_mask_boxes(detections[blur])
        self._hold(scale_boxes(np.concatenate([heads, self._faces_to_hide(detections, blur)]), self.mask_scale))
        output = frame.copy()
        for box in self.masks:
            obscure(output, box, self.config.method)
        return output

    def _faces_to_hide(self, detections: Detections, blur: np.ndarray) -> np.ndarray:
        """Detected faces, less at most one per consenting person: the face nearest the centre of that person's
        head region, inside it, holding at least two of that person's own nose and eyes, and inside no hidden
        person's box (with the other boxes of that same face: the search in turned frames finds an upright face
        again). Any other face, such as a student the pose model missed behind or beside a consenting one, stays
        hidden, also when the consenting person's own face is turned away or not found."""
        shown_people = detections[~blur]
        heads = face_mask_boxes(shown_people)
        if not len(heads) or not len(self.faces):  # nobody to show (the default without a registry): every face hidden
            return self.faces
        candidates = (centres_inside(self.faces, heads) & _holds_own_features(self.faces, shown_people)
                      & ~centres_inside(self.faces, detections.xyxy[blur]).any(axis=1)[:, None])
        face_centres = (self.faces[:, :2] + self.faces[:, 2:]) / 2
        inside = centres_inside(self.faces, self.faces)
        same_face = inside & inside.T  # each centre inside the other box (IoU alone can be as low as 0.36)
        shown = np.zeros(len(self.faces), bool)
        for head, box in enumerate(heads):
            free = np.flatnonzero(candidates[:, head] & ~shown)
            if len(free):
                nearest = free[np.argmin(np.linalg.norm(face_centres[free] - (box[:2] + box[2:]) / 2, axis=1))]
                shown |= same_face[nearest] & candidates[:, head]
        return self.faces[~shown]

    def _hold(self, boxes: np.ndarray) -> None:
        """Add this frame's masks and drop masks not seen for hold_s. A new mask that overlaps held ones absorbs
        them (their union covers where the face was and where it is), so a mask never shrinks away from a face it
        covered; a union that would grow past ``MASK_MAX_GROWTH`` leaves the held mask to expire on its own."""
        for box in boxes.astype(np.float32):
            if len(self.masks):
                covering = _intersection_areas(self.masks, box) >= MASK_COVERED * float(_areas(box[None])[0])
                if covering.any():  # already hidden (a face inside its person's head mask): keep that mask alive
                    self._last_seen[covering] = self._frame
                    continue
                union = np.concatenate([np.minimum(self.masks[:, :2], box[:2]), np.maximum(self.masks[:, 2:], box[2:])], axis=1)
                growth = _areas(union) / max(float(_areas(box[None])[0]), 1e-6)
                absorbed = (box_iou(self.masks, box[None])[:, 0] >= MASK_MATCH_IOU) & (growth <= MASK_MAX_GROWTH)
                if absorbed.any():
                    box = np.concatenate([union[absorbed, :2].min(axis=0), union[absorbed, 2:].max(axis=0)])
                    self.masks, self._last_seen = self.masks[~absorbed], self._last_seen[~absorbed]
            self.masks = np.concatenate([self.masks, box[None]])
            self._last_seen = np.append(self._last_seen, self._frame)
        alive = self._frame - self._last_seen <= self.hold_frames
        self.masks, self._last_seen = self.masks[alive], self._last_seen[alive]
