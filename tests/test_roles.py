"""The instructor is not a student: role decisions on synthetic tracks, and what they remove from analytics."""

from __future__ import annotations

import numpy as np
import pytest

from engagement.classifier.stage import StateStage, set_states
from engagement.consent.stage import analysable
from engagement.detections import KEYPOINT_INDEX, NUM_KEYPOINTS, Detections
from engagement.roles import instructor_tracks, mark_roles, standing

FRONT = [[0, 580], [1280, 580], [1280, 720], [0, 720]]  # the strip in front of the first row


def person(x: float, top: float, height: float, legs: bool) -> tuple[np.ndarray, np.ndarray]:
    """A box and keypoints: hips at mid-height; with ``legs``, knees and ankles visible below them."""
    box = np.array([x, top, x + height / 3, top + height], np.float32)
    keypoints = np.zeros((NUM_KEYPOINTS, 3), np.float32)
    for name, fraction in (("left_hip", 0.5), ("right_hip", 0.5), ("left_knee", 0.72), ("left_ankle", 0.95)):
        seen = legs or "hip" in name
        keypoints[KEYPOINT_INDEX[name]] = (x + height / 6, top + fraction * height, 0.9 if seen else 0.05)
    return box, keypoints


def frames(people: dict[int, list[tuple[float, float, float, bool]]]) -> list[Detections]:
    """One Detections per time step from each track's (x, top, height, legs) per step."""
    steps = len(next(iter(people.values())))
    out = []
    for step in range(steps):
        boxes, keypoints = zip(*(person(*people[t][step]) for t in people))
        out.append(Detections.from_boxes(np.stack(boxes), keypoints=np.stack(keypoints), track_id=np.array(list(people)),
                                         opted_out=np.zeros(len(people), bool)))
    return out


def classroom(steps: int = 10) -> list[Detections]:
    return frames({
        1: [(100 + 80 * step, 200, 400, True) for step in range(steps)],  # stands and walks along the front
        2: [(300, 350, 150, False)] * steps,  # seated behind a desk: no legs in view
        3: [(600, 340, 160, False)] * steps,
        4: [(900, 150, 420, True)] * steps,  # stands up to answer, stays in place
    })


def test_standing_needs_long_visible_legs() -> None:
    assert standing(classroom()[0]).tolist() == [True, False, False, True]


def test_auto_finds_who_stands_and_walks() -> None:
    assert instructor_tracks(classroom(), "auto") == {1}


def test_zone_and_none_modes() -> None:
    assert instructor_tracks(classroom(), "zone", FRONT) == {1}  # whose feet are in front of the first row
    assert instructor_tracks(classroom(), "none") == set()


def test_someone_who_walks_only_briefly_stays_a_student() -> None:
    walking = [(100 + 80 * step, 200, 400, True) for step in range(3)] + [(340, 350, 150, False)] * 7
    assert instructor_tracks(frames({7: walking}), "auto") == set()


def test_the_instructor_leaves_every_table_but_is_still_drawn() -> None:
    from engagement.annotate import INSTRUCTOR_COLOR, person_colors

    scene = classroom(4)
    mark_roles(scene, {1})
    frame = scene[0]
    assert frame.data["role"] == ["instructor", "student", "student", "student"]
    assert analysable(frame).tolist() == [False, True, True, True]
    assert person_colors(frame)[0] == INSTRUCTOR_COLOR
    set_states(frame, np.ones(4, bool), np.full((4, 6), 1 / 6, np.float32))  # pass 1 classified everyone
    StateStage.drop_unanalysable(frame)
    assert frame.data["state"][0] == "" and np.isnan(frame.data["score"][0]) and all(frame.data["state"][1:])


def test_zone_mode_needs_a_zone() -> None:
    from engagement.config import load_pipeline
    from engagement.errors import UserError

    with pytest.raises(UserError, match="instructor_zone"):
        load_pipeline("lecture", ["classifier.instructor=zone"])
