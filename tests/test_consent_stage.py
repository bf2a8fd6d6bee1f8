"""Consent stage on synthetic detections: seat-zone geometry, opt-out rules, blur policies, registry mode."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest

from engagement.config import ConsentConfig, SeatZone
from engagement.consent.registry import Registry
from engagement.consent.stage import ConsentStage, RegistrySnapshot, points_in_polygon
from engagement.detections import Detections
from engagement.errors import UserError

# An L-shaped (concave) zone: the square 0..100 minus its top-right quarter.
L_ZONE = [[0, 0], [50, 0], [50, 50], [100, 50], [100, 100], [0, 100]]


def test_points_in_concave_polygon() -> None:
    points = np.array([[25, 25], [75, 25], [75, 75], [25, 75], [150, 50], [50, 25], [0, 100], [-1, 50]])
    inside = points_in_polygon(points, np.array(L_ZONE))
    assert inside.tolist() == [True, False, True, True, False, True, True, False]


def test_degenerate_polygon_contains_nothing() -> None:
    assert not points_in_polygon(np.array([[1, 1]]), np.array([[0, 0], [5, 5]])).any()


def _people(boxes: list[list[float]], tracks: list[int], confirmed: list[bool] | None = None) -> Detections:
    data = {} if confirmed is None else {"confirmed": np.array(confirmed)}
    return Detections.from_boxes(np.array(boxes, np.float32), track_id=np.array(tracks), **data)


def test_seat_zone_uses_the_box_anchor_and_is_sticky() -> None:
    stage = ConsentStage(ConsentConfig(blur="opted_out", opted_out_seats=[SeatZone("back", L_ZONE)]))
    # Track 1's box bottom-centre (25, 90) is in the zone though most of the box is outside; track 2's (75, 30) is not.
    first = stage(_people([[0, -200, 50, 90], [50, 0, 100, 30]], [1, 2]))
    assert first.data["opted_out"].tolist() == [True, False]
    assert first.data["blur"].tolist() == [True, False]
    assert first.data["consent"] == ["seat", "analyzed"]
    # Track 1 stands up and leaves the zone: still opted out.
    later = stage(_people([[300, 0, 400, 300]], [1]))
    assert later.data["opted_out"].tolist() == [True] and later.data["consent"] == ["seat"]
    assert stage.excluded_track_ids == {1}


def test_one_persons_fragments_joined_by_stitching_count_as_one_person_excluded() -> None:
    """Pass 1 saw one student in an opted-out seat as two tracklets (1 and 3); stitching joins them as track 1: the
    outputs count one person excluded, and every row of the joined track, the earlier frames included, is hidden."""
    stage = ConsentStage(ConsentConfig(blur="opted_out", opted_out_seats=[SeatZone("back", L_ZONE)]))
    early = stage(_people([[300, 0, 400, 300], [0, -200, 50, 90]], [1, 2]))  # track 1 not yet in the seat
    stage(_people([[0, -200, 50, 90]], [1]))
    stage(_people([[0, -200, 50, 90]], [3]))
    assert stage.excluded_track_ids == {1, 2, 3}
    early.track_id = np.array([1, 2])
    stage.exclude_whole_tracks([early], {3: 1})
    assert stage.excluded_track_ids == {1, 2}
    assert early.data["opted_out"].tolist() == [True, True] and early.data["blur"].tolist() == [True, True]


def test_unknown_people_follow_the_unknown_policy() -> None:
    boxes = [[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10]]
    people = _people(boxes, [-1, 5, 6], confirmed=[False, False, True])
    blurred = ConsentStage(ConsentConfig(blur="opted_out", unknown="blur"))(people)
    assert blurred.data["opted_out"].tolist() == [True, True, False]
    assert blurred.data["blur"].tolist() == [True, True, False]
    analyzed = ConsentStage(ConsentConfig(unknown="analyze"))(people)
    assert analyzed.data["opted_out"].tolist() == [False, False, False]


def test_unconfirmed_rows_are_not_counted_as_excluded() -> None:
    stage = ConsentStage(ConsentConfig())
    stage(_people([[0, 0, 10, 10]], [7], confirmed=[False]))
    confirmed = stage(_people([[0, 0, 10, 10]], [7], confirmed=[True]))
    assert confirmed.data["opted_out"].tolist() == [False] and stage.excluded_track_ids == set()


@pytest.mark.parametrize(
    "policy, expected",
    [("unconsented", [True, True]), ("all", [True, True]), ("none", [False, False]), ("opted_out", [True, False])],
)
def test_blur_policies(policy: str, expected: list[bool]) -> None:
    stage = ConsentStage(ConsentConfig(blur=policy, opted_out_seats=[SeatZone("z", L_ZONE)]))
    people = stage(_people([[0, 0, 50, 90], [50, 0, 100, 30]], [1, 2]))
    assert people.data["blur"].tolist() == expected
    assert people.data["opted_out"].tolist() == [True, False]  # analytics never include the opted-out one


def _approved_course(registry: Registry, code: str = "CS101") -> None:
    registry.add_course(code, "Intro")
    registry.add_approval(code, "Dr. Example", "Dean Placeholder", dt.date.today(), "all lectures")


def test_registry_decides_by_student(tmp_path: Path) -> None:
    with Registry.open(tmp_path / "registry.sqlite") as registry:
        _approved_course(registry)
        registry.set_consent("S1", "CS101", "consented")
        registry.set_consent("S2", "CS101", "opted_out")
        registry.set_consent("S3", "CS101", "consented")
        registry.set_consent("S3", "CS101", "withdrawn")
        config = ConsentConfig(course="CS101", track_students={1: "S1", 2: "S2", 3: "S3", 4: "S-unknown"})
        stage = ConsentStage(config, registry)
    people = stage(_people([[i * 20, 0, i * 20 + 10, 10] for i in range(5)], [1, 2, 3, 4, 5]))
    assert people.data["student_id"] == ["S1", "S2", "S3", "S-unknown", None]
    assert people.data["opted_out"].tolist() == [False, True, True, True, True]
    assert people.data["consent"] == ["analyzed", "student", "student", "student", "unknown"]
    assert stage.excluded_track_ids == {2, 3, 4, 5}
    assert people.data["blur"].tolist() == [False, True, True, True, True]  # only the consent record shows a face


def test_default_policy_without_a_registry_blurs_every_face_and_analyses_tracks() -> None:
    """No registry: nobody has consented, so every face is hidden, confirmed tracks are analysed pseudonymously."""
    assert ConsentConfig().blur == "unconsented"
    people = ConsentStage(ConsentConfig())(_people([[0, 0, 10, 10], [20, 0, 30, 10]], [1, -1], confirmed=[True, False]))
    assert people.data["blur"].tolist() == [True, True]
    assert people.data["opted_out"].tolist() == [False, True]


def test_registry_course_must_exist(tmp_path: Path) -> None:
    with Registry.open(tmp_path / "registry.sqlite") as registry, pytest.raises(UserError, match="course add NOPE --title"):
        ConsentStage(ConsentConfig(course="NOPE"), registry)


@pytest.mark.parametrize(
    "approved_on, valid_until, why",
    [(None, None, "it has no approval"), (dt.date(2020, 9, 1), None, "latest approval ran 2020-09-01 to 2021-09-01"),
     (dt.date.today() + dt.timedelta(days=1), None, "latest approval ran")],
)
def test_registry_course_needs_a_current_approval(tmp_path: Path, approved_on: dt.date | None, valid_until: dt.date | None, why: str) -> None:
    with Registry.open(tmp_path / "registry.sqlite") as registry:
        registry.add_course("CS101", "Intro")
        if approved_on:
            registry.add_approval("CS101", "Dr. Example", "Dean Placeholder", approved_on, "all lectures", valid_until)
        with pytest.raises(UserError) as error:
            ConsentStage(ConsentConfig(course="CS101"), registry)
    message = str(error.value)
    assert why in message and "engagement consent approval --course CS101 --instructor" in message and "\n" not in message


def test_approval_covers_its_last_day_only(tmp_path: Path) -> None:
    today = dt.date.today()
    with Registry.open(tmp_path / "registry.sqlite") as registry:
        registry.add_course("CS101", "Intro")
        registry.add_approval("CS101", "Dr. Example", "Dean Placeholder", today - dt.timedelta(days=30), "fall term", today)
        ConsentStage(ConsentConfig(course="CS101"), registry)  # covered today
        with pytest.raises(UserError, match="no faculty approval covering"):
            registry.require_approval("CS101", today + dt.timedelta(days=1))


@pytest.mark.parametrize("setting", [{"blur": "none"}, {"unknown": "analyze"}])
def test_registry_mode_refuses_settings_that_would_show_or_analyse_others(tmp_path: Path, setting: dict) -> None:
    with Registry.open(tmp_path / "registry.sqlite") as registry:
        _approved_course(registry)
        with pytest.raises(UserError, match="only consenting students"):
            ConsentStage(ConsentConfig(course="CS101", **setting), registry)


def test_empty_frame() -> None:
    people = ConsentStage(ConsentConfig())(Detections.empty())
    assert len(people) == 0 and people.data["blur"].shape == (0,)


def test_a_course_in_a_registry_that_does_not_exist_is_refused_and_nothing_is_created(tmp_path: Path) -> None:
    """A mistyped ``consent.registry`` made an empty registry file, then failed on the course."""
    missing = tmp_path / "typo" / "registry.sqlite"
    with pytest.raises(UserError, match="no consent registry at"):
        RegistrySnapshot.read(ConsentConfig(registry=str(missing), course="CS101"))
    assert not missing.exists() and not missing.parent.exists()
