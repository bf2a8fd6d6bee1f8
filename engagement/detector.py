"""Person detector: an ultralytics YOLO pose model giving boxes and 17 COCO keypoints per person."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

from engagement.config import DetectorConfig
from engagement.detections import Detections
from engagement.errors import ModelNotFoundError, UserError, error_line
from engagement.models import file_sha256, find_model, missing_message



def select_device(requested: str = "auto") -> str:
    """``auto`` picks CUDA, then Apple MPS, then CPU; anything else is passed through after a check."""
    import torch

    if requested == "auto":
        if torch.cuda.is_available():
            return "cuda:0"
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device {requested!r} requested but CUDA is not available")
    if requested not in ("cpu", "mps") and not requested.startswith("cuda"):
        raise UserError(f"unknown device {requested!r}; use auto, cpu, cuda, cuda:N or mps")
    return requested


class PoseDetector:
    """Detect people in BGR frames; returns ``Detections`` with keypoints, person class only."""

    def __init__(self, config: DetectorConfig | None = None, models_dir: str | None = None) -> None:
        self.config = config or DetectorConfig()
        self.weights = self._resolve(self.config.model, models_dir)
        self.is_openvino = Path(str(self.weights)).name.endswith("_openvino_model")
        # OpenVINO exports run on the CPU through OpenVINO whatever torch device is chosen.
        self.device = "cpu" if self.is_openvino else select_device(self.config.device)
        self.model = self._load(self.weights, self.device)
        if self.is_openvino:
            self._limit_openvino_threads(self.config.threads or max(1, (os.cpu_count() or 1) - 1))

    def _limit_openvino_threads(self, threads: int) -> None:
        """Recompile the OpenVINO model for ``threads`` CPU threads. ultralytics compiles it for every core, and
        on two cores those threads fight the anonymizer's thread: one thread was faster in the full pipeline
        (docs/benchmarks.md). This reaches into ultralytics' OpenVINO backend; if its layout changes, the model
        keeps ultralytics' setting (a test notices)."""
        backend = self._openvino_backend()
        compile_model = getattr(backend, "compile_model", None)
        if not isinstance(compile_model, functools.partial) or not isinstance(compile_model.keywords.get("config"), dict):
            return
        config = {**compile_model.keywords["config"], "INFERENCE_NUM_THREADS": threads}
        backend.compile_model = functools.partial(compile_model.func, *compile_model.args, **{**compile_model.keywords, "config": config})
        core = compile_model.func.__self__
        xml = next(Path(self.weights).glob("*.xml"))
        backend.ov_compiled_model = backend.compile_model(core.read_model(str(xml), str(xml.with_suffix(".bin"))))

    def _openvino_backend(self) -> Any:
        return getattr(getattr(getattr(self.model, "predictor", None), "model", None), "backend", None)

    @property
    def openvino_threads(self) -> int | None:
        """Threads the OpenVINO model was compiled for (None for other model formats)."""
        compiled = getattr(self._openvino_backend(), "ov_compiled_model", None)
        return int(compiled.get_property("INFERENCE_NUM_THREADS")) if compiled is not None else None

    @staticmethod
    def _resolve(name: str, models_dir: str | None) -> Path | str:
        found = find_model(name, models_dir)
        if found is not None:
            return found
        from ultralytics.utils.downloads import GITHUB_ASSETS_STEMS

        stem = Path(name).stem
        if stem not in GITHUB_ASSETS_STEMS:
            raise ModelNotFoundError(missing_message(name, models_dir))
        return f"{stem}.pt"  # ultralytics downloads official weights by name on a connected machine

    @staticmethod
    def _load(weights: Path | str, device: str) -> Any:
        """The YOLO model with its backend built by one prediction on a blank image, so that a file or folder that
        is not a model fails here, in one line, not on the first frame."""
        from ultralytics import YOLO

        try:
            model = YOLO(str(weights), task="pose")
            model.predict(np.zeros((32, 32, 3), np.uint8), device=device, verbose=False)
        except Exception as error:  # ultralytics raises many types for a failed download or a bad file
            reason = error_line(error).strip("❌ ")
            if isinstance(weights, Path):
                raise UserError(f"cannot load detector weights {weights}: {reason}") from None
            raise ModelNotFoundError(missing_message(str(weights), None, reason)) from None
        return model

    @property
    def batch_size(self) -> int:
        """Analysis frames per model call: ``detector.batch``, or 8 on a GPU and 1 on a CPU, where batches
        ran no faster (benchmarks/throughput.py, docs/benchmarks.md)."""
        if self.config.batch:
            return self.config.batch
        return 8 if self.device.startswith("cuda") else 1

    @property
    def sha256(self) -> str | None:
        return file_sha256(self.weights) if isinstance(self.weights, Path) else None

    def __call__(self, frame: np.ndarray) -> Detections:
        return self.detect_batch([frame])[0]

    def detect_batch(self, frames: list[np.ndarray]) -> list[Detections]:
        """Detect people in several frames in one model call."""
        if not frames:
            return []
        results = self.model.predict(
            frames,
            imgsz=self.config.imgsz,
            conf=self.config.confidence,
            iou=self.config.iou,
            classes=[0],
            max_det=self.config.max_people,
            device=self.device,
            verbose=False,
        )
        return [Detections.from_ultralytics(result) for result in results]


class FaceFallback:
    """A person from the largest face when the pose model finds nobody (``detector.face_fallback``).

    The box is drawn around the face so that the rest of the pipeline finds the face where it looks for a head
    without keypoints (the top of the box, ``engagement.features.head_boxes``), and reaches down over the
    shoulders; its keypoints are unknown (score 0), so pose features stay missing rather than invented.
    """

    def __init__(self, face_detector: Callable[[np.ndarray], np.ndarray]) -> None:
        self.find_faces = face_detector

    def __call__(self, frame: np.ndarray, detections: Detections) -> Detections:
        if len(detections):
            return detections
        faces = self.find_faces(frame)
        if not len(faces):
            return detections
        x0, y0, x1, y1 = faces[int(np.argmax((faces[:, 2] - faces[:, 0]) * (faces[:, 3] - faces[:, 1])))]
        side = max(x1 - x0, y1 - y0)
        width = side / 0.45  # head_boxes takes 0.45 of the box width as the head
        centre_x, centre_y = (x0 + x1) / 2, (y0 + y1) / 2
        top = centre_y - 0.45 * width / 2
        height, frame_width = frame.shape[:2]
        box = np.array([[max(centre_x - width / 2, 0), max(top, 0), min(centre_x + width / 2, frame_width), min(top + 3.5 * side, height)]])
        return Detections.from_boxes(box.astype(np.float32), confidence=np.array([0.5], np.float32))
