"""Annotators on synthetic black frames: label placement, state colours, legend, class score, seat zones."""

import cv2
import numpy as np
import pytest

from engagement.annotate import (
    INSTRUCTOR_COLOR, NO_STATE_COLOR, STATE_COLORS, ZONE_COLOR, BoxAnnotator, ClassScoreAnnotator, LabelAnnotator,
    LegendAnnotator, SeatZoneAnnotator, class_score, label_text, place_labels,
)
from engagement.config import SeatZone
from engagement.detections import Detections
from engagement.states import STATES


def people(boxes, states=None, scores=None, **data) -> Detections:
    n = len(boxes)
    detections = Detections.from_boxes(np.array(boxes, np.float32), track_id=np.arange(1, n + 1), opted_out=np.zeros(n, bool), **data)
    detections.data["state"] = states or [""] * n
    detections.data["score"] = np.array(scores if scores is not None else [np.nan] * n, np.float64)
    return detections


def rects_overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def test_labels_of_a_crowded_row_do_not_overlap():
    boxes = np.array([[100 + 12 * i, 200, 160 + 12 * i, 320] for i in range(12)])  # 12 heavily overlapping people
    sizes = [(110, 20)] * len(boxes)
    corners = place_labels(boxes, sizes, 640, 480)
    rects = [(x, y, x + w, y + h) for (x, y), (w, h) in zip(corners, sizes)]
    assert all(0 <= x0 and x1 <= 640 and 0 <= y0 and y1 <= 480 for x0, y0, x1, y1 in rects)
    assert not [(i, j) for i in range(len(rects)) for j in range(i) if rects_overlap(rects[i], rects[j])]
    assert corners[0].tolist() == [100, 180]  # the first label takes the spot above its box


def test_without_room_labels_still_land_in_the_frame():
    corners = place_labels(np.array([[0, 0, 40, 40]] * 5), [(30, 20)] * 5, 40, 40)
    assert ((corners >= 0) & (corners <= 20)).all()


def test_drawn_labels_do_not_overlap_on_the_frame():
    boxes = [[200 + 8 * i, 150, 260 + 8 * i, 300] for i in range(8)]
    detections = people(boxes, ["attentive"] * 8, [90.0] * 8)
    frame = LabelAnnotator().annotate(np.zeros((480, 640, 3), np.uint8), detections)
    labelled = (np.all(frame == STATE_COLORS["attentive"], axis=2)).astype(np.uint8)
    _, _, stats, _ = cv2.connectedComponentsWithStats(labelled)
    assert (stats[1:, cv2.CC_STAT_AREA] > 200).sum() == 8  # eight separate label backgrounds, none merged with another


def test_boxes_take_their_state_colour_and_grey_without_one():
    states = list(STATES) + [""]
    boxes = [[10 + 45 * i, 20, 50 + 45 * i, 100] for i in range(len(states))]
    frame = BoxAnnotator().annotate(np.zeros((200, 400, 3), np.uint8), people(boxes, states))
    for (x1, y1, *_), state in zip(boxes, states):
        assert tuple(frame[60, x1]) == STATE_COLORS.get(state, NO_STATE_COLOR)
    assert len(set(STATE_COLORS.values()) | {NO_STATE_COLOR, INSTRUCTOR_COLOR, ZONE_COLOR}) == len(STATES) + 3


def test_the_instructor_has_a_colour_of_their_own():
    detections = people([[10, 20, 60, 100], [100, 20, 150, 100]], ["attentive", "attentive"], role=["instructor", "student"])
    frame = BoxAnnotator().annotate(np.zeros((200, 200, 3), np.uint8), detections)
    assert tuple(frame[60, 10]) == INSTRUCTOR_COLOR and tuple(frame[60, 100]) == STATE_COLORS["attentive"]
    assert label_text(3, "engaged_in_discussion", 87.4, "instructor") == "ID 3 instructor discussing 87"


def test_opted_out_people_are_not_drawn():
    detections = people([[10, 20, 60, 100]], ["bored"], [20.0])
    detections.data["opted_out"] = np.array([True])
    frame = np.zeros((200, 200, 3), np.uint8)
    for annotator in (BoxAnnotator(), LabelAnnotator(), ClassScoreAnnotator()):
        assert not annotator.annotate(frame, detections).any()


def test_legend_lists_every_state_colour_and_the_score_meaning():
    frame = LegendAnnotator().annotate(np.zeros((720, 1280, 3), np.uint8), Detections.empty())
    corner = frame[360:, :400]
    for color in [*STATE_COLORS.values(), NO_STATE_COLOR]:
        assert np.all(corner == color, axis=2).sum() > 50
    assert not np.all(corner == INSTRUCTOR_COLOR, axis=2).any()  # no role column, no instructor entry
    assert not frame[:360].any() and not frame[:, 640:].any()  # the legend stays in its corner
    with_roles = LegendAnnotator().annotate(np.zeros((720, 1280, 3), np.uint8), people([[0, 0, 1, 1]], role=["student"]))
    assert np.all(with_roles == INSTRUCTOR_COLOR, axis=2).sum() > 50


def test_class_score_is_the_mean_over_scored_people_and_is_drawn_top_right():
    detections = people([[10, 20, 60, 100]] * 3, ["attentive", "bored", ""], [90.0, 20.0, np.nan])
    assert class_score(detections) == (pytest.approx(55.0), 2)
    assert class_score(people([[10, 20, 60, 100]])) is None
    frame = ClassScoreAnnotator().annotate(np.zeros((720, 1280, 3), np.uint8), detections)
    assert frame[:60, 900:].any() and not frame[60:].any() and not frame[:, :640].any()
    blank = ClassScoreAnnotator().annotate(np.zeros((720, 1280, 3), np.uint8), people([[10, 20, 60, 100]]))
    assert not blank.any()  # nobody scored: no number is made up


def test_seat_zone_outline_is_drawn_on_its_edges_with_its_name():
    zone = SeatZone(name="back row", polygon=[[100, 300], [500, 300], [500, 400], [100, 400]])
    frame = SeatZoneAnnotator([zone]).annotate(np.zeros((480, 640, 3), np.uint8), Detections.empty())
    for x, y in [(300, 300), (500, 350), (300, 400), (100, 350)]:  # the middle of each edge
        assert tuple(frame[y, x]) == ZONE_COLOR
    assert not frame[320:380, 120:480].any()  # an outline, not a filled area
    assert np.all(frame[270:300, 100:200] == ZONE_COLOR, axis=2).sum() > 100  # the name's tag above the zone
    assert not SeatZoneAnnotator([]).annotate(np.zeros((48, 64, 3), np.uint8), Detections.empty()).any()
