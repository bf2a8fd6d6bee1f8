"""The six engagement states and their smoothing over time.

States are always handled as probability vectors in ``STATES`` order. Smoothing is an exponential
moving average per track with time constant ``window_s``: one odd frame moves the state only a little,
a behaviour held for a few seconds takes over.
"""

from __future__ import annotations

import numpy as np

from engagement.detections import UNTRACKED

STATES: tuple[str, ...] = ("attentive", "distracted", "confused", "bored", "engaged_in_discussion", "taking_notes")
DISPLAY_NAMES: dict[str, str] = {
    "attentive": "attentive",
    "distracted": "distracted",
    "confused": "confused",
    "bored": "bored",
    "engaged_in_discussion": "discussing",
    "taking_notes": "taking notes",
}
STATE_INDEX: dict[str, int] = {state: i for i, state in enumerate(STATES)}
# Shown instead of a state when the most probable one is below ``classifier.uncertain_below``: a state value,
# never a trained class.
UNCERTAIN = "uncertain"
# One colour per state wherever states are drawn (the annotated video, the report's charts, the web app), from the
# Okabe-Ito palette (distinguishable with the common colour-vision deficiencies); RGB hex.
STATE_COLOURS: dict[str, str] = {
    "attentive": "#009E73",  # bluish green
    "taking_notes": "#56B4E9",  # sky blue
    "engaged_in_discussion": "#0072B2",  # blue
    "confused": "#F0E442",  # yellow
    "bored": "#E69F00",  # orange
    "distracted": "#D55E00",  # vermillion
    UNCERTAIN: "#A0A0A0",  # grey: the classifier was not sure enough to name a state
}
INSTRUCTOR_COLOUR = "#CC79A7"  # reddish purple: never a state's colour


def named_state(probs: np.ndarray, uncertain_below: float = 0.0) -> str:
    """The most probable state of one probability vector, or ``UNCERTAIN`` when its probability is below
    ``uncertain_below`` (the video and the tables then make no guess)."""
    return UNCERTAIN if float(np.max(probs)) < uncertain_below else STATES[int(np.argmax(probs))]


class StateSmoother:
    """Per-track exponential smoothing of state probabilities over about ``window_s`` seconds."""

    def __init__(self, window_s: float) -> None:
        if window_s < 0:
            raise ValueError(f"window_s must be >= 0, got {window_s}")
        self.window_s = window_s
        self._state: dict[int, tuple[float, np.ndarray]] = {}

    def update(self, track_ids: np.ndarray, probs: np.ndarray, time_s: float) -> np.ndarray:
        """Fold this frame's (N, 6) ``probs`` into each track's history; returns the smoothed (N, 6)."""
        probs = np.asarray(probs, np.float64).reshape(-1, len(STATES))
        smoothed = probs.copy()
        for i, track_id in enumerate(np.asarray(track_ids).tolist()):
            if track_id == UNTRACKED:
                continue  # no identity, no history to smooth with
            previous = self._state.get(track_id)
            if previous is not None and self.window_s > 0:
                dt = max(time_s - previous[0], 0.0)
                keep = np.exp(-dt / self.window_s)  # weight of the past after dt seconds
                smoothed[i] = keep * previous[1] + (1 - keep) * probs[i]
            self._state[track_id] = (time_s, smoothed[i])
        return smoothed.astype(np.float32)

    def forget(self, track_id: int) -> None:
        """Drop a finished track."""
        self._state.pop(track_id, None)


def mixed(probs: np.ndarray, other: np.ndarray, other_weight: float) -> np.ndarray:
    """Two models' state probabilities of the same rows, mixed (1 - other_weight) to other_weight."""
    return ((1.0 - other_weight) * np.asarray(probs, np.float32) + other_weight * np.asarray(other, np.float32)).astype(np.float32)
