"""The consent registry: who agreed to be analysed, in which course, and every change made to that.

A real database (SQLite by default, any SQLAlchemy URL such as PostgreSQL by configuration) whose
schema is created and upgraded by the Alembic migrations shipped in ``engagement/consent/migrations``
every time a registry is opened. Each change also appends a row to ``audit_log``, which the database
itself refuses to update or delete (triggers), so the log is a trustworthy history.

The current status of a student in a course is their latest consent record; earlier records stay as
history. Anyone without a record counts as not consented.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from engagement.consent.status import CONSENTED, NOT_ANALYSED, STATUSES, WITHDRAWN, Status
from engagement.errors import UserError

REGISTRY_ENV = "ENGAGEMENT_REGISTRY"

metadata = sa.MetaData()
courses = sa.Table(
    "courses", metadata,
    sa.Column("code", sa.String(64), primary_key=True),
    sa.Column("title", sa.String(200)),
    sa.Column("retention_days", sa.Integer),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("delete_source", sa.Boolean, nullable=False, server_default=sa.false()),
)
approvals = sa.Table(
    "approvals", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("course", sa.String(64), sa.ForeignKey("courses.code"), nullable=False),
    sa.Column("instructor", sa.String(200), nullable=False),
    sa.Column("approver", sa.String(200), nullable=False),
    sa.Column("approved_on", sa.Date, nullable=False),
    sa.Column("scope", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("valid_until", sa.Date, nullable=False),
)
students = sa.Table(
    "students", metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(200)),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)
consent_records = sa.Table(
    "consent_records", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("student", sa.String(64), sa.ForeignKey("students.id"), nullable=False),
    sa.Column("course", sa.String(64), sa.ForeignKey("courses.code"), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("recorded_on", sa.Date, nullable=False),
    sa.Column("form_version", sa.String(32)),
    sa.Column("seat", sa.String(64)),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)
sessions = sa.Table(
    "sessions", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("course", sa.String(64), sa.ForeignKey("courses.code"), nullable=False),
    sa.Column("held_on", sa.Date, nullable=False),
    sa.Column("run_dir", sa.Text, nullable=False),
    sa.Column("video_sha256", sa.String(64)),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)
session_tracks = sa.Table(
    "session_tracks", metadata,
    sa.Column("session_id", sa.Integer, sa.ForeignKey("sessions.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("track_id", sa.Integer, primary_key=True),
    sa.Column("student", sa.String(64), sa.ForeignKey("students.id"), nullable=False),
)
audit_log = sa.Table(
    "audit_log", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("subject", sa.String(200)),
    sa.Column("details", sa.Text, nullable=False),
)


@dataclass(frozen=True)
class ConsentRecord:
    """A student's current consent status in one course."""

    student: str
    course: str
    status: str
    recorded_on: dt.date
    form_version: str | None = None
    seat: str | None = None
    name: str | None = None


@dataclass(frozen=True)
class Session:
    """An analysed recording whose outputs live in ``run_dir``."""

    id: int
    course: str
    held_on: dt.date
    run_dir: Path
    video_sha256: str | None
    track_students: dict[int, str]


def default_registry_path() -> Path:
    """``$XDG_DATA_HOME/classroom-engagement/registry.sqlite`` (``~/.local/share/...``)."""
    data_home = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return data_home / "classroom-engagement" / "registry.sqlite"


def registry_url(url_or_path: str | os.PathLike | None = None) -> str:
    """A SQLAlchemy URL from a URL, a SQLite file path, ``$ENGAGEMENT_REGISTRY`` or the per-user default."""
    value = str(url_or_path) if url_or_path else os.environ.get(REGISTRY_ENV) or str(default_registry_path())
    if "://" in value:
        return value
    path = Path(value).expanduser().resolve()
    if path.is_dir():
        raise UserError(f"registry {path} is a folder; give a file such as {path / 'registry.sqlite'}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"cannot create the registry folder {path.parent}: {error.strerror}") from None
    return f"sqlite:///{path}"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def one_year_after(day: dt.date) -> dt.date:
    """The same calendar day a year later (28 February for 29 February): an approval's default end."""
    try:
        return day.replace(year=day.year + 1)
    except ValueError:
        return day.replace(year=day.year + 1, day=28)


def add_course_hint(code: str) -> str:
    """The command that adds ``code`` to the registry, for error messages."""
    return f"engagement consent course add {code} --title TITLE"


def add_approval_hint(code: str) -> str:
    """The command that records a signed faculty approval of ``code``, for error messages."""
    return (f"engagement consent approval --course {code} --instructor NAME --approver NAME --scope TEXT "
            "--approved-on YYYY-MM-DD [--valid-until YYYY-MM-DD]")


class Registry:
    """Open with ``Registry.open(url_or_path)``; use as a context manager so the engine is disposed."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    def open(cls, url_or_path: str | os.PathLike | None = None) -> "Registry":
        """Connect and bring the schema up to date; a bad URL or a file that is no database is a UserError."""
        url = registry_url(url_or_path)
        try:
            engine = sa.create_engine(url)
        except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ValueError) as error:
            raise UserError(f"bad registry URL {url!r}: {error}") from None
        if engine.dialect.name == "sqlite":
            sa.event.listen(engine, "connect", _enable_sqlite_foreign_keys)
        registry = cls(engine)
        registry._migrate()
        return registry

    def _migrate(self) -> None:
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
        try:
            with self.engine.begin() as connection:
                config.attributes["connection"] = connection
                command.upgrade(config, "head")
        except sa.exc.SQLAlchemyError as error:
            self.engine.dispose()
            reason = str(getattr(error, "orig", error)).splitlines()[0]
            raise UserError(f"cannot open registry {self.engine.url!r}: {reason}") from None

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> "Registry":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _transaction(self) -> Any:
        return self.engine.begin()

    @staticmethod
    def _audit(connection: Connection, action: str, subject: str | None, **details: Any) -> None:
        connection.execute(
            audit_log.insert().values(at=_now(), action=action, subject=subject, details=json.dumps(details, default=str, sort_keys=True))
        )

    # Courses and approvals -------------------------------------------------------------------------

    def add_course(
        self, code: str, title: str | None = None, retention_days: int | None = None, delete_source: bool | None = None
    ) -> None:
        """Create a course, or update the settings given (``None`` keeps the current one) when it exists."""
        if retention_days is not None and retention_days < 1:
            raise UserError(f"retention must be at least 1 day, got {retention_days}")
        with self._transaction() as connection:
            self._upsert_course(connection, code, title, retention_days, delete_source)

    def _upsert_course(
        self, connection: Connection, code: str, title: str | None = None, retention_days: int | None = None,
        delete_source: bool | None = None,
    ) -> None:
        existing = connection.execute(sa.select(courses).where(courses.c.code == code)).first()
        settings = {"title": title, "retention_days": retention_days, "delete_source": delete_source}
        if existing is None:
            connection.execute(courses.insert().values(code=code, created_at=_now(), **{k: v for k, v in settings.items() if v is not None}))
            self._audit(connection, "course_added", code, **settings)
            return
        changes = {k: v for k, v in settings.items() if v is not None and v != existing._mapping[k]}
        if changes:
            connection.execute(courses.update().where(courses.c.code == code).values(**changes))
            self._audit(connection, "course_changed", code, **changes)

    def course(self, code: str) -> dict[str, Any]:
        """The course row; an unknown course is a UserError saying how to add it."""
        with self.engine.connect() as connection:
            return self._course(connection, code)

    @staticmethod
    def _course(connection: Connection, code: str) -> dict[str, Any]:
        row = connection.execute(sa.select(courses).where(courses.c.code == code)).first()
        if row is None:
            known = connection.execute(sa.select(courses.c.code).order_by(courses.c.code)).scalars().all()
            raise UserError(
                f"course {code!r} is not in the registry (known: {', '.join(known) or 'none'}); add it with: {add_course_hint(code)}"
            )
        return dict(row._mapping)

    def courses(self) -> list[dict[str, Any]]:
        """Every course row, by code."""
        with self.engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(sa.select(courses).order_by(courses.c.code))]

    def add_approval(
        self, course: str, instructor: str, approver: str, approved_on: dt.date, scope: str, valid_until: dt.date | None = None
    ) -> int:
        """Record a faculty approval of analysing a registered course from ``approved_on`` to ``valid_until``
        (default: one year later); returns its id. The audit log gets its id and dates, not the people's names."""
        valid_until = valid_until or one_year_after(approved_on)
        if valid_until < approved_on:
            raise UserError(f"an approval cannot end ({valid_until}) before it was given ({approved_on})")
        with self._transaction() as connection:
            self._course(connection, course)
            approval_id = connection.execute(
                approvals.insert().values(
                    course=course, instructor=instructor, approver=approver, approved_on=approved_on, valid_until=valid_until,
                    scope=scope, created_at=_now(),
                )
            ).inserted_primary_key[0]
            self._audit(connection, "approval_added", course, approval=approval_id, approved_on=approved_on, valid_until=valid_until)
        return int(approval_id)

    def require_approval(self, course: str, on: dt.date) -> dict[str, Any]:
        """The approval of ``course`` that covers the date ``on``; a UserError naming the course and the command
        that records an approval when none does (an unknown course is a UserError too)."""
        self.course(course)
        recorded = self.approvals(course)
        covering = [a for a in recorded if a["approved_on"] <= on <= a["valid_until"]]
        if covering:
            return covering[-1]
        latest = max(recorded, key=lambda a: a["valid_until"], default=None)
        why = f"its latest approval ran {latest['approved_on']} to {latest['valid_until']}" if latest else "it has no approval"
        raise UserError(f"course {course!r} has no faculty approval covering {on} ({why}); record one with: {add_approval_hint(course)}")

    def approvals(self, course: str) -> list[dict[str, Any]]:
        """Every approval recorded for ``course``, oldest first."""
        with self.engine.connect() as connection:
            rows = connection.execute(sa.select(approvals).where(approvals.c.course == course).order_by(approvals.c.id))
            return [dict(row._mapping) for row in rows]

    # Students and consent --------------------------------------------------------------------------

    def set_consent(
        self,
        student: str,
        course: str,
        status: Status,
        recorded_on: dt.date | None = None,
        form_version: str | None = None,
        seat: str | None = None,
        name: str | None = None,
    ) -> None:
        """Record a student's consent status in a course (creating student and course as needed)."""
        self.import_records([ConsentRecord(student, course, status, recorded_on or dt.date.today(), form_version, seat, name)])

    def import_records(self, records: list[ConsentRecord]) -> None:
        """Write many consent records in one transaction: all of them or none."""
        for record in records:
            if record.status not in STATUSES:
                raise UserError(f"consent status must be one of {', '.join(STATUSES)}, got {record.status!r}")
        with self._transaction() as connection:
            for record in records:
                self._upsert_course(connection, record.course)
                self._upsert_student(connection, record.student, record.name)
                connection.execute(
                    consent_records.insert().values(
                        student=record.student, course=record.course, status=record.status, recorded_on=record.recorded_on,
                        form_version=record.form_version, seat=record.seat, created_at=_now(),
                    )
                )
                self._audit(
                    connection, "consent_" + record.status, record.student, course=record.course,
                    recorded_on=record.recorded_on, form_version=record.form_version, seat=record.seat,
                )

    def _upsert_student(self, connection: Connection, student: str, name: str | None) -> None:
        existing = connection.execute(sa.select(students).where(students.c.id == student)).first()
        if existing is None:
            connection.execute(students.insert().values(id=student, name=name, created_at=_now()))
            self._audit(connection, "student_added", student, named=name is not None)
        elif name is not None and name != existing.name:
            connection.execute(students.update().where(students.c.id == student).values(name=name))
            self._audit(connection, "student_renamed", student)

    def consent(self, course: str | None = None) -> list[ConsentRecord]:
        """Current status of every student (latest record per student and course), sorted."""
        latest = (
            sa.select(sa.func.max(consent_records.c.id))
            .group_by(consent_records.c.student, consent_records.c.course)
            .scalar_subquery()
        )
        query = (
            sa.select(consent_records, students.c.name)
            .join(students, students.c.id == consent_records.c.student)
            .where(consent_records.c.id.in_(latest))
            .order_by(consent_records.c.course, consent_records.c.student)
        )
        if course is not None:
            query = query.where(consent_records.c.course == course)
        with self.engine.connect() as connection:
            return [
                ConsentRecord(r.student, r.course, r.status, r.recorded_on, r.form_version, r.seat, r.name)
                for r in connection.execute(query)
            ]

    def consented_students(self, course: str) -> set[str]:
        return {r.student for r in self.consent(course) if r.status == CONSENTED}

    def opted_out_students(self, course: str) -> set[str]:
        """Students whose current status in ``course`` is opted out or withdrawn."""
        return {r.student for r in self.consent(course) if r.status in NOT_ANALYSED}

    def withdraw(self, student: str, course: str | None = None) -> list[Session]:
        """Mark a student withdrawn (in one course or all of theirs), erase their name; returns the
        sessions whose outputs still hold rows about them (see ``engagement.consent.outputs``)."""
        with self._transaction() as connection:
            if connection.execute(sa.select(students.c.id).where(students.c.id == student)).first() is None:
                raise UserError(f"student {student!r} is not in the registry")
            enrolled = set(
                connection.execute(sa.select(consent_records.c.course).where(consent_records.c.student == student)).scalars()
            )
            if course is not None:
                enrolled &= {course}
                if not enrolled:
                    raise UserError(f"student {student!r} has no consent record in course {course!r}")
            for code in sorted(enrolled):
                connection.execute(
                    consent_records.insert().values(
                        student=student, course=code, status=WITHDRAWN, recorded_on=dt.date.today(), created_at=_now()
                    )
                )
                self._audit(connection, "consent_withdrawn", student, course=code)
            connection.execute(students.update().where(students.c.id == student).values(name=None))
        return [s for s in self.sessions() if student in s.track_students.values() and s.course in enrolled]

    # Sessions ----------------------------------------------------------------------------------------

    def record_session(
        self, course: str, date: dt.date, run_dir: str | os.PathLike, video_sha256: str | None, track_students: dict[int, str]
    ) -> int:
        """Remember an analysed recording and which track was which student; returns the session id."""
        with self._transaction() as connection:
            self._upsert_course(connection, course)
            for student in set(track_students.values()):
                self._upsert_student(connection, student, None)
            session_id = int(
                connection.execute(
                    sessions.insert().values(
                        course=course, held_on=date, run_dir=str(Path(run_dir).resolve()), video_sha256=video_sha256, created_at=_now()
                    )
                ).inserted_primary_key[0]
            )
            if track_students:
                connection.execute(
                    session_tracks.insert(),
                    [{"session_id": session_id, "track_id": int(t), "student": s} for t, s in track_students.items()],
                )
            self._audit(connection, "session_recorded", course, session=session_id, run_dir=str(run_dir), tracks=len(track_students))
        return session_id

    def sessions(self, course: str | None = None, held_on_or_before: dt.date | None = None) -> list[Session]:
        """Recorded sessions, oldest first, optionally of one course and held on or before a date."""
        query = sa.select(sessions).order_by(sessions.c.id)
        if course is not None:
            query = query.where(sessions.c.course == course)
        if held_on_or_before is not None:
            query = query.where(sessions.c.held_on <= held_on_or_before)
        with self.engine.connect() as connection:
            rows = connection.execute(query).all()
            tracks = connection.execute(sa.select(session_tracks)).all()
        by_session: dict[int, dict[int, str]] = {}
        for track in tracks:
            by_session.setdefault(track.session_id, {})[track.track_id] = track.student
        return [
            Session(r.id, r.course, r.held_on, Path(r.run_dir), r.video_sha256, by_session.get(r.id, {}))
            for r in rows
        ]

    def forget_session(self, session_id: int, removed: dict[str, Any]) -> None:
        """Delete a purged session and its track mapping; ``removed`` (what was deleted) goes to the audit log."""
        with self._transaction() as connection:
            connection.execute(session_tracks.delete().where(session_tracks.c.session_id == session_id))
            connection.execute(sessions.delete().where(sessions.c.id == session_id))
            self._audit(connection, "session_purged", str(session_id), **removed)

    def log(self, action: str, subject: str | None, **details: Any) -> None:
        """Append an entry to the audit log (used for changes made outside the database, to run dirs)."""
        with self._transaction() as connection:
            self._audit(connection, action, subject, **details)

    def audit_log(self) -> Iterator[dict[str, Any]]:
        """Every audit entry, oldest first, with ``details`` decoded."""
        with self.engine.connect() as connection:
            rows = connection.execute(sa.select(audit_log).order_by(audit_log.c.id)).all()
        for row in rows:
            yield {**row._mapping, "details": json.loads(row.details)}


def _enable_sqlite_foreign_keys(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
