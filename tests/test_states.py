"""State smoothing: one odd frame does not flip a track's state; tracks are independent."""

from __future__ import annotations

import numpy as np
import pytest

from engagement.states import STATES, StateSmoother


def onehot(state: str) -> np.ndarray:
    return np.eye(len(STATES), dtype=np.float32)[[STATES.index(state)]]


def test_single_frame_does_not_flip_the_state() -> None:
    smoother = StateSmoother(window_s=3.0)
    for step in range(10):
        smoother.update(np.array([1]), onehot("attentive"), step * 0.2)
    blip = smoother.update(np.array([1]), onehot("distracted"), 2.0)
    assert STATES[int(blip.argmax())] == "attentive"
    for step in range(1, 40):  # held for 8 s: takes over
        held = smoother.update(np.array([1]), onehot("distracted"), 2.0 + step * 0.2)
    assert STATES[int(held.argmax())] == "distracted"
    assert held.sum() == pytest.approx(1.0)


def test_tracks_are_independent_and_forgotten() -> None:
    smoother = StateSmoother(window_s=3.0)
    smoother.update(np.array([1, 2]), np.concatenate([onehot("attentive"), onehot("bored")]), 0.0)
    out = smoother.update(np.array([2]), onehot("bored"), 0.2)
    assert STATES[int(out.argmax())] == "bored"
    smoother.forget(1)
    fresh = smoother.update(np.array([1]), onehot("confused"), 0.4)
    np.testing.assert_allclose(fresh, onehot("confused"))


def test_untracked_and_zero_window_pass_through() -> None:
    probs = onehot("confused")
    smoother = StateSmoother(window_s=0.0)
    smoother.update(np.array([3]), onehot("attentive"), 0.0)
    np.testing.assert_allclose(smoother.update(np.array([3]), probs, 0.2), probs)
    untracked = StateSmoother(window_s=3.0)
    untracked.update(np.array([-1]), onehot("attentive"), 0.0)
    np.testing.assert_allclose(untracked.update(np.array([-1]), probs, 0.2), probs)
    with pytest.raises(ValueError):
        StateSmoother(window_s=-1.0)
