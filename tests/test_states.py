"""State smoothing: one odd frame does not flip a track's state; tracks are independent."""

from __future__ import annotations

import numpy as np
import pytest

from engagement.states import STATES, StateSmoother


def onehot(state: str) -> np.ndarray:
    return np.eye(len(STATES), dtype=np.float32)[[STATES.index(state)]]


@pytest.mark.parametrize("pipeline", ["lecture", "webcam"])
def test_single_frame_does_not_flip_the_state(pipeline: str) -> None:
    from engagement.config import load_pipeline

    config = load_pipeline(pipeline)
    smoother = StateSmoother(window_s=config.classifier.smoothing_s)
    step_s = 1 / config.analysis_fps  # one analysis frame
    for step in range(20):
        smoother.update(np.array([1]), onehot("attentive"), step * step_s)
    blip = smoother.update(np.array([1]), onehot("distracted"), 20 * step_s)
    assert STATES[int(blip.argmax())] == "attentive"
    for step in range(1, int(8 / step_s)):  # held for 8 s: takes over
        held = smoother.update(np.array([1]), onehot("distracted"), (20 + step) * step_s)
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
