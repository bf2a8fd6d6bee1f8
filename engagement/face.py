"""MediaPipe Face Landmarker adapter: the only code that reads mediapipe results.

Gives, for one face crop, the 52 blendshape scores (browDown, eyeBlink, jawOpen...) and the head pose
(yaw, pitch, roll in degrees) taken from the facial transformation matrix. A crop without a face gives
``None``: the caller marks the face features missing instead of inventing them.
"""

from __future__ import annotations

import threading
import weakref

from dataclasses import dataclass

import numpy as np

from engagement.errors import UserError
from engagement.models import resolve_model

# MediaPipe's blendshape categories, in the order the model emits them.
BLENDSHAPES: tuple[str, ...] = (
    "_neutral", "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight", "eyeBlinkLeft", "eyeBlinkRight", "eyeLookDownLeft",
    "eyeLookDownRight", "eyeLookInLeft", "eyeLookInRight", "eyeLookOutLeft", "eyeLookOutRight", "eyeLookUpLeft",
    "eyeLookUpRight", "eyeSquintLeft", "eyeSquintRight", "eyeWideLeft", "eyeWideRight", "jawForward", "jawLeft",
    "jawOpen", "jawRight", "mouthClose", "mouthDimpleLeft", "mouthDimpleRight", "mouthFrownLeft",
    "mouthFrownRight", "mouthFunnel", "mouthLeft", "mouthLowerDownLeft", "mouthLowerDownRight", "mouthPressLeft",
    "mouthPressRight", "mouthPucker", "mouthRight", "mouthRollLower", "mouthRollUpper", "mouthShrugLower",
    "mouthShrugUpper", "mouthSmileLeft", "mouthSmileRight", "mouthStretchLeft", "mouthStretchRight",
    "mouthUpperUpLeft", "mouthUpperUpRight", "noseSneerLeft", "noseSneerRight",
)
HEAD_POSE: tuple[str, ...] = ("face_yaw", "face_pitch", "face_roll")


@dataclass
class FaceResult:
    """One face: blendshape scores in ``BLENDSHAPES`` order and (yaw, pitch, roll) in degrees."""

    blendshapes: np.ndarray
    head_pose: np.ndarray


def euler_from_matrix(matrix: np.ndarray) -> np.ndarray:
    """(yaw, pitch, roll) in degrees from a 4x4 (or 3x3) rotation matrix, Y-X-Z convention."""
    rotation = np.asarray(matrix, dtype=np.float64)[:3, :3]
    pitch = np.degrees(np.arcsin(-np.clip(rotation[1, 2], -1.0, 1.0)))
    yaw = np.degrees(np.arctan2(rotation[0, 2], rotation[2, 2]))
    roll = np.degrees(np.arctan2(rotation[1, 0], rotation[1, 1]))
    return np.array([yaw, pitch, roll], dtype=np.float32)


class FaceAnalyzer:
    """MediaPipe Face Landmarker in IMAGE mode, one face per crop."""

    def __init__(self, model: str = "face_landmarker.task", models_dir: str | None = None) -> None:
        from mediapipe.tasks.python import BaseOptions, vision

        path = resolve_model(model, models_dir)
        options = vision.FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(path)),
            running_mode=vision.RunningMode.IMAGE,
            num_faces=1,
            output_face_blendshapes=True,
            output_facial_transformation_matrixes=True,
        )
        try:
            self._landmarker = vision.FaceLandmarker.create_from_options(options)
        except (RuntimeError, ValueError) as error:
            raise UserError(f"cannot load face landmarker {path}: {error}") from None
        # MediaPipe closes through a concurrent.futures executor, which refuses work once interpreter
        # shutdown has begun, so its own __del__ fails at exit. Close when this object goes, or else at
        # the start of shutdown: threading's exit hooks run newest first, before the executors stop.
        self._close = weakref.finalize(self, self._landmarker.close)
        threading._register_atexit(self._close)

    def __call__(self, crop_bgr: np.ndarray) -> FaceResult | None:
        """Analyse one BGR crop that should hold a single face; ``None`` when no face is found."""
        import mediapipe as mp

        if crop_bgr.size == 0:
            return None
        rgb = np.ascontiguousarray(crop_bgr[:, :, ::-1])
        result = self._landmarker.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb))
        if not result.face_blendshapes:
            return None
        scores = {category.category_name: category.score for category in result.face_blendshapes[0]}
        blendshapes = np.array([scores.get(name, np.nan) for name in BLENDSHAPES], dtype=np.float32)
        if result.facial_transformation_matrixes:
            head_pose = euler_from_matrix(np.asarray(result.facial_transformation_matrixes[0]))
        else:
            head_pose = np.full(len(HEAD_POSE), np.nan, np.float32)
        return FaceResult(blendshapes=blendshapes, head_pose=head_pose)

    def close(self) -> None:
        self._close()
