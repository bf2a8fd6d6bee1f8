"""Consent registry on a real SQLite file and a real PostgreSQL database (``registry_location``): round trips, audit
log, withdrawal and purge of session outputs."""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from engagement.consent import outputs
from engagement.consent.outputs import LIVE_RECORDING_NAME, purge_recordings, purge_sessions, withdraw_student
from engagement.consent.registry import ConsentRecord, Registry, default_registry_path, registry_url
from engagement.errors import UserError
from engagement.framing import framing_summary
from engagement.scoring import PROBABILITY_COLUMNS, summarize
from engagement.states import STATES


def test_round_trip_survives_reopening(registry_location: str | Path, tmp_path: Path) -> None:
    with Registry.open(registry_location) as registry:
        registry.add_course("CS101", title="Intro", retention_days=30)
        registry.add_approval("CS101", "Dr. Example", "Dean Placeholder", dt.date(2026, 9, 1), "all lectures, room 2")
        registry.set_consent("S1", "CS101", "consented", dt.date(2026, 9, 2), "2026.1", name="Ada Example")
        registry.set_consent("S2", "CS101", "opted_out", dt.date(2026, 9, 2), seat="B4")
        registry.set_consent("S3", "CS101", "consented")
        registry.set_consent("S3", "CS101", "withdrawn")
        session_id = registry.record_session("CS101", dt.date(2026, 9, 3), tmp_path, "ab" * 32, {1: "S1", 2: "S2"})
    with Registry.open(str(registry_location)) as registry:
        assert registry.course("CS101")["retention_days"] == 30
        assert registry.approvals("CS101")[0]["approver"] == "Dean Placeholder"
        records = {r.student: r for r in registry.consent("CS101")}
        assert records["S1"].name == "Ada Example" and records["S1"].form_version == "2026.1"
        assert records["S2"].seat == "B4"
        assert records["S3"].status == "withdrawn"  # the latest record wins
        assert registry.opted_out_students("CS101") == {"S2", "S3"}
        assert registry.consented_students("CS101") == {"S1"}
        (session,) = registry.sessions()
        assert session.id == session_id and session.track_students == {1: "S1", 2: "S2"}
        actions = [entry["action"] for entry in registry.audit_log()]
    assert actions.count("consent_consented") == 2 and "approval_added" in actions and "session_recorded" in actions


def test_audit_log_is_append_only(registry_location: str | Path) -> None:
    """Updates, deletes and (PostgreSQL) TRUNCATE are refused by the database; SQLite has no TRUNCATE."""
    with Registry.open(registry_location) as registry:
        registry.set_consent("S1", "CS101", "consented")
        for statement in ("DELETE FROM audit_log", "UPDATE audit_log SET action = 'x'", "TRUNCATE audit_log", "TRUNCATE TABLE audit_log"):
            with pytest.raises(sa.exc.DBAPIError):
                with registry.engine.begin() as connection:
                    connection.execute(sa.text(statement))
        assert len(list(registry.audit_log())) == 3


def test_bad_status_is_rejected_and_nothing_written(registry_location: str | Path) -> None:
    with Registry.open(registry_location) as registry:
        with pytest.raises(UserError, match="status"):
            registry.set_consent("S1", "CS101", "maybe")  # type: ignore[arg-type]
        assert registry.consent() == []


@pytest.mark.parametrize("url", ["nosuchdialect://x/y", "postgresql+nosuchdriver://localhost/db"])
def test_bad_url_is_a_user_error(url: str) -> None:
    with pytest.raises(UserError, match="bad registry URL"):
        Registry.open(url)


def test_file_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "notes.sqlite"
    path.write_text("this is not SQLite\n" * 100)
    with pytest.raises(UserError, match="cannot open registry"):
        Registry.open(path)


def test_default_location_honours_env_and_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ENGAGEMENT_REGISTRY", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert default_registry_path() == tmp_path / "data" / "classroom-engagement" / "registry.sqlite"
    assert registry_url(None) == f"sqlite:///{default_registry_path()}"
    monkeypatch.setenv("ENGAGEMENT_REGISTRY", "postgresql://db.example/consent")
    assert registry_url(None) == "postgresql://db.example/consent"


def test_approval_period_defaults_to_a_year_and_must_not_end_before_it_starts(registry_location: str | Path) -> None:
    with Registry.open(registry_location) as registry:
        registry.add_course("CS101", "Intro")
        registry.add_approval("CS101", "Dr. Example", "Dean Placeholder", dt.date(2028, 2, 29), "all lectures")
        assert registry.approvals("CS101")[0]["valid_until"] == dt.date(2029, 2, 28)
        with pytest.raises(UserError, match="cannot end"):
            registry.add_approval("CS101", "Dr. Example", "Dean Placeholder", dt.date(2026, 9, 1), "x", dt.date(2026, 8, 31))
        with pytest.raises(UserError, match="course add CS999"):
            registry.add_approval("CS999", "Dr. Example", "Dean Placeholder", dt.date(2026, 9, 1), "x")
        with pytest.raises(UserError, match="an approval must name its instructor, approver and scope; blank: instructor, approver"):
            registry.add_approval("CS101", " ", "", dt.date(2026, 9, 1), "all lectures")  # a signed approval of nobody
        assert len(registry.approvals("CS101")) == 1
        audit = json.dumps([entry["details"] for entry in registry.audit_log()], default=str)
    assert "Dr. Example" not in audit and "Dean Placeholder" not in audit  # IDs and dates only


def test_registry_made_by_the_first_schema_is_upgraded(registry_location: str | Path) -> None:
    """A 0001 registry gets course policies and approval periods (one year after each existing approval)."""
    from alembic import command
    from alembic.config import Config

    import engagement.consent.registry as module

    engine = sa.create_engine(registry_url(registry_location))
    config = Config()
    config.set_main_option("script_location", str(Path(module.__file__).parent / "migrations"))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0001")
        now = dt.datetime.now(dt.timezone.utc)
        connection.execute(sa.text("INSERT INTO courses (code, created_at) VALUES ('CS101', :now)"), {"now": now})
        connection.execute(
            sa.text("INSERT INTO approvals (course, instructor, approver, approved_on, scope, created_at) "
                    "VALUES ('CS101', 'I', 'A', '2026-03-01', 'all', :now)"), {"now": now})
    engine.dispose()
    with Registry.open(registry_location) as registry:
        assert registry.approvals("CS101")[0]["valid_until"] == dt.date(2027, 3, 1)
        assert registry.course("CS101")["delete_source"] is False
        registry.require_approval("CS101", dt.date(2027, 3, 1))


def _fake_run(run_dir: Path, track_students: dict[int, str] | None = None) -> None:
    """Session outputs as the pipeline writes them: tracks 1 and 2 plus one track 3; ``session.json`` shaped
    like ``engagement.pipeline.session_record``'s, with its track -> student mapping."""
    run_dir.mkdir()
    consent = {"registry": None, "course": "CS101", "session": "week 1", "blur": "opted_out", "unknown": "blur",
               "opted_out_seats": [], "track_students": {str(t): s for t, s in (track_students or {}).items()}}
    session = {"input": {"path": "/videos/lecture.mp4", "sha256": "ab" * 32}, "config": {"consent": consent},
               "consent": {"course": "CS101", "people_excluded": 1, "status_counts": {"consented": 2}}}
    (run_dir / "session.json").write_text(json.dumps(session))
    pd.DataFrame({"track_id": [1, 1, 2, 3], "frame": [0, 1, 0, 0]}).to_parquet(run_dir / "tracks.parquet")
    pd.DataFrame({"track_id": [1, 2, 2], "state": ["attentive", "bored", "bored"]}).to_parquet(run_dir / "states.parquet")
    pd.DataFrame({"track_id": [1, 2], "score": [0.9, 0.4]}).to_csv(run_dir / "scores.csv", index=False)
    summary = {"students": [{"track_id": 1, "score": 0.9}, {"track_id": 2, "score": 0.4}], "excluded_people": 1}
    (run_dir / "summary.json").write_text(json.dumps(summary))
    for name in ("annotated.mp4", "report.html", "report.pdf"):
        (run_dir / name).write_bytes(b"media")


def test_withdraw_removes_every_row_about_the_student(registry_location: str | Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    _fake_run(run_dir)
    with Registry.open(registry_location) as registry:
        registry.set_consent("S1", "CS101", "consented", name="Ada Example")
        registry.set_consent("S2", "CS101", "consented")
        registry.record_session("CS101", dt.date.today(), run_dir, None, {1: "S1", 2: "S2"})
        (removal,) = withdraw_student(registry, "S2")
        assert registry.opted_out_students("CS101") == {"S2"}
        assert [s.track_students for s in registry.sessions()] == [{1: "S1"}]  # nor which track was theirs
        withdrawals = [e for e in registry.audit_log() if e["action"] == "consent_withdrawn"]
        assert withdraw_student(registry, "S2") == []  # nothing left to find
        assert [e for e in registry.audit_log() if e["action"] == "consent_withdrawn"] == withdrawals  # nor recorded again
        outputs.record_consent(registry, [ConsentRecord("S2", "CS101", "withdrawn", dt.date.today(), None, None, None)])
        assert [e for e in registry.audit_log() if e["action"] == "consent_withdrawn"] == withdrawals  # a roster row neither
        assert [r.status for r in registry.consent("CS101") if r.student == "S2"] == ["withdrawn"]
        audit = [e for e in registry.audit_log() if e["action"] == "outputs_scrubbed"]
    assert removal["rows_removed"] == {"tracks.parquet": 1, "states.parquet": 2, "scores.csv": 1, "summary.json": 1}
    assert list(pd.read_parquet(run_dir / "tracks.parquet")["track_id"]) == [1, 1, 3]
    assert 2 not in set(pd.read_parquet(run_dir / "states.parquet")["track_id"])
    assert list(pd.read_csv(run_dir / "scores.csv")["track_id"]) == [1]
    assert [s["track_id"] for s in json.loads((run_dir / "summary.json").read_text())["students"]] == [1]
    assert not any(run_dir.glob("annotated*")) and not any(run_dir.glob("report.*"))
    assert audit and audit[0]["details"]["files_deleted"] == ["annotated.mp4", "report.html", "report.pdf"]
    assert not list(run_dir.glob(".*"))  # no temp files left behind


def test_a_withdrawal_that_failed_half_way_deletes_the_media_when_run_again(registry_location: str | Path, tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The tables were scrubbed, then the disk failed: run again, the withdrawal still deletes the video and reports
    that show the student, although no row of theirs is left to remove."""
    run_dir = tmp_path / "run"
    _fake_run(run_dir)
    with Registry.open(registry_location) as registry:
        registry.set_consent("S2", "CS101", "consented")
        registry.record_session("CS101", dt.date.today(), run_dir, None, {1: "S1", 2: "S2"})
    for path in [*run_dir.glob("*.parquet"), *run_dir.glob("*.csv"), *run_dir.glob("*.json")]:
        outputs._scrub_table(path, "S2", {2}) if path.suffix != ".json" else outputs._scrub_json(path, "S2", {2})
    with Registry.open(registry_location) as registry:
        (removal,) = withdraw_student(registry, "S2")
    assert removal["rows_removed"] == {} and removal["files_deleted"] == ["annotated.mp4", "report.html", "report.pdf"]
    assert not any(run_dir.glob("annotated*")) and not any(run_dir.glob("report.*"))


def test_withdraw_recomputes_class_figures_without_the_student(registry_location: str | Path, tmp_path: Path) -> None:
    """Session score, timeline and state shares must not keep a withdrawn student's rows in their averages."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    attentive, bored = np.eye(len(STATES))[STATES.index("attentive")], np.eye(len(STATES))[STATES.index("bored")]
    states = pd.DataFrame(np.stack([attentive, attentive, bored, bored]), columns=list(PROBABILITY_COLUMNS))
    states = states.assign(frame=[0, 1, 0, 1], time_s=[0.0, 70.0, 0.0, 70.0], track_id=[1, 1, 2, 2],
                           state=["attentive", "attentive", "bored", "bored"])
    states.to_parquet(run_dir / "states.parquet")
    # S1's face spans 20 px of the 100 px frame, S2's 60 px: only S2 is framed too close
    faces = {f"{name}_{axis}": value for name, dx in (("nose", 0), ("left_eye", 1), ("right_eye", -1),
                                                     ("left_ear", 2), ("right_ear", -2))
             for axis, value in (("x", [40.0 + dx * 2, 40.0 + dx * 2, 40.0 + dx * 6, 40.0 + dx * 6]),
                                 ("y", [30.0] * 4), ("score", [0.9] * 4))}
    tracks = pd.DataFrame({"frame": [0, 1, 0, 1], "track_id": [1, 1, 2, 2], "x1": [30.0, 30.0, 10.0, 10.0],
                           "y1": [20.0, 20.0, 0.0, 0.0], "x2": [50.0, 50.0, 70.0, 70.0], "y2": [60.0, 60.0, 100.0, 100.0],
                           **faces})
    tracks.to_parquet(run_dir / "tracks.parquet")
    (run_dir / "session.json").write_text(json.dumps({"input": {"height": 100}}))
    _, summary = summarize(states, duration_s=80.0, people_excluded=0)
    summary["framing"] = framing_summary(tracks, states, 100)
    (run_dir / "summary.json").write_text(json.dumps(summary))
    with Registry.open(registry_location) as registry:
        registry.set_consent("S1", "CS101", "consented")
        registry.set_consent("S2", "CS101", "consented")
        registry.record_session("CS101", dt.date.today(), run_dir, None, {1: "S1", 2: "S2"})
        withdraw_student(registry, "S2")
    scrubbed = json.loads((run_dir / "summary.json").read_text())
    _, expected = summarize(states[states.track_id == 1], duration_s=80.0, people_excluded=0)
    assert scrubbed["session_score"] == expected["session_score"] != summary["session_score"]
    assert scrubbed["timeline"] == expected["timeline"]
    assert scrubbed["state_share"]["bored"] == 0.0 and scrubbed["state_share"]["attentive"] == 1.0
    only_s1 = framing_summary(tracks[tracks.track_id == 1], states[states.track_id == 1], 100)
    assert scrubbed["framing"] == only_s1 != summary["framing"]  # S2's head share no longer in the median


def test_withdraw_drops_class_figures_it_cannot_recompute(registry_location: str | Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    _fake_run(run_dir)  # its states table lacks the probability columns
    summary = json.loads((run_dir / "summary.json").read_text())
    (run_dir / "summary.json").write_text(json.dumps({**summary, "session_score": 65.0, "timeline": [], "state_share": {},
                                                      "framing": {"head_share": 0.912, "close": True}}))
    with Registry.open(registry_location) as registry:
        registry.set_consent("S2", "CS101", "consented")
        registry.record_session("CS101", dt.date.today(), run_dir, None, {2: "S2"})
        withdraw_student(registry, "S2")
    scrubbed = json.loads((run_dir / "summary.json").read_text())
    assert not {"session_score", "timeline", "state_share", "framing"} & set(scrubbed)
    assert scrubbed["excluded_people"] == 1  # the rest of the summary is kept


def _mentions(run_dir: Path, text: str) -> list[str]:
    """Files of the run (JSON, CSV, Parquet) that still hold ``text`` anywhere."""
    found = [p.name for p in run_dir.iterdir() if p.suffix in (".json", ".csv") and text in p.read_text()]
    for path in run_dir.glob("*.parquet"):
        table = pd.read_parquet(path)
        if table.astype(str).apply(lambda column: column.str.contains(text, regex=False)).any().any():
            found.append(path.name)
    return found


def test_withdraw_scrubs_every_file_of_the_run(registry_location: str | Path, tmp_path: Path) -> None:
    """No JSON, CSV or Parquet file of the run keeps the withdrawn student's ID, session.json included."""
    run_dir = tmp_path / "run"
    _fake_run(run_dir, {1: "STU-KEEP-1", 2: "STU-GONE-2"})
    pd.DataFrame({"track_id": [7, 8], "student_id": ["STU-GONE-2", "STU-KEEP-1"]}).to_parquet(run_dir / "mapping.parquet")
    summary = json.loads((run_dir / "summary.json").read_text())
    (run_dir / "summary.json").write_text(json.dumps({**summary, "note": {"students_seen": ["STU-GONE-2", "STU-KEEP-1"]}}))
    with Registry.open(registry_location) as registry:
        registry.set_consent("STU-KEEP-1", "CS101", "consented")
        registry.set_consent("STU-GONE-2", "CS101", "consented")
        registry.record_session("CS101", dt.date.today(), run_dir, None, {1: "STU-KEEP-1", 2: "STU-GONE-2"})
        assert set(_mentions(run_dir, "STU-GONE-2")) == {"session.json", "summary.json", "mapping.parquet"}
        (removal,) = withdraw_student(registry, "STU-GONE-2")
    assert _mentions(run_dir, "STU-GONE-2") == []
    assert set(_mentions(run_dir, "STU-KEEP-1")) == {"session.json", "summary.json", "mapping.parquet"}  # others stay
    session = json.loads((run_dir / "session.json").read_text())
    assert session["config"]["consent"]["track_students"] == {"1": "STU-KEEP-1"}
    assert session["input"]["sha256"] == "ab" * 32 and session["consent"]["people_excluded"] == 1
    assert removal["rows_removed"]["session.json"] == 1 and removal["rows_removed"]["mapping.parquet"] == 1
    assert not list(run_dir.glob(".*"))


def test_withdraw_deletes_files_of_the_run_it_cannot_read(registry_location: str | Path, tmp_path: Path) -> None:
    """A damaged table or a JSON file in another encoding may hold the student and cannot be cleaned: it is deleted
    (failing closed), the rest is cleaned, and the withdrawal completes instead of stopping half-way."""
    run_dir = tmp_path / "run"
    _fake_run(run_dir)
    (run_dir / "notes.json").write_bytes('{"note": "caf\xe9 S2"}'.encode("latin-1"))
    (run_dir / "extra.parquet").write_bytes(b"PAR1 not really a table")
    (run_dir / "extra.csv").write_bytes(b'"unclosed\n')
    with Registry.open(registry_location) as registry:
        registry.set_consent("S2", "CS101", "consented")
        registry.record_session("CS101", dt.date.today(), run_dir, None, {1: "S1", 2: "S2"})
        (removal,) = withdraw_student(registry, "S2")
        assert registry.sessions_holding("S2", {"CS101"}) == []  # finished: nothing left to find
    assert {"notes.json", "extra.parquet", "extra.csv"} <= set(removal["files_deleted"])
    assert not (run_dir / "notes.json").exists() and not (run_dir / "extra.parquet").exists()
    assert removal["rows_removed"]["states.parquet"] == 2 and removal["course"] == "CS101"
    assert 2 not in set(pd.read_parquet(run_dir / "states.parquet")["track_id"])


def test_withdraw_unknown_student(registry_location: str | Path) -> None:
    with Registry.open(registry_location) as registry, pytest.raises(UserError, match="not in the registry"):
        registry.withdraw("nobody")


def test_purge_older_than_zero_removes_todays_session_and_every_file(registry_location: str | Path, tmp_path: Path) -> None:
    today, kept = tmp_path / "today", tmp_path / "kept"
    _fake_run(today)
    _fake_run(kept)
    (kept / "notes.txt").write_text("not an output of the run")
    with Registry.open(registry_location) as registry:
        registry.record_session("CS101", dt.date.today(), today, None, {})
        registry.record_session("CS101", dt.date.today(), kept, None, {})
        purged = purge_sessions(registry, 0)
        assert registry.sessions() == []
    assert [p["folder_removed"] for p in purged] == [True, False]
    assert "session.json" in purged[0]["files_deleted"] and not today.exists()
    assert [p.name for p in kept.iterdir()] == ["notes.txt"]  # only what the run did not write survives


def test_a_session_id_is_never_given_twice(registry_location: str | Path, tmp_path: Path) -> None:
    """After a purge the next session gets a new id, so the audit log's entries about a purged session never read as
    if about a later one (SQLite would give the largest id in the table plus one)."""
    with Registry.open(registry_location) as registry:
        first = registry.record_session("CS101", dt.date.today(), tmp_path / "a", None, {})
        second = registry.record_session("CS101", dt.date.today(), tmp_path / "b", None, {})
        registry.forget_session(second, {})
        registry.forget_session(first, {})
        third = registry.record_session("CS101", dt.date.today(), tmp_path / "c", None, {})
        assert third > second > first
        recorded = [entry["details"]["session"] for entry in registry.audit_log() if entry["action"] == "session_recorded"]
        assert recorded == [first, second, third]


def test_purge_deletes_only_old_sessions(registry_location: str | Path, tmp_path: Path) -> None:
    old, recent = tmp_path / "old", tmp_path / "recent"
    _fake_run(old)
    _fake_run(recent)
    with Registry.open(registry_location) as registry:
        registry.record_session("CS101", dt.date.today() - dt.timedelta(days=40), old, None, {})
        registry.record_session("CS101", dt.date.today() - dt.timedelta(days=5), recent, None, {})
        (purged,) = purge_sessions(registry, 30)
        assert [s.run_dir for s in registry.sessions()] == [recent.resolve()]
        assert any(e["action"] == "session_purged" for e in registry.audit_log())
    assert purged["folder_removed"] and not old.exists()
    assert (recent / "tracks.parquet").exists()


def live_recording(folder: Path, days_ago: int) -> Path:
    """An (empty) live recording named as the web app names one started ``days_ago`` days ago."""
    started = dt.datetime.combine(outputs.utc_today() - dt.timedelta(days=days_ago), dt.time(23, 59, 59))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / started.strftime(LIVE_RECORDING_NAME)
    path.write_bytes(b"")
    return path


def test_purge_deletes_live_recordings_by_the_day_in_their_name(registry_location: str | Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(outputs, "utc_today", lambda: dt.date(2026, 12, 4))  # no new day between naming and purging
    folder = tmp_path / "live-recordings"
    old, due, young = (live_recording(folder, days) for days in (400, 30, 29))
    for name in ("live-yesterday.mp4", "lecture.mp4", "live-20200101-000000.txt"):  # not the app's recordings
        (folder / name).write_bytes(b"")
    (folder / "live-20200102-000000.mp4").mkdir()  # the app's name, but not a file
    killed = folder / f".live-20200103-000000.mp4.partial-999999999@{socket.gethostname()}.mp4"  # its process died
    recording = folder / f".live-20200104-000000.mp4.partial-{os.getpid()}@{socket.gethostname()}.mp4"  # still running
    elsewhere = folder / ".live-20200105-000000.mp4.partial-999999999@another-machine.mp4"  # not ours to judge
    for partial in (killed, recording, elsewhere):
        partial.write_bytes(b"")
    with Registry.open(registry_location) as registry:
        assert purge_recordings(registry, tmp_path / "nothing-here", 0) == []
        assert purge_recordings(registry, folder, 30) == [killed.name, old.name, due.name]
        logged = [e["details"] for e in registry.audit_log() if e["action"] == "live_recording_purged"]
    assert logged == [{"file": killed.name, "partial": True}, {"file": old.name}, {"file": due.name}]
    assert sorted(p.name for p in folder.iterdir()) == sorted([
        young.name, "live-yesterday.mp4", "lecture.mp4", "live-20200101-000000.txt", "live-20200102-000000.mp4",
        recording.name, elsewhere.name])
    with Registry.open(registry_location) as registry:  # older than the calendar: nothing, and no overflow
        assert purge_recordings(registry, folder, 10**12) == []
        assert purge_sessions(registry, 10**12) == []


def test_a_new_sqlite_registry_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    import stat

    path = tmp_path / "private" / "registry.sqlite"
    with Registry.open(path) as registry:
        registry.add_course("CS101", "Intro")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700


@pytest.fixture
def local_date_not_utc() -> Iterator[dt.date]:
    """A time zone in which today's local date is not today's UTC date (12 h west of UTC before 11:00 UTC, 14 h
    east after), as for an evening lecture in America or a morning one in the Pacific; yields the local date."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = "Etc/GMT+12" if dt.datetime.now(dt.timezone.utc).hour < 11 else "Etc/GMT-14"
    time.tzset()
    try:
        assert dt.date.today() != dt.datetime.now(dt.timezone.utc).date()
        yield dt.date.today()
    finally:
        if before is None:
            os.environ.pop("TZ")
        else:
            os.environ["TZ"] = before
        time.tzset()


def test_a_session_is_dated_on_the_local_day_that_the_purge_counts(tmp_path: Path, local_date_not_utc: dt.date) -> None:
    """Dated by the UTC day, tonight's run escaped ``purge --older-than 0`` west of UTC (and a period's last day was
    cut short east of it)."""
    from engagement.config import load_pipeline
    from engagement.pipeline.record import register_session

    run_dir, registry_file = tmp_path / "run", tmp_path / "registry.sqlite"
    _fake_run(run_dir)
    config = load_pipeline("lecture", ["consent.course=CS101", f"consent.registry={registry_file}"])
    session = SimpleNamespace(input=SimpleNamespace(sha256=None, path=str(tmp_path / "lecture.mp4")),
                              consent=SimpleNamespace(track_students={}))
    with Registry.open(registry_file) as registry:
        registry.add_course("CS101", "Intro")
    register_session(config, run_dir, session, dt.datetime.now(dt.timezone.utc))
    with Registry.open(registry_file) as registry:
        assert [s.held_on for s in registry.sessions()] == [local_date_not_utc]
        assert len(purge_sessions(registry, 0)) == 1 and not run_dir.exists()


def test_an_older_or_undated_consent_does_not_undo_an_opt_out_or_a_withdrawal(registry_location: str | Path) -> None:
    """Re-importing September's roster after a December withdrawal made the student consenting (and analysed) again."""
    september, october = dt.date(2026, 9, 1), dt.date(2026, 10, 1)
    with Registry.open(registry_location) as registry:
        registry.set_consent("S1", "CS101", "consented", september, name="Ada Example")
        registry.set_consent("S2", "CS101", "consented", september)
        registry.withdraw("S1")
        registry.set_consent("S2", "CS101", "opted_out", october)
        stale = [ConsentRecord("S1", "CS101", "consented", september, name="Ada Example"),
                 ConsentRecord("S2", "CS101", "consented", dt.date.today(), date_given=False)]
        refused = registry.import_records(stale)
        assert [record for record, _ in refused] == stale
        assert "S1 in CS101 is withdrawn since" in refused[0][1] and "dated 2026-09-01, before that" in refused[0][1]
        assert "S2 in CS101 is opted out since 2026-10-01: a new consent needs the date its form was signed" in refused[1][1]
        with pytest.raises(UserError, match="is opted out since 2026-10-01"):
            registry.set_consent("S2", "CS101", "consented", october)  # signed the day of the opt-out, not after
        assert registry.opted_out_students("CS101") == {"S1", "S2"}
        assert {r.student: r.name for r in registry.consent("CS101")}["S1"] is None  # the withdrawal's erasure holds
        registry.set_consent("S2", "CS101", "consented", october + dt.timedelta(days=1))  # a new form, signed after
        assert registry.consented_students("CS101") == {"S2"}


def test_a_withdrawal_recorded_by_import_erases_the_name_and_cleans_the_sessions(registry_location: str | Path,
                                                                                tmp_path: Path) -> None:
    """``consent set ... withdrawn`` or a roster's withdrawn row kept the name and every row of the recorded sessions."""
    run_dir = tmp_path / "run"
    _fake_run(run_dir, {2: "S2"})
    with Registry.open(registry_location) as registry:
        registry.set_consent("S2", "CS101", "consented", name="Bo Example")
        registry.record_session("CS101", dt.date.today(), run_dir, None, {1: "S1", 2: "S2"})
        refused, (removal,) = outputs.record_consent(
            registry, [ConsentRecord("S2", "CS101", "withdrawn", dt.date.today(), name="Bo Example")])
        assert refused == [] and registry.opted_out_students("CS101") == {"S2"}
        assert [r.name for r in registry.consent("CS101")] == [None]
    assert removal["rows_removed"]["states.parquet"] == 2 and not any(run_dir.glob("annotated*"))
    assert _mentions(run_dir, "S2") == []
