"""Synthetic rows for the engagement classifier's minority classes.

The caller passes standardized, NaN-free feature vectors (impute missing values first); ``synthesize`` fits the
chosen generator on them and returns only the new rows."""

from __future__ import annotations

import numpy as np

from engagement.errors import UserError

METHODS = ("cvae", "ddpm", "smote", "oversample")
GENERATOR_STEPS = 2000
SMOTE_NEIGHBOURS = 5


def synthesize(
    X: np.ndarray, y: np.ndarray, method: str, n_per_class: dict[int, int], seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``n_per_class[c]`` new synthetic rows for each class ``c`` (and their labels), never the input rows.

    Methods: "cvae" (conditional VAE), "ddpm" (class-conditional vector DDPM, DDIM-50 sampling), "smote" (SMOTE with
    k shrunk to the smallest requested class; single-row classes are duplicated), "oversample" (random duplicates).
    ``X`` must be finite (NaN-free); classes need at least one row. Deterministic for a given ``seed``."""
    X = np.asarray(X)
    y = np.asarray(y)
    _validate(X, y, method, n_per_class)
    requested = {int(label): int(count) for label, count in n_per_class.items() if count > 0}
    if not requested:
        return np.empty((0, X.shape[1]), dtype=X.dtype), np.empty(0, dtype=y.dtype)
    if method == "oversample":
        new_X, new_y = _oversample(X, y, requested, np.random.default_rng(seed))
    elif method == "smote":
        new_X, new_y = _smote(X, y, requested, seed)
    else:
        new_X, new_y = _generate(X, y, method, requested, seed)
    return new_X.astype(X.dtype, copy=False), new_y.astype(y.dtype, copy=False)


def _validate(X: np.ndarray, y: np.ndarray, method: str, n_per_class: dict[int, int]) -> None:
    if method not in METHODS:
        raise UserError(f"unknown augmentation method {method!r}; choose one of: {', '.join(METHODS)}")
    if X.ndim != 2 or y.shape != (X.shape[0],):
        raise UserError(f"augmentation needs X (n, d) and y (n,), got {X.shape} and {y.shape}")
    if not np.isfinite(X).all():
        raise UserError("augmentation input contains NaN or infinite values; impute them before synthesizing")
    missing = sorted(int(label) for label in n_per_class if not np.any(y == label))
    if missing:
        raise UserError(f"cannot synthesize classes without training rows: {missing}")
    if any(count < 0 for count in n_per_class.values()):
        raise UserError("n_per_class counts must be non-negative")


def _oversample(X: np.ndarray, y: np.ndarray, requested: dict[int, int], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    picks = [rng.choice(np.flatnonzero(y == label), size=count) for label, count in requested.items()]
    rows = np.concatenate(picks)
    return X[rows].copy(), y[rows].copy()


def _smote(X: np.ndarray, y: np.ndarray, requested: dict[int, int], seed: int) -> tuple[np.ndarray, np.ndarray]:
    from imblearn.over_sampling import SMOTE

    counts = {label: int(np.sum(y == label)) for label in requested}
    interpolated = {label: n for label, n in requested.items() if counts[label] >= 2}
    singletons = {label: n for label, n in requested.items() if counts[label] < 2}
    parts_X, parts_y = [], []
    if interpolated:
        neighbours = min(SMOTE_NEIGHBOURS, min(counts[label] for label in interpolated) - 1)
        strategy = {label: counts[label] + n for label, n in interpolated.items()}
        resampled_X, resampled_y = SMOTE(sampling_strategy=strategy, k_neighbors=neighbours, random_state=seed).fit_resample(X, y)
        # imbalanced-learn appends the synthetic rows after the original ones.
        parts_X.append(resampled_X[len(X):])
        parts_y.append(resampled_y[len(X):])
    if singletons:
        duplicated_X, duplicated_y = _oversample(X, y, singletons, np.random.default_rng(seed))
        parts_X.append(duplicated_X)
        parts_y.append(duplicated_y)
    return np.concatenate(parts_X), np.concatenate(parts_y)


def _generate(X: np.ndarray, y: np.ndarray, method: str, requested: dict[int, int], seed: int) -> tuple[np.ndarray, np.ndarray]:
    import torch

    from engagement.generative import cvae, ddpm
    from engagement.generative.training import TrainingData, single_threaded

    labels, indices = np.unique(y, return_inverse=True)
    mean, std = X.mean(axis=0), X.std(axis=0)
    std = np.where(std > 1e-8, std, 1.0)
    data = TrainingData.from_arrays((X - mean) / std, indices, len(labels))
    wanted = torch.as_tensor(np.concatenate([np.full(n, np.searchsorted(labels, label)) for label, n in requested.items()]))
    with single_threaded():
        if method == "cvae":
            model = cvae.train(data, steps=GENERATOR_STEPS, seed=seed)
            samples = cvae.sample(model, wanted, seed=seed)
        else:
            model = ddpm.train(data, steps=GENERATOR_STEPS, seed=seed, hidden=256)
            samples = ddpm.sample(model, wanted, seed=seed, sampler="ddim", steps=50)
    return samples.numpy() * std + mean, labels[wanted.numpy()]
