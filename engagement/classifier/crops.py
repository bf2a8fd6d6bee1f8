"""Upper-body crop model for the front classroom view: the four classroom states straight from the pixels.

The feature network (pose geometry, head descriptor, face blendshapes) transfers badly from one classroom to
another (MODEL_CARD.md, "Crop model"): a child's pen, book or raised hand is small in a front view, and the pose
keypoints of a seated, half-hidden child are noisy. This model looks at the square below each person's head
instead: the first ten layers of the COCO-trained YOLOv8n detector (backbone and SPPF), their three scales
average-pooled (64 + 128 + 256 values), and one linear layer to the four classroom states. The backbone's batch
norm keeps its COCO statistics (``freeze_batch_norm``): a few thousand crops of one room would otherwise teach it
that room's light.

Weights are one safetensors file (no pickle): the fine-tuned backbone and the head, every convolution and linear
weight in int8 with one scale per output channel (``quantize``: the packaged network is 1.3 MB), with the crop size
and the states in its metadata, checked on load. ``StateStage`` mixes its probabilities with the feature network's
for the front view (``classifier.crop_weight``, ``classifier.crop_weights``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from engagement.errors import UserError
from engagement.states import STATE_INDEX, STATES

if TYPE_CHECKING:
    from engagement.config import ClassifierConfig

PACKAGED_CROP_WEIGHTS = Path(__file__).with_name("crops.safetensors")
CROP_SIZE = 112
CROP_STATES = ("attentive", "distracted", "engaged_in_discussion", "taking_notes")
POOLED_LAYERS = (4, 6, 9)  # P3, P4 and P5 (after SPPF) of YOLOv8n: 64 + 128 + 256 channels
POOLED_WIDTH = 448
BACKBONE_LAYERS = 10
CROP_SIDE = 3.0  # crop square side, in head sizes: a seated child's head, shoulders, hands and desk
CROP_BELOW = 1.15  # crop centre below the head's top, in head sizes
FORMAT_VERSION = 2  # 2: int8 weights with per-output-channel scales
SCALE_SUFFIX = ".int8_scale"
EPOCHS, BATCH, BACKBONE_LR, HEAD_LR, WEIGHT_DECAY, LABEL_SMOOTHING = 15, 64, 3e-4, 3e-3, 5e-2, 0.1


def upper_body_squares(heads: np.ndarray) -> np.ndarray:
    """(k, 4) xyxy square around each person's upper body, from their head box (xyxy): ``CROP_SIDE`` head sizes
    wide, centred ``CROP_BELOW`` head sizes under the head's top."""
    heads = np.asarray(heads, np.float32).reshape(-1, 4)
    size = np.maximum(heads[:, 2] - heads[:, 0], heads[:, 3] - heads[:, 1])
    center_x = (heads[:, 0] + heads[:, 2]) / 2
    center_y = heads[:, 1] + CROP_BELOW * size
    half = CROP_SIDE * size / 2
    return np.stack([center_x - half, center_y - half, center_x + half, center_y + half], axis=1)


def cut_crops(frame: np.ndarray, squares: np.ndarray, size: int = CROP_SIZE) -> np.ndarray:
    """(k, size, size, 3) uint8 RGB crops of a BGR frame; what lies outside the frame is grey (114, YOLO's pad)."""
    import cv2

    crops = np.full((len(squares), size, size, 3), 114, np.uint8)
    for crop, (x0, y0, x1, _) in zip(crops, np.asarray(squares, np.float64)):
        side = x1 - x0
        if not np.isfinite(side) or side < 2:
            continue
        scale = size / side
        matrix = np.array([[scale, 0, -x0 * scale], [0, scale, -y0 * scale]], np.float64)
        cv2.warpAffine(frame, matrix, (size, size), dst=crop, flags=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_TRANSPARENT)
    return np.ascontiguousarray(crops[..., ::-1])


class PooledBackbone(torch.nn.Module):
    """Layers applied in turn (each takes the previous output, as YOLOv8n's first ten do); the outputs of
    ``POOLED_LAYERS`` averaged over space and concatenated: (N, 448) from RGB images in [0, 1]."""

    def __init__(self, layers: torch.nn.ModuleList) -> None:
        super().__init__()
        self.layers = layers

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        pooled = []
        for index, layer in enumerate(self.layers):
            images = layer(images)
            if index in POOLED_LAYERS:
                pooled.append(images.mean(dim=(2, 3)))
        return torch.cat(pooled, 1)


def yolo_backbone(weights: str | Path | None = None) -> PooledBackbone:
    """YOLOv8n's first ten layers, COCO-trained from ``weights`` (a YOLOv8n detection ``.pt``), else randomly
    initialised (the shape a saved crop model is loaded into, and tests)."""
    from ultralytics.nn.tasks import DetectionModel

    if weights is None:
        model = DetectionModel("yolov8n.yaml", verbose=False)
    else:
        from ultralytics import YOLO

        path = Path(weights)
        if not path.is_file():
            raise UserError(f"crop model: pretrained YOLOv8n weights not found: {path}")
        try:
            model = YOLO(str(path)).model
        except (TypeError, ValueError, KeyError, AttributeError, RuntimeError):  # not a checkpoint ultralytics reads
            model = None
        if not isinstance(model, DetectionModel):  # another format (.onnx, .task) loads as its own path, for export
            raise UserError(f"crop model: {path} is not YOLOv8n detection weights (a PyTorch .pt such as yolov8n.pt)")
    backbone = PooledBackbone(torch.nn.ModuleList(list(model.model[:BACKBONE_LAYERS]))).float()
    for parameter in backbone.parameters():  # ultralytics loads a .pt for inference, its parameters frozen
        parameter.requires_grad_(True)
    return backbone


class CropNet(torch.nn.Module):
    """Pooled backbone features -> one linear layer -> logits of ``CROP_STATES``."""

    def __init__(self, backbone: torch.nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = torch.nn.Linear(POOLED_WIDTH, len(CROP_STATES))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(images))


def freeze_batch_norm(net: torch.nn.Module) -> None:
    """Batch-norm layers in eval mode: their COCO running statistics are used and never updated."""
    for module in net.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.eval()


def augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Float RGB in [0, 1] from uint8 (N, 3, H, W): mirror, zoom in by up to a quarter and shift, brightness and
    contrast within ±20%, and one in five grey: a new room's camera, light and framing."""
    n, device = images.shape[0], images.device

    def uniform(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, device=device, generator=generator)

    x = images.float() / 255
    x = torch.where((uniform(n) < 0.5)[:, None, None, None], x.flip(3), x)
    scale = 0.75 + 0.25 * uniform(n)
    theta = torch.zeros(n, 2, 3, device=device)
    theta[:, 0, 0] = theta[:, 1, 1] = scale
    theta[:, 0, 2] = (1 - scale) * (2 * uniform(n) - 1)
    theta[:, 1, 2] = (1 - scale) * (2 * uniform(n) - 1)
    x = F.grid_sample(x, F.affine_grid(theta, list(x.shape), align_corners=False), align_corners=False,
                      padding_mode="border")
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = ((x - mean) * (0.8 + 0.4 * uniform(n, 1, 1, 1)) + mean) * (0.8 + 0.4 * uniform(n, 1, 1, 1))
    x = torch.where((uniform(n) < 0.2)[:, None, None, None], x.mean(1, keepdim=True).expand_as(x), x)
    return x.clamp(0, 1)


def fit_crop_model(crops: np.ndarray, states: np.ndarray, backbone: torch.nn.Module, seed: int = 0,
                   epochs: int = EPOCHS, device: str = "cpu", batch_size: int = BATCH) -> CropNet:
    """Fine-tune ``backbone`` with a new head on (N, S, S, 3) uint8 RGB crops labelled with indices into
    ``CROP_STATES``: AdamW with a one-cycle schedule (the head 10x the backbone's rate), class-balanced cross
    entropy with label smoothing, ``augment`` on every batch. Every setting was fixed before any validation room
    was scored (MODEL_CARD.md)."""
    states = np.asarray(states, np.int64)
    if len(crops) != len(states) or not len(states):
        raise ValueError("need one state per crop and at least one crop")
    if states.min() < 0 or states.max() >= len(CROP_STATES):
        raise ValueError(f"states must be indices into the {len(CROP_STATES)} crop states")
    torch.manual_seed(seed)
    generator = torch.Generator(device=device).manual_seed(seed)
    net = CropNet(backbone).to(device)
    images = torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2).to(device)
    targets = torch.from_numpy(states).to(device)
    counts = torch.bincount(targets, minlength=len(CROP_STATES)).float()
    class_weight = torch.where(counts > 0, counts.sum() / (len(CROP_STATES) * counts.clamp(min=1)), 0.0)
    optimizer = torch.optim.AdamW([{"params": net.backbone.parameters(), "lr": BACKBONE_LR},
                                   {"params": net.head.parameters(), "lr": HEAD_LR}], weight_decay=WEIGHT_DECAY)
    batches = -(-len(targets) // batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=[BACKBONE_LR, HEAD_LR],
                                                   total_steps=epochs * batches, pct_start=0.15)
    net.train()
    freeze_batch_norm(net)
    for _ in range(epochs):
        order = torch.randperm(len(targets), device=device, generator=generator)
        for start in range(0, len(order), batch_size):
            batch = order[start:start + batch_size]
            loss = F.cross_entropy(net(augment(images[batch], generator)), targets[batch], weight=class_weight,
                                   label_smoothing=LABEL_SMOOTHING)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    return net.eval()


def crop_targets(states: np.ndarray) -> np.ndarray:
    """Indices into ``CROP_STATES`` of state indices (``STATES``); -1 for a state the crop model does not give and
    for no state (``NO_STATE``, -1)."""
    states = np.asarray(states, np.int64)
    lookup = np.full(len(STATES), -1)
    lookup[[STATE_INDEX[state] for state in CROP_STATES]] = np.arange(len(CROP_STATES))
    return np.where(states >= 0, lookup[np.maximum(states, 0)], -1)


def train_crop_model(crops: np.ndarray, states: np.ndarray, pretrained: str | Path, seeds: tuple[int, ...] = (0,),
                     epochs: int = EPOCHS, device: str = "cpu") -> "CropStateModel":
    """One ``fit_crop_model`` per seed from the COCO-trained backbone in ``pretrained``, averaged: crops of people
    whose state (index into ``STATES``) the crop model does not give are left out."""
    targets = crop_targets(states)
    kept = targets >= 0
    if not kept.any():
        raise UserError(f"no crop is labelled with a state the crop model gives ({', '.join(CROP_STATES)})")
    return CropStateModel([fit_crop_model(crops[kept], targets[kept], yolo_backbone(pretrained), seed, epochs, device).cpu()
                           for seed in seeds])


class CropStateModel:
    """State probabilities of people from their upper-body crops; ``load()`` gives the packaged model."""

    def __init__(self, nets: list[CropNet], crop_size: int = CROP_SIZE, card: dict[str, Any] | None = None) -> None:
        if not nets:
            raise ValueError("need at least one network")
        self.nets = [net.eval() for net in nets]
        self.crop_size = crop_size
        # what it was fitted on and how it scored on a classroom it never saw (``benchmarks/crop_validation.py``)
        self.card = card or {}
        self.columns = np.array([STATE_INDEX[state] for state in CROP_STATES])

    @classmethod
    def load(cls, path: str | Path | None = None) -> "CropStateModel":
        """The crop model in ``path`` (default: the packaged one); a missing or foreign file is one clear error."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        path = Path(path) if path else PACKAGED_CROP_WEIGHTS
        meta = read_metadata(path)
        try:
            tensors = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as error:
            raise UserError(f"{path}: not a crop model ({error})") from None
        count = int(meta["networks"]) if meta.get("networks", "").isdigit() else 0
        if count < 1:
            raise UserError(f"{path}: a crop model file names no networks")
        weights = dequantize(tensors)
        nets = []
        for index in range(count):
            prefix = f"{index}."
            net = CropNet(yolo_backbone())
            try:
                net.load_state_dict({k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)})
            except RuntimeError as error:
                raise UserError(f"{path}: crop model weights do not fit YOLOv8n ({str(error).splitlines()[0]})") from None
            nets.append(net)
        return cls(nets, int(meta.get("crop_size", CROP_SIZE)), json.loads(meta.get("card", "{}")))

    def save(self, path: str | Path) -> None:
        """Every network's weights (``quantize``), with the metadata ``load`` checks."""
        from safetensors.torch import save

        from engagement.files import write_atomic

        tensors = quantize({f"{index}.{name}": value.detach().cpu()
                            for index, net in enumerate(self.nets) for name, value in net.state_dict().items()})
        meta = {"format": f"crop-states-{FORMAT_VERSION}", "states": json.dumps(CROP_STATES),
                "networks": str(len(self.nets)), "crop_size": str(self.crop_size), "card": json.dumps(self.card)}
        write_atomic(Path(path), lambda stream: stream.write(save(tensors, metadata=meta)))

    def predict_crops(self, crops: np.ndarray, batch: int = 64) -> np.ndarray:
        """(k, len(STATES)) probabilities of (k, S, S, 3) uint8 RGB crops: the mean over the networks of the
        mean over each crop and its mirror image; confused and bored, which no crop label covers, get 0."""
        probs = np.zeros((len(crops), len(STATES)), np.float32)
        if not len(crops):
            return probs
        device = next(self.nets[0].parameters()).device
        images = torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2).to(device)
        total = torch.zeros(len(crops), len(CROP_STATES), device=device)
        with torch.inference_mode():
            for start in range(0, len(images), batch):
                x = images[start:start + batch].float() / 255
                for net in self.nets:
                    total[start:start + batch] += net(x).softmax(1) + net(x.flip(3)).softmax(1)
        probs[:, self.columns] = (total / (2 * len(self.nets))).cpu().numpy()
        return probs

    def predict_proba(self, frame: np.ndarray, heads: np.ndarray) -> np.ndarray:
        """(k, len(STATES)) probabilities of the people whose head boxes (xyxy) are given, in a BGR frame."""
        return self.predict_crops(cut_crops(frame, upper_body_squares(heads), self.crop_size))


def quantize(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Weights to store: a float tensor of two or more dimensions (convolution, linear) as int8 with one float32 scale
    per output channel under ``name + SCALE_SUFFIX``; other float tensors (batch norm, biases) in half precision.
    On the packaged model's 6,240 clabehavior crops this changes the top state of 0.4% (MODEL_CARD.md)."""
    stored = {}
    for name, value in weights.items():
        if value.is_floating_point() and value.ndim >= 2:
            scale = value.abs().amax(dim=tuple(range(1, value.ndim)), keepdim=True).float().clamp_min(1e-12) / 127
            stored[name] = (value / scale).round().clamp(-127, 127).to(torch.int8).contiguous()
            stored[name + SCALE_SUFFIX] = scale.contiguous()
        elif value.is_floating_point():
            stored[name] = value.half().contiguous()
        else:
            stored[name] = value.contiguous()
    return stored


def dequantize(stored: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``quantize``'s tensors back to float32 weights (integer buffers such as batch counts unchanged)."""
    weights = {}
    for name, value in stored.items():
        if name.endswith(SCALE_SUFFIX):
            continue
        scale = stored.get(name + SCALE_SUFFIX)
        if scale is not None:
            weights[name] = value.float() * scale
        else:
            weights[name] = value.float() if value.is_floating_point() else value
    return weights


def read_metadata(path: str | Path) -> dict[str, str]:
    """A crop model file's metadata (format, states, networks, crop size, card), checked; the weights are not read."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise UserError(f"crop model not found: {path}")
    try:
        with safe_open(str(path), "pt") as handle:
            meta = handle.metadata() or {}
        states = tuple(json.loads(meta.get("states", "[]")))
    except (SafetensorError, OSError, ValueError) as error:
        raise UserError(f"{path}: not a crop model ({error})") from None
    if meta.get("format") != f"crop-states-{FORMAT_VERSION}" or states != CROP_STATES:
        raise UserError(f"{path}: not a crop model of format {FORMAT_VERSION} for the states {', '.join(CROP_STATES)}")
    return meta


def crop_model_for(config: ClassifierConfig) -> CropStateModel | None:
    """The crop model a pipeline's classifier settings ask for: a front view with a positive ``crop_weight``."""
    if config.view != "front" or config.crop_weight <= 0:
        return None
    return CropStateModel.load(config.crop_weights)

