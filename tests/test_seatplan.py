"""Seat plans and consent by seat: validation, the registry round trip, placing tracks in seats and what follows for
consent. Synthetic boxes (no keypoints: everyone seated) except the run on the shared classroom video."""

import datetime as dt
import re
from pathlib import Path

import numpy as np
import pytest

from engagement.cli import main
from engagement.config import ConsentConfig
from engagement.consent.registry import Registry
from engagement.consent.seatplan import SeatPlan, decide_seats, occupied_seats, propose_seats
from engagement.consent.stage import ConsentStage, RegistrySnapshot, analysable
from engagement.detections import Detections
from engagement.errors import UserError

# Two seats side by side at the bottom of a 400x200 frame, a third behind them; seat C is non-participating.
PLAN = {
    "room": "R1", "width": 400, "height": 200,
    "seats": [
        {"name": "A1", "polygon": [[0, 150], [200, 150], [200, 200], [0, 200]], "participating": True},
        {"name": "A2", "polygon": [[200, 150], [400, 150], [400, 200], [200, 200]], "participating": True},
        {"name": "B1", "polygon": [[0, 80], [400, 80], [400, 120], [0, 120]], "participating": False},
    ],
}


def _people(boxes: dict[int, list[float]]) -> Detections:
    xyxy = np.array(list(boxes.values()), np.float32).reshape(-1, 4)
    return Detections.from_boxes(xyxy, track_id=np.array(list(boxes), int), confirmed=np.ones(len(boxes), bool))


IN_A1, IN_A2, IN_B1, NOWHERE = [50, 100, 150, 190], [250, 100, 350, 190], [100, 20, 200, 100], [150, 10, 250, 60]


@pytest.mark.parametrize("change, message", [
    ({"room": ""}, "room must be a name"),
    ({"width": 0}, "width and height must be positive"),
    ({"seats": "A1"}, "seats must be a list"),
    ({"seats": [{"name": "A1", "polygon": [[0, 0], [10, 0]]}]}, "at least 3 points"),
    ({"seats": [{"name": "A1", "polygon": [[0, 0], [10, "x"], [5, 5]]}]}, "at least 3 points"),
    ({"seats": [{"name": "A1", "polygon": [[0, 0], [10, 10], [20, 20]]}]}, "no area"),
    ({"seats": [{"name": "A1", "polygon": [[0, 0], [10, 0], [0, 10], [10, 10]]}]}, "edges cross; give its corners in order"),
    ({"seats": [{"name": "A1", "polygon": [[0, 0], [30, 0], [0, 10], [10, 10]]}]}, "edges cross"),  # a bow tie with area
    ({"seats": [{"name": "A1", "polygon": [[0, 0], [900, 0], [0, 10]]}]}, "outside the 400x200"),
    ({"seats": [{"name": "A1", "polygon": [[0, 0], [9, 0], [0, 9]], "participating": "no"}]}, "true or false"),
    ({"seats": [{"name": "A1", "polygon": [[0, 0], [9, 0], [0, 9]], "participating": True}] * 2}, "repeated: A1"),
    # a seat that does not say whether it participates is not taken to participate
    ({"seats": [{"name": "A1", "polygon": [[0, 0], [9, 0], [0, 9]]}]}, re.escape("seats[0] (A1): participating must be true or false")),
    ({"seats": [{"name": "A1", "polygon": [[0, 0], [10**400, 0], [0, 9]]}]}, "at least 3 points"),
    ({"seats": [{"name": "A1", "polygon": [[0, 0], [9, 0], [0, 9]], "participate": False}]},
     re.escape("seats[0]: unknown key participate (valid keys: name, polygon, participating)")),
    ({"widht": 400}, re.escape("unknown key widht (valid keys: room, width, height, seats)")),
])
def test_a_malformed_plan_is_refused_naming_the_field(change: dict, message: str) -> None:
    with pytest.raises(UserError, match=message):
        SeatPlan.from_dict({**PLAN, **change})


def test_concave_and_many_cornered_seats_are_kept() -> None:
    corners = [[[0, 0], [40, 0], [40, 40], [20, 20], [0, 40]],  # concave (an arrow), its edges do not cross
               [[10 + 5 * np.cos(a), 10 + 5 * np.sin(a)] for a in np.linspace(0, 2 * np.pi, 12, endpoint=False)]]
    for polygon in corners:
        plan = SeatPlan.from_dict({**PLAN, "seats": [{"name": "A1", "polygon": polygon, "participating": True}]})
        assert len(plan.seats[0].polygon) == len(polygon)


def test_plan_scales_to_the_same_camera_and_refuses_another() -> None:
    plan = SeatPlan.from_dict(PLAN)
    assert plan.for_frame(800, 400).seats[0].polygon[2] == (400.0, 400.0)
    with pytest.raises(UserError, match="another camera"):
        plan.for_frame(400, 400)


def test_tracks_get_the_seat_they_sit_in_most_and_fail_closed_otherwise() -> None:
    plan = SeatPlan.from_dict(PLAN)
    frames = [(i, _people({1: IN_A1, 2: IN_B1, 3: IN_A2 if i < 5 else NOWHERE, 4: NOWHERE, 5: IN_A2 if i >= 5 else NOWHERE}))
              for i in range(10)]
    occupied = occupied_seats(frames, plan)
    assert {t: place.seat for t, place in occupied.items()} == {1: "A1", 2: "B1", 3: "A2", 4: None, 5: "A2"}
    roster = [("A1", "S1"), ("A2", "S2"), ("B1", "S3")]
    decided = decide_seats(occupied, plan, roster)
    assert decided[1].student == "S1" and decided[1].outcome == "student"
    assert decided[2].outcome == "non_participating" and decided[2].student is None  # the roster's S3 is not analysed there
    assert decided[3].student == decided[5].student == "S2"  # one after the other in the same seat: the same student
    assert decided[4].outcome == "no_seat"
    assert decide_seats(occupied, plan, [("A1", "S1")])[3].outcome == "empty"
    assert decide_seats(occupied, plan, [("A1", "S1"), ("A1", "S9"), ("A2", "S2")])[1].outcome == "contested"
    together = occupied_seats([(i, _people({1: IN_A1, 6: [60, 110, 160, 195]})) for i in range(4)], plan)
    assert {d.outcome for d in decide_seats(together, plan, roster).values()} == {"contested"}


def test_a_seat_is_contested_only_by_the_time_spent_in_it() -> None:
    plan = SeatPlan.from_dict(PLAN)
    # Track 1 sits in A1 on frames 0-3 and leaves; track 2 crosses A2 on frame 0 and sits in A1 from frame 4.
    frames = [(i, _people({**({1: IN_A1} if i < 4 else {}), 2: IN_A2 if i == 0 else IN_A1 if i >= 4 else NOWHERE})) for i in range(10)]
    occupied = occupied_seats(frames, plan)
    assert (occupied[1].seat, occupied[1].first, occupied[1].last) == ("A1", 0, 3)
    assert (occupied[2].seat, occupied[2].first, occupied[2].last) == ("A1", 4, 9)  # its time in A1, not its whole time seated
    decided = decide_seats(occupied, plan, [("A1", "S1")])
    assert decided[1].outcome == decided[2].outcome == "student"  # one after the other: the seat's student both times


def test_a_track_in_two_seats_or_in_overlapping_seats_is_contested() -> None:
    plan = SeatPlan.from_dict(PLAN)
    switched = [(i, _people({1: IN_A1 if i < 6 else IN_A2})) for i in range(10)]  # an ID switch between neighbours
    assert decide_seats(occupied_seats(switched, plan), plan, [("A1", "S1"), ("A2", "S2")])[1].outcome == "contested"
    overlapping = SeatPlan.from_dict({**PLAN, "seats": [*PLAN["seats"], {"name": "X", "polygon": [[0, 150], [120, 150], [120, 200], [0, 200]],
                                                                         "participating": False}]})
    corner = [0, 100, 100, 190]  # anchor (50, 190): inside A1 and inside the non-participating X drawn over it
    outcome = decide_seats(occupied_seats([(i, _people({1: corner})) for i in range(4)], overlapping), overlapping, [("A1", "S1")])
    assert outcome[1].outcome in ("contested", "non_participating")


def test_a_row_outside_its_own_seat_is_hidden_and_a_non_participating_seat_excludes_the_track() -> None:
    stage = ConsentStage(ConsentConfig(course="C1"), snapshot=_snapshot({"S1", "S2"}, [("A1", "S1"), ("A2", "S2")]))
    # Track 1 sits in A1 but is in no seat on frame 7 (someone walking past after an ID switch, or the student
    # standing) and in A2's seat on frame 9 (a swap, or a visit); track 2 sits in A2, then in B1.
    track_1 = {7: NOWHERE, 9: IN_A2}
    frames = [(i, stage(_people({1: track_1.get(i, IN_A1), 2: IN_A2 if i < 8 else IN_B1}))) for i in range(10)]
    stage.place(frames, 400, 200)
    consent = [people.data["consent"] for _, people in frames]
    assert [row[0] for row in consent] == ["analyzed"] * 7 + ["seat", "analyzed", "seat"]  # only the frames away
    assert [bool(people.data["blur"][0]) for _, people in frames] == [False] * 7 + [True, False, True]
    assert [row[1] for row in consent] == ["seat"] * 10  # B1 is non-participating: the whole track, earlier frames too
    assert 2 in stage.excluded_track_ids and 1 not in stage.excluded_track_ids


def test_stitching_joins_only_tracklets_of_one_seat() -> None:
    from engagement.config import TrackerConfig
    from engagement.stitch import Tracklets, stitch

    config = TrackerConfig(stitch_max_shift=5.0)  # close enough in space and time to be joined on looks alone

    def tracklets_of(keep_apart: bool) -> dict[int, int]:
        stage = ConsentStage(ConsentConfig(course="C1"), snapshot=_snapshot({"S1"}, [("A1", "S1")]))
        log = Tracklets()
        frames = []
        for i in range(10):  # S1 in A1 on frames 0-5; a neighbour in non-participating B1 from frame 6
            people = stage(_people({1: IN_A1} if i < 6 else {2: IN_B1}))
            log.add(float(i), people)
            frames.append((i, people))
        if keep_apart:
            stage.keep_seats_apart(log, frames, 400, 200)
        return stitch(log.by_id.values(), config)

    assert tracklets_of(keep_apart=False) == {1: 1, 2: 1}  # pass 1 alone keeps nobody apart
    assert tracklets_of(keep_apart=True) == {1: 1, 2: 2}


def test_live_refuses_consent_by_seat(tmp_path: Path) -> None:
    from engagement.config import load_pipeline
    from engagement.live import LiveView

    config = load_pipeline("webcam", ["consent.course=C1", "consent.room=R1"])
    with pytest.raises(UserError, match="needs a recorded video"):
        LiveView(str(tmp_path / "never-opened.mp4"), config)


def _snapshot(consented: set[str], roster: list[tuple[str, str]]) -> RegistrySnapshot:
    return RegistrySnapshot(consented=frozenset(consented), seat_plan=SeatPlan.from_dict(PLAN), roster_seats=tuple(roster))


def test_seat_consent_blurs_everyone_until_placed_then_follows_the_roster() -> None:
    stage = ConsentStage(ConsentConfig(course="C1"), snapshot=_snapshot({"S1"}, [("A1", "S1"), ("A2", "S2"), ("B1", "S3")]))
    frames = [(i, stage(_people({1: IN_A1, 2: IN_A2, 3: IN_B1, 4: NOWHERE}))) for i in range(4)]
    first = frames[0][1]
    assert first.data["blur"].all() and set(first.data["consent"]) == {"pending"}
    assert analysable(first).all()  # analysed in memory until placed: nothing is written before
    decisions = stage.place(frames, 400, 200)
    assert {t: d.seat for t, d in decisions.items()} == {1: "A1", 2: "A2", 3: "B1", 4: None}
    for _, people in frames:
        assert people.data["student_id"] == ["S1", "S2", None, None]
        assert people.data["consent"] == ["analyzed", "student", "seat", "unknown"]
        assert people.data["blur"].tolist() == [False, True, True, True]
        assert analysable(people).tolist() == [True, False, False, False]
    assert stage.track_students == {1: "S1", 2: "S2"} and stage.excluded_track_ids == {2, 3, 4}


def test_propose_names_rows_from_the_front() -> None:
    frames = [_people({1: IN_A1, 2: IN_A2, 3: [150, 20, 250, 100]}) for _ in range(3)]
    plan = propose_seats(frames, 400, 200, "R1")
    assert [seat.name for seat in plan.seats] == ["A1", "A2", "B1"]
    assert plan.seats[0].polygon[0][0] < plan.seats[1].polygon[0][0]
    assert SeatPlan.from_dict(plan.to_dict()) == plan


def test_seat_plans_round_trip_through_the_registry(registry_location: str | Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    source, out = tmp_path / "plan.yaml", tmp_path / "out.yaml"
    SeatPlan.from_dict(PLAN).write(source)
    assert main(["seats", "import", str(source), "--registry", str(registry_location)]) == 0
    assert "3 seats, 1 non-participating" in capsys.readouterr().out
    assert main(["seats", "export", "R1", "--out", str(out), "--registry", str(registry_location)]) == 0
    assert SeatPlan.read(out) == SeatPlan.from_dict(PLAN)
    with Registry.open(registry_location) as registry:
        assert registry.rooms() == ["R1"]
        assert [e["action"] for e in registry.audit_log()] == ["seat_plan_saved"]


def test_seat_commands_refuse_bad_input_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    registry = str(tmp_path / "registry.sqlite")
    bad = tmp_path / "bad.yaml"
    bad.write_text("room: R1\nwidth: 10\nheight: 10\nseats: [{name: A1, polygon: [[0, 0], [5, 5]]}]\n")
    assert main(["seats", "import", str(bad), "--registry", registry]) == 2
    assert main(["seats", "import", str(tmp_path / "missing.yaml"), "--registry", registry]) == 2
    binary = tmp_path / "video.yaml"
    binary.write_bytes(b"\xff\xd8\xff\x00")
    assert main(["seats", "import", str(binary), "--registry", registry]) == 2
    assert main(["seats", "export", "R9", "--out", str(tmp_path / "x.yaml"), "--registry", registry]) == 2
    assert main(["seats", "export", "R9", "--out", str(tmp_path / "x.txt"), "--registry", registry]) == 2
    not_a_video = tmp_path / "notes.mp4"
    not_a_video.write_text("not a video")
    assert main(["seats", "propose", str(not_a_video), "--room", "R1", "--out", str(tmp_path / "p.yaml")]) == 2
    assert main(["seats", "propose", str(not_a_video), "--room", "R1", "--out", str(tmp_path / "p.yaml"), "--seconds", "0"]) == 2
    assert main(["seats", "propose", str(not_a_video), "--room", "R1", "--out", str(tmp_path / "p.yaml"), "--seconds", "nan"]) == 2
    assert main(["seats", "propose", str(not_a_video), "--room", " ", "--out", str(tmp_path / "p.yaml")]) == 2  # import refuses it
    edited = tmp_path / "edited.yaml"
    edited.write_text("a plan someone marked by hand\n")
    assert main(["seats", "propose", str(not_a_video), "--room", "R1", "--out", str(edited)]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 10 and "at least 3 points" in errors[0] and "cannot read" in errors[1] and "not UTF-8" in errors[2]
    assert "no consent registry at" in errors[3] and "must be a .yaml file" in errors[4]
    assert "notes.mp4" in errors[5] and "--seconds must be positive" in errors[6] and "--seconds must be positive" in errors[7]
    assert "--room: room must be a name of 1 to 64 characters" in errors[8] and "already exists" in errors[9]
    assert not (tmp_path / "x.yaml").exists() and not (tmp_path / "p.yaml").exists()
    assert edited.read_text() == "a plan someone marked by hand\n"
    assert not Path(registry).exists()  # export only reads: a mistyped registry is not created
    Registry.open(registry).close()
    assert main(["seats", "export", "R9", "--out", str(tmp_path / "x.yaml"), "--registry", registry]) == 2
    assert "room 'R9' has no seat plan" in capsys.readouterr().err


def test_a_room_without_a_plan_or_a_course_is_refused_before_any_work(tmp_path: Path) -> None:
    from engagement.config import load_pipeline

    with pytest.raises(UserError, match="needs consent.course"):
        load_pipeline("lecture", ["consent.room=R1"])
    registry = tmp_path / "registry.sqlite"
    with Registry.open(registry) as opened:
        opened.add_course("C1")
        opened.add_approval("C1", "Dr. Example", "Dean", dt.date.today(), "all lectures")
        with pytest.raises(UserError, match="room 'R1' has no seat plan"):
            RegistrySnapshot.read(ConsentConfig(course="C1", room="R1"), opened)


@pytest.mark.slow
def test_a_seat_plan_run_on_the_classroom_video(classroom_video: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Proposed seats, one marked non-participating: its occupant is blurred (privacy-check over their place) and in no
    table; consenting seats are analysed under their students' IDs; a withdrawal removes one student's rows."""
    import json

    import pandas as pd

    from engagement.detector import PoseDetector
    from engagement.config import DetectorConfig
    from engagement.consent.stage import points_in_polygon
    from engagement.sources import read_frame_at

    registry, proposed, run = str(tmp_path / "registry.sqlite"), tmp_path / "plan.yaml", tmp_path / "run"
    assert main(["seats", "propose", str(classroom_video), "--room", "R110", "--out", str(proposed), "-q"]) == 0
    plan = SeatPlan.read(proposed)
    assert len(plan.seats) >= 8
    frame, _, _ = read_frame_at(str(classroom_video), 0.0)
    people = PoseDetector(DetectorConfig())(frame)
    seat_of = {i: s for s in plan.seats for i in np.flatnonzero(points_in_polygon(people.anchor, np.array(s.polygon)))}
    front_middle = max(seat_of, key=lambda i: people.area[i])  # the largest person in a seat: a face near the camera
    hidden = seat_of[front_middle]
    empty = next(s for s in plan.seats if s is not hidden)
    data = plan.to_dict()
    for seat in data["seats"]:
        seat["participating"] = seat["name"] != hidden.name
    SeatPlan.from_dict(data).write(proposed)
    with Registry.open(registry) as opened:
        opened.add_course("CS101", retention_days=30)
        opened.add_approval("CS101", "Dr. Example", "Dean", dt.date.today(), "all lectures")
        for seat in plan.seats:
            if seat is not empty:
                opened.set_consent(f"S-{seat.name}", "CS101", "consented", seat=seat.name)
    assert main(["seats", "import", str(proposed), "--registry", registry]) == 0
    assert main(["process", str(classroom_video), "--out", str(run), "--no-report", "-q", "--set", f"consent.registry={registry}",
                 "--set", "consent.course=CS101", "--set", "consent.room=R110"]) == 0
    consent = json.loads((run / "session.json").read_text())["consent"]
    seats = {int(t): seat for t, seat in consent["track_seats"].items()}
    students = {int(t): student for t, student in consent["track_students"].items()}
    (hidden_track,) = [t for t, seat in seats.items() if seat == hidden.name]
    tracks, states = pd.read_parquet(run / "tracks.parquet"), pd.read_parquet(run / "states.parquet")
    assert hidden_track not in set(tracks.track_id) | set(states.track_id)
    assert all(students[t] == f"S-{seats[t]}" for t in students) and len(students) >= 6
    assert set(states.track_id) <= set(students) and len(set(states.track_id)) >= 6  # consenting seats analysed
    x1, y1, x2, y2 = people.xyxy[front_middle]
    region = f"{x1 - 10:.0f},{y1 - 10:.0f},{x2 + 10:.0f},{y2 + 10:.0f}"
    report = tmp_path / "leaks.json"
    capsys.readouterr()
    assert main(["privacy-check", str(classroom_video), str(run / "annotated.mp4"), "--region", region, "--json", str(report), "-q"]) == 0
    totals = json.loads(report.read_text())["totals"]
    assert totals["faces_original"] >= 50 and totals["leaked_faces"] == 0  # their face is there to find, and hidden
    withdrawn = min(students)
    assert main(["consent", "withdraw", students[withdrawn], "--registry", registry]) == 0
    assert withdrawn not in set(pd.read_parquet(run / "tracks.parquet").track_id)
    after = json.loads((run / "session.json").read_text())["consent"]
    assert str(withdrawn) not in after["track_students"] and str(withdrawn) not in after["track_seats"]  # nor their seat
