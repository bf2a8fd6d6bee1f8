"""Registry faults, tried on real databases (a SQLite file and, with ``$ENGAGEMENT_TEST_POSTGRES``, a fresh PostgreSQL
database) and mostly through the real CLI: each ends with one line and exit code 2, shows no SQL and no value, and
leaves the registry as it was."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pandas as pd
import pytest
import sqlalchemy as sa

from engagement.cli import main
from engagement.config import PipelineConfig
from engagement.consent.outputs import purge_sessions, withdraw_student
from engagement.consent.registry import Registry, registry_url
from engagement.errors import UserError
from engagement.pipeline.record import register_session
from engagement.session import ConsentRecord, SessionRecord

NAME = "Grace Hopper"  # personal data that no message, traceback or audit entry may hold


def _engine(location: str | Path) -> sa.Engine:
    return sa.create_engine(registry_url(location))


def _execute(location: str | Path, *statements: str) -> None:
    engine = _engine(location)
    with engine.begin() as connection:
        for statement in statements:
            connection.exec_driver_sql(statement)
    engine.dispose()


def _tables(location: str | Path) -> set[str]:
    engine = _engine(location)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def _corrupt(path: Path, tables: tuple[str, ...]) -> None:
    """Overwrite the first page of each of ``tables`` (what a bad disk sector does): the file header, the schema and
    the other tables survive, so the registry opens and the first statement on those tables fails."""
    import sqlite3

    with contextlib.closing(sqlite3.connect(path)) as connection:
        pages = [connection.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (table,)).fetchone()[0] for table in tables]
    data = bytearray(path.read_bytes())
    for page in pages:
        data[(page - 1) * 4096: (page - 1) * 4096 + 16] = b"\xff" * 16
    path.write_bytes(bytes(data))


def test_corrupt_sqlite_registry_is_one_line_without_sql_or_values(tmp_path: Path, engagement: Callable, one_line_error: Callable) -> None:
    path = tmp_path / "registry.sqlite"
    with Registry.open(path) as registry:
        for i in range(50):
            registry.set_consent(f"S{i}", "CS101", "consented", name=f"{NAME} {i}")
    _corrupt(path, ("students", "consent_records"))
    for args in (["consent", "list"], ["consent", "set", "S77", "consented", "--course", "CS101", "--name", NAME]):
        line = one_line_error(engagement(*args, "--registry", path))
        assert "malformed" in line and NAME not in line and "SELECT" not in line and "INSERT" not in line
    verbose = engagement("-v", "consent", "set", "S78", "consented", "--course", "CS101", "--name", NAME, "--registry", path)
    assert verbose.returncode != 0 and "Traceback" in verbose.stderr  # -v shows the traceback...
    assert NAME not in verbose.stderr and "parameters hidden" in verbose.stderr  # ...without the statement's values


def test_file_that_is_no_database_is_one_line(tmp_path: Path, engagement: Callable, one_line_error: Callable) -> None:
    path = tmp_path / "registry.sqlite"
    path.write_bytes(os.urandom(8192))
    line = one_line_error(engagement("consent", "list", "--registry", path))
    assert "cannot open registry" in line and "not a database" in line


def test_a_failed_migration_leaves_the_registry_as_it_was(
    registry_location: str | Path, engagement: Callable, one_line_error: Callable
) -> None:
    """A foreign ``students`` table makes the first migration fail after it created two tables: both are rolled back,
    no version is recorded, and the next open meets the same registry and the same one line."""
    _execute(registry_location, "CREATE TABLE students (matrikel INTEGER, note TEXT)", "INSERT INTO students VALUES (1, 'kept')")
    for _ in range(2):
        line = one_line_error(engagement("consent", "course", "list", "--registry", registry_location))
        assert "schema 0001 (left as it was before)" in line and "students" in line
        assert _tables(registry_location) == {"students"}
    engine = _engine(registry_location)
    with engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT note FROM students").scalars().all() == ["kept"]
    engine.dispose()


def test_unknown_schema_revision_is_one_line(registry_location: str | Path, engagement: Callable, one_line_error: Callable) -> None:
    Registry.open(registry_location).close()
    _execute(registry_location, "UPDATE alembic_version SET version_num = '9999'")
    line = one_line_error(engagement("consent", "list", "--registry", registry_location))
    assert "schema revision '9999'" in line and "does not know" in line


def test_ten_parallel_first_opens_and_writers_all_succeed(registry_location: str | Path) -> None:
    """Ten processes create the same new registry and the same course at once: the migration runs once, the
    writers take turns."""
    processes = [
        subprocess.Popen([sys.executable, "-m", "engagement.cli", "consent", "set", f"S{i}", "consented", "--course", "CS101",
                          "--registry", str(registry_location)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(10)
    ]
    errors = [process.communicate(timeout=300)[1] for process in processes]
    assert [process.returncode for process in processes] == [0] * 10, errors
    with Registry.open(registry_location) as registry:
        assert {record.student for record in registry.consent("CS101")} == {f"S{i}" for i in range(10)}


@pytest.mark.parametrize("args, message", [
    (["consent", "approval", "--course", "CS101", "--instructor", NAME * 20, "--approver", "Dean", "--scope", "all"],
     "approvals.instructor: longer than 200 characters"),
    (["consent", "course", "add", "CS102", "--title", "T" * 201], "courses.title: longer than 200 characters"),
])
def test_column_overflow_is_refused_before_the_database(
    registry_location: str | Path, engagement: Callable, one_line_error: Callable, args: list[str], message: str
) -> None:
    with Registry.open(registry_location) as registry:
        registry.add_course("CS101", "Intro")
        before = len(list(registry.audit_log()))
    line = one_line_error(engagement(*args, "--registry", registry_location))
    assert line.endswith(message) and NAME not in line and "TTT" not in line
    with Registry.open(registry_location) as registry:
        assert registry.approvals("CS101") == [] and [c["code"] for c in registry.courses()] == ["CS101"]
        assert len(list(registry.audit_log())) == before


def test_column_overflow_through_the_api(registry_location: str | Path) -> None:
    """The library checks limits too: callers other than the CLI get the same one line."""
    with Registry.open(registry_location) as registry:
        with pytest.raises(UserError, match=r"^students\.id: longer than 64 characters$"):
            registry.set_consent("S" * 100, "CS101", "consented")
        assert registry.consent() == []


def test_postgresql_without_its_driver_is_an_install_hint(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if the [postgres] extra were not installed
    assert main(["consent", "list", "--registry", "postgresql://teacher:secret@db.example/consent"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and 'pip install "classroom-engagement[postgres]"' in error and "secret" not in error


def _run_folder(path: Path) -> Path:
    """A run folder as the pipeline leaves it: tracks 1, 2 and 3, a session record, a rendered video."""
    path.mkdir(parents=True)
    pd.DataFrame({"track_id": [1, 2, 2, 3], "frame": [0, 0, 1, 0]}).to_parquet(path / "tracks.parquet")
    consent = {"track_students": {"1": "S1", "2": "S2", "3": "S3"}}
    (path / "session.json").write_text(json.dumps({"config": {"consent": consent}}))
    (path / "annotated.mp4").write_bytes(b"media")
    return path


def test_audit_log_holds_no_names_and_no_paths(registry_location: str | Path, tmp_path: Path) -> None:
    """Every audit entry of a course's life (approval, consent, session, withdrawal, purge) holds IDs, dates and
    counts: not the instructor's, approver's or student's name, nor the run folder (its path may name a user)."""
    run_dir = _run_folder(tmp_path / "Grace-Hopper-home" / "run")
    with Registry.open(registry_location) as registry:
        registry.add_course("CS101", "Intro")
        registry.add_approval("CS101", NAME, "Dean Placeholder", dt.date.today(), "all lectures")
        registry.set_consent("S1", "CS101", "consented", name=NAME)
        registry.set_consent("S1", "CS101", "consented", name="Ada Example")
        registry.set_consent("S2", "CS101", "consented", name="Alan Example")
        registry.record_session("CS101", dt.date.today(), run_dir, None, {1: "S1", 2: "S2"})
        withdraw_student(registry, "S2")
        purge_sessions(registry, 0)
        audit = json.dumps(list(registry.audit_log()), default=str)
    for secret in (NAME, "Dean Placeholder", "Ada Example", "Alan Example", "Grace-Hopper-home", str(tmp_path)):
        assert secret not in audit
    assert all(action in audit for action in ("approval_added", "outputs_scrubbed", "session_purged"))


def test_a_withdrawal_during_processing_is_applied_before_the_session_is_registered(registry_location: str | Path, tmp_path: Path) -> None:
    """S2 withdraws while the run is processed (after its consent was read, before it is registered): the
    registration removes S2's rows and the rendered video. S3 opted out before the run started: the pipeline
    already kept them out, so registration leaves the run alone for them."""
    run_dir = _run_folder(tmp_path / "run")
    with Registry.open(registry_location) as registry:
        registry.set_consent("S1", "CS101", "consented")
        registry.set_consent("S2", "CS101", "consented")
        registry.set_consent("S3", "CS101", "opted_out")
    started = dt.datetime.now(dt.timezone.utc)
    with Registry.open(registry_location) as registry:
        assert withdraw_student(registry, "S2") == []  # the session is not registered yet: nothing to clean
    config = PipelineConfig()
    config.consent.registry, config.consent.course = str(registry_location), "CS101"
    register_session(config, run_dir, SessionRecord(consent=ConsentRecord(track_students={1: "S1", 2: "S2", 3: "S3"})), started)
    assert sorted(pd.read_parquet(run_dir / "tracks.parquet")["track_id"]) == [1, 3]
    assert "S2" not in (run_dir / "session.json").read_text() and not (run_dir / "annotated.mp4").exists()
    with Registry.open(registry_location) as registry:
        (session,) = registry.sessions()
        scrubbed = [e for e in registry.audit_log() if e["action"] == "outputs_scrubbed"]
    assert [(e["subject"], e["details"]["session"]) for e in scrubbed] == [("S2", session.id)]


def test_a_run_the_registry_cannot_record_is_deleted(tmp_path: Path) -> None:
    """Withdrawal and purge find runs through the registry: a run it could not record would hold students' analytics
    beyond their reach, so it is deleted and the one-line error says so."""
    path = tmp_path / "registry.sqlite"
    path.write_bytes(os.urandom(8192))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "tracks.parquet").write_bytes(b"analytics")
    config = PipelineConfig()
    config.consent.registry, config.consent.course = str(path), "CS101"
    with pytest.raises(UserError, match=f"run {run_dir} deleted: the registry could not record it") as raised:
        register_session(config, run_dir, SessionRecord(consent=ConsentRecord(track_students={1: "S1"})), dt.datetime.now(dt.timezone.utc))
    assert not run_dir.exists() and len(str(raised.value).splitlines()) == 1
