"""The framing measure behind the report's close-framing notice, on synthetic tables."""

from __future__ import annotations

import pandas as pd
import pytest

from engagement.framing import CLOSE_HEAD_SHARE, TRACK_COLUMNS, framing_summary, head_share


def _track_row(frame: int, track_id: int, box_width: float) -> dict[str, float]:
    """A tracks.parquet row whose head box is a quarter of the person box's width (nose and eyes close together)."""
    row = {column: 0.0 for column in TRACK_COLUMNS} | {"frame": frame, "track_id": track_id}
    row.update(x1=0.0, y1=0.0, x2=box_width, y2=2 * box_width)
    for name, (x, y) in {"nose": (100, 100), "left_eye": (110, 95), "right_eye": (90, 95)}.items():
        row.update({f"{name}_x": x, f"{name}_y": y, f"{name}_score": 0.9})
    return row


def test_head_share_is_the_median_over_the_analysed_students_rows() -> None:
    tracks = pd.DataFrame([_track_row(0, 1, 200), _track_row(1, 1, 400), _track_row(2, 1, 400),
                           _track_row(0, 2, 2000),  # someone not analysed (the instructor, an opted-out student)
                           _track_row(3, 1, 2000)])  # a frame of track 1 without a state (not an analysis frame)
    states = pd.DataFrame({"frame": [0, 1, 2], "track_id": [1, 1, 1], "state": ["attentive"] * 3})
    assert head_share(tracks, states, 100) == pytest.approx(1.0)  # head boxes 50, 100, 100 px in a 100 px frame
    assert framing_summary(tracks, states, 100) == {"head_share": 1.0, "close": True}
    assert framing_summary(tracks, states, 1000) == {"head_share": 0.1, "close": False}
    assert CLOSE_HEAD_SHARE == 0.7  # a 100 px head is close from a frame height of 142 px down
    assert framing_summary(tracks, states, 143) == {"head_share": 0.699, "close": False}
    assert framing_summary(tracks, states, 142) == {"head_share": 0.704, "close": True}


def test_no_analysed_rows_give_no_share() -> None:
    tracks = pd.DataFrame([_track_row(0, 1, 200)])
    nobody = pd.DataFrame({"frame": pd.Series([], dtype=int), "track_id": pd.Series([], dtype=int), "state": []})
    assert framing_summary(tracks, nobody, 100) == {"head_share": None, "close": False}
    elsewhere = pd.DataFrame({"frame": [5], "track_id": [1], "state": ["bored"]})
    assert head_share(tracks, elsewhere, 100) is None
    assert head_share(pd.DataFrame(columns=TRACK_COLUMNS), elsewhere, 100) is None
