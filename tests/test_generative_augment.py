"""`augment.synthesize`: only new rows, the requested labels and counts, per-seed determinism, tiny classes."""

from __future__ import annotations

import numpy as np
import pytest

from engagement.errors import UserError
from engagement.generative import augment


@pytest.fixture
def features() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    y = np.array([0] * 30 + [1] * 6 + [2] * 2 + [5] * 1)
    X = rng.normal(size=(len(y), 8)) + y[:, None]
    return X, y


@pytest.fixture(autouse=True)
def _fast_generators(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(augment, "GENERATOR_STEPS", 2)


@pytest.mark.parametrize("method", augment.METHODS)
def test_returns_the_requested_new_rows_with_their_labels_deterministically(features, method: str) -> None:
    X, y = features
    request = {1: 4, 2: 3, 5: 2, 0: 0}
    new_X, new_y = augment.synthesize(X, y, method, request, seed=1)
    assert new_X.shape == (9, 8) and new_X.dtype == X.dtype
    assert sorted(new_y.tolist()) == [1] * 4 + [2] * 3 + [5] * 2
    assert np.isfinite(new_X).all()
    again_X, again_y = augment.synthesize(X, y, method, request, seed=1)
    assert np.array_equal(new_X, again_X) and np.array_equal(new_y, again_y)


@pytest.mark.parametrize("method", ["cvae", "ddpm", "smote"])
def test_synthetic_rows_are_new_and_depend_on_the_seed(features, method: str) -> None:
    X, y = features
    new_X, _ = augment.synthesize(X, y, method, {1: 5}, seed=0)
    other_X, _ = augment.synthesize(X, y, method, {1: 5}, seed=1)
    assert not np.array_equal(new_X, other_X)
    distances = np.abs(new_X[:, None, :] - X[None, y == 1, :]).sum(axis=2)
    assert distances.min() > 1e-6


def test_smote_interpolates_within_the_class(features) -> None:
    X, y = features
    new_X, _ = augment.synthesize(X, y, "smote", {2: 4}, seed=0)
    low, high = X[y == 2].min(axis=0), X[y == 2].max(axis=0)
    assert ((new_X >= low - 1e-9) & (new_X <= high + 1e-9)).all()


def test_nothing_requested_returns_empty_arrays(features) -> None:
    X, y = features
    new_X, new_y = augment.synthesize(X, y, "cvae", {1: 0}, seed=0)
    assert new_X.shape == (0, 8) and new_y.shape == (0,)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"method": "gan"}, "unknown augmentation method"),
        ({"n_per_class": {9: 3}}, "without training rows"),
        ({"n_per_class": {1: -1}}, "non-negative"),
        ({"nan": True}, "impute"),
    ],
)
def test_bad_input_is_a_user_error(features, change: dict, message: str) -> None:
    X, y = features
    if change.get("nan"):
        X = X.copy()
        X[0, 0] = np.nan
    with pytest.raises(UserError, match=message):
        augment.synthesize(X, y, change.get("method", "smote"), change.get("n_per_class", {1: 2}), seed=0)
