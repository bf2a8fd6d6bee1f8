"""The engagement-score formula and the per-minute / per-session summary."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from engagement.scoring import FORMULA_TEXT, PROBABILITY_COLUMNS, STATE_WEIGHTS, engagement_score, summarize
from engagement.states import STATES


def test_score_is_weighted_sum_on_0_to_100() -> None:
    eye = np.eye(len(STATES))
    np.testing.assert_allclose(engagement_score(eye), [100 * STATE_WEIGHTS[s] for s in STATES])
    half = np.zeros((1, len(STATES)))
    half[0, STATES.index("attentive")] = half[0, STATES.index("distracted")] = 0.5
    assert engagement_score(half)[0] == pytest.approx(50.0)
    assert STATE_WEIGHTS["distracted"] == 0.0 and "confused" in FORMULA_TEXT
    with pytest.raises(ValueError):
        engagement_score(np.ones((2, 3)))


def states_table(rows: list[tuple[float, int, str]]) -> pd.DataFrame:
    probs = np.eye(len(STATES))[[STATES.index(state) for _, _, state in rows]]
    table = pd.DataFrame(probs, columns=list(PROBABILITY_COLUMNS))
    table.insert(0, "track_id", [track for _, track, _ in rows])
    table.insert(0, "time_s", [t for t, _, _ in rows])
    table.insert(0, "frame", range(len(rows)))
    table["state"] = [state for _, _, state in rows]
    return table


def test_summary_per_minute_student_and_session() -> None:
    rows = [(0.0, 1, "attentive"), (30.0, 1, "distracted"), (61.0, 1, "attentive"),
            (0.0, 2, "bored"), (10.0, 2, "bored")]
    scores, summary = summarize(states_table(rows), duration_s=90.0, people_excluded=3)
    assert list(scores.columns) == ["track_id", "minute", "score", "n_frames"]
    first = scores[(scores.track_id == 1) & (scores.minute == 0)].iloc[0]
    assert first.score == pytest.approx(50.0) and first.n_frames == 2
    students = {s["track_id"]: s for s in summary["students"]}
    assert students[1]["score"] == pytest.approx(200 / 3, abs=0.01)
    assert students[1]["dominant_state"] == "attentive" and students[1]["minutes_present"] == 2
    assert students[2]["state_share"]["bored"] == 1.0
    assert summary["session_score"] == pytest.approx((200 / 3 + 20) / 2, abs=0.01)
    assert summary["timeline"][0] == {"minute": 0, "score": pytest.approx(35.0), "n_students": 2}
    assert summary["people_excluded"] == 3 and summary["formula"]["weights"] == STATE_WEIGHTS
    assert sum(summary["state_share"].values()) == pytest.approx(1.0)


def test_summary_rejects_a_table_without_probabilities() -> None:
    with pytest.raises(ValueError, match="p_attentive"):
        summarize(pd.DataFrame({"time_s": [0.0], "track_id": [1], "state": ["bored"]}), 1.0, 0)
