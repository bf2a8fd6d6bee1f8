"""Data sets for the generative models and the mapping between data units and the models' normalized space."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engagement.errors import UserError

DIGITS = "digits"


@dataclass(frozen=True)
class DataSpace:
    """How rows in data units map to the normalized space the models see: ``(X - offset) / scale``.

    ``image_shape`` is set for image data (rows are flattened images); ``value_range`` clips decoded samples."""

    classes: list[str]
    offset: np.ndarray
    scale: np.ndarray
    image_shape: tuple[int, int] | None = None
    value_range: tuple[float, float] | None = None

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def dim(self) -> int:
        return int(self.offset.shape[0])

    def normalize(self, X: np.ndarray) -> np.ndarray:
        return ((X - self.offset) / self.scale).astype(np.float32)

    def denormalize(self, Z: np.ndarray) -> np.ndarray:
        X = Z * self.scale + self.offset
        if self.value_range is not None:
            X = np.clip(X, *self.value_range)
        return X.astype(np.float32)

    def class_index(self, value: str) -> int:
        """Resolve ``--class`` given as a class name or an integer index."""
        if value in self.classes:
            return self.classes.index(value)
        try:
            index = int(value)
        except ValueError:
            index = -1
        if not 0 <= index < self.num_classes:
            raise UserError(f"unknown class {value!r}; classes are {', '.join(self.classes)} (or 0..{self.num_classes - 1})")
        return index

    def to_json(self) -> dict:
        return {
            "classes": self.classes,
            "offset": self.offset.tolist(),
            "scale": self.scale.tolist(),
            "image_shape": list(self.image_shape) if self.image_shape else None,
            "value_range": list(self.value_range) if self.value_range else None,
        }

    @classmethod
    def from_json(cls, meta: dict) -> "DataSpace":
        return cls(
            classes=list(meta["classes"]),
            offset=np.asarray(meta["offset"], dtype=np.float32),
            scale=np.asarray(meta["scale"], dtype=np.float32),
            image_shape=tuple(meta["image_shape"]) if meta.get("image_shape") else None,
            value_range=tuple(meta["value_range"]) if meta.get("value_range") else None,
        )


def load_digits() -> tuple[np.ndarray, np.ndarray, DataSpace]:
    """scikit-learn's 8x8 handwritten digits (pixels 0..16), scaled to [-1, 1] for the models."""
    from sklearn.datasets import load_digits as sklearn_digits

    digits = sklearn_digits()
    space = DataSpace(
        classes=[str(c) for c in digits.target_names],
        offset=np.full(64, 8.0, dtype=np.float32),
        scale=np.full(64, 8.0, dtype=np.float32),
        image_shape=(8, 8),
        value_range=(0.0, 16.0),
    )
    return digits.data.astype(np.float32), digits.target.astype(np.int64), space


def load_feature_file(path: Path) -> tuple[np.ndarray, np.ndarray, DataSpace]:
    """An ``.npz`` with ``X`` (n, d) float, ``y`` (n,) int in 0..K-1 and optional ``classes`` names; standardized."""
    if not path.is_file():
        raise UserError(f"data file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as archive:
            X = np.asarray(archive["X"], dtype=np.float32)
            y = np.asarray(archive["y"])
            names = [str(c) for c in archive["classes"]] if "classes" in archive.files else None
    except (OSError, ValueError, KeyError) as error:
        raise UserError(f"cannot read feature file {path} (need arrays X and y): {error}") from error
    if X.ndim != 2 or y.shape != (X.shape[0],) or len(X) == 0:
        raise UserError(f"feature file {path}: X must be (n, d) and y (n,), got {X.shape} and {y.shape}")
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0:
        raise UserError(f"feature file {path}: y must hold non-negative integer class indices")
    if not np.isfinite(X).all():
        raise UserError(f"feature file {path}: X contains NaN or infinite values; impute them first")
    num_classes = len(names) if names is not None else int(y.max()) + 1
    if y.max() >= num_classes:
        raise UserError(f"feature file {path}: label {int(y.max())} has no entry in classes ({num_classes} names)")
    if names is None and num_classes > len(y):
        # every model holds a table of its classes: a stray large label would make it allocate without bound
        raise UserError(f"feature file {path}: label {int(y.max())} makes {num_classes} classes for {len(y)} rows; "
                        "labels are class indices 0..K-1 (name them with a classes array)")
    std = X.std(axis=0)
    space = DataSpace(
        classes=names or [str(c) for c in range(num_classes)],
        offset=X.mean(axis=0),
        scale=np.where(std > 1e-8, std, 1.0).astype(np.float32),
    )
    return X, y.astype(np.int64), space


def load_data(spec: str) -> tuple[np.ndarray, np.ndarray, DataSpace]:
    """``digits`` or a path to a feature ``.npz``."""
    if spec == DIGITS:
        return load_digits()
    return load_feature_file(Path(spec))
