"""Engagement score: a weighted sum of state probabilities, 0-100, per student per minute and per session.

Weights (why): attentive, taking notes and engaged in discussion are all forms of taking part in the
lesson (1.0); confused means the student is still working on the material but struggling (0.5); bored
shows little involvement but still presence (0.2); distracted means attention is elsewhere (0.0).
The score of one analysis frame is 100 * sum_s weight[s] * p[s]; a minute's score is the mean over that
student's frames in the minute, a student's session score the mean over all their frames, and the
session score the mean of the student scores (each student counts once, however long they were seen).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from engagement.states import STATES, UNCERTAIN

STATE_WEIGHTS: dict[str, float] = {
    "attentive": 1.0,
    "distracted": 0.0,
    "confused": 0.5,
    "bored": 0.2,
    "engaged_in_discussion": 1.0,
    "taking_notes": 1.0,
}
FORMULA_TEXT = (
    "score = 100 * (1.0*attentive + 1.0*taking_notes + 1.0*engaged_in_discussion + 0.5*confused "
    "+ 0.2*bored + 0.0*distracted), from the smoothed state probabilities of each analysis frame; "
    "per minute: mean over the student's frames in that minute; per student: mean over all their frames; "
    "session: mean of the student scores"
)
PROBABILITY_COLUMNS: tuple[str, ...] = tuple(f"p_{state}" for state in STATES)
_WEIGHT_VECTOR = np.array([STATE_WEIGHTS[state] for state in STATES])


def engagement_score(probs: np.ndarray) -> np.ndarray:
    """(N,) scores 0-100 for (N, 6) state probabilities in ``STATES`` order."""
    probs = np.asarray(probs, np.float64)
    if probs.ndim != 2 or probs.shape[1] != len(STATES):
        raise ValueError(f"probs must have shape (N, {len(STATES)}), got {probs.shape}")
    return (100.0 * probs @ _WEIGHT_VECTOR).astype(np.float32)


def summarize(states: pd.DataFrame, duration_s: float, people_excluded: int) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The scores table (track_id, minute, score, n_frames) and the summary.json content.

    ``states`` has one row per track per analysis frame: frame, time_s, track_id, p_<state>..., state.
    """
    missing = {"time_s", "track_id", "state", *PROBABILITY_COLUMNS} - set(states.columns)
    if missing:
        raise ValueError(f"states table lacks columns {sorted(missing)}")
    frame = states.assign(
        score=engagement_score(states[list(PROBABILITY_COLUMNS)].to_numpy()),
        minute=(states["time_s"] // 60).astype(int),
    )
    scores = (frame.groupby(["track_id", "minute"], sort=True)
              .agg(score=("score", "mean"), n_frames=("score", "size")).reset_index())
    students = []
    for track_id, rows in frame.groupby("track_id", sort=True):
        share = rows["state"].value_counts(normalize=True)
        students.append({
            "track_id": int(track_id),
            "score": round(float(rows["score"].mean()), 2),
            "dominant_state": str(share.idxmax()),
            "state_share": {state: round(float(share.get(state, 0.0)), 4) for state in STATES},
            "uncertain_share": round(float(share.get(UNCERTAIN, 0.0)), 4),
            "minutes_present": int(rows["minute"].nunique()),
        })
    timeline = []
    for minute, rows in scores.groupby("minute", sort=True):
        timeline.append({"minute": int(minute), "score": round(float(rows["score"].mean()), 2),
                         "n_students": int(rows["track_id"].nunique())})
    overall_share = frame["state"].value_counts(normalize=True)
    summary = {
        "formula": {"weights": dict(STATE_WEIGHTS), "text": FORMULA_TEXT},
        "session_score": round(float(np.mean([s["score"] for s in students])), 2) if students else None,
        "duration_s": float(duration_s),
        "students": students,
        "timeline": timeline,
        "state_share": {state: round(float(overall_share.get(state, 0.0)), 4) for state in STATES},
        # share of student-time shown as "uncertain" (below classifier.uncertain_below): the state shares add up
        # to 1 minus this
        "uncertain_share": round(float(overall_share.get(UNCERTAIN, 0.0)), 4),
        "people_excluded": int(people_excluded),
    }
    scores["score"] = scores["score"].round(2)
    return scores[["track_id", "minute", "score", "n_frames"]], summary
