"""The consent registry: who agreed to be analysed, in which course, and every change made to that.

A real database (SQLite by default, any SQLAlchemy URL such as PostgreSQL by configuration) whose
schema is created and upgraded by the Alembic migrations shipped in ``engagement/consent/migrations``
every time a registry is opened, one migration per transaction, under a lock (a lock file beside a SQLite
database, an advisory lock on PostgreSQL) so that concurrent first opens wait for each other. Each change also
appends a row to ``audit_log``, which the database itself refuses to update, delete or truncate (triggers), so the
log is a trustworthy history. Database errors reach the user as one-line ``UserError``s; the engine never shows
statement parameters (personal data) in messages or tracebacks, and values too long for their column are refused
before the database sees them.

The current status of a student in a course is their latest consent record; earlier records stay as
history. Anyone without a record counts as not consented.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from engagement.consent.status import CONSENTED, NOT_ANALYSED, STATUSES, WITHDRAWN, Status
from engagement.errors import UserError

if TYPE_CHECKING:
    from engagement.consent.seatplan import SeatPlan

REGISTRY_ENV = "ENGAGEMENT_REGISTRY"
POSTGRES_HINT = 'pip install "classroom-engagement[postgres]"'
MIGRATION_LOCK_KEY = 0x656E6761  # the PostgreSQL advisory lock held while the schema is upgraded ("enga")
WRITE_LOCK_KEY = 0x656E6762  # the PostgreSQL advisory lock of a write transaction, as SQLite's BEGIN IMMEDIATE
SQLITE_BUSY_TIMEOUT_S = 30.0  # how long a SQLite writer waits for another one before "database is locked"

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
seat_plans = sa.Table(
    "seat_plans", metadata,
    sa.Column("room", sa.String(64), primary_key=True),
    sa.Column("plan", sa.Text, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
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
    date_given: bool = True  # False: ``recorded_on`` is the day it was entered, no signing date was given


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


def registry_url(url_or_path: str | os.PathLike | None = None, create: bool = True) -> str:
    """A SQLAlchemy URL from a URL, a SQLite file path, ``$ENGAGEMENT_REGISTRY`` or the per-user default; without
    ``create`` a SQLite file that does not exist is a UserError (a mistyped path must not read as an empty registry)."""
    value = str(url_or_path) if url_or_path else os.environ.get(REGISTRY_ENV) or str(default_registry_path())
    if "://" in value:
        return value
    path = Path(value).expanduser().resolve()
    if path.is_dir():
        raise UserError(f"registry {path} is a folder; give a file such as {path / 'registry.sqlite'}")
    if not create and not path.exists():
        raise UserError(f"no consent registry at {path}: `engagement consent course add` or `consent import` makes one")
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # The registry holds students' consent (and optional names): a new one is readable by its owner only.
        os.close(os.open(path, os.O_CREAT | os.O_RDONLY, 0o600))
    except OSError as error:
        raise UserError(f"cannot create the registry {path}: {error.strerror}") from None
    return f"sqlite:///{path}"


def _create_engine(url: str) -> Engine:
    """An engine that never shows statement parameters; ``postgresql://`` means psycopg (the ``[postgres]`` extra),
    and a missing driver is a UserError with the command that installs it."""
    try:
        parsed = sa.engine.make_url(url)
    except sa.exc.ArgumentError as error:
        raise UserError(f"bad registry URL: {error}") from None
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    shown = parsed.render_as_string(hide_password=True)
    sqlite = parsed.get_backend_name() == "sqlite"
    try:
        engine = sa.create_engine(parsed, hide_parameters=True, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S} if sqlite else {})
    except ModuleNotFoundError as error:
        postgres = parsed.get_backend_name() == "postgresql"
        hint = f" (the supported PostgreSQL driver, for postgresql:// URLs: {POSTGRES_HINT})" if postgres else ""
        raise UserError(f"registry {shown} needs the Python module {error.name}, which is not installed{hint}") from None
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ValueError) as error:
        raise UserError(f"bad registry URL {shown!r}: {error}") from None
    if sqlite:
        sa.event.listen(engine, "connect", _sqlite_connect)
        sa.event.listen(engine, "begin", _sqlite_begin)
    return engine


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    """Foreign keys on; transactions begun by ``_sqlite_begin`` rather than by the driver, which would run DDL
    (migrations) outside any transaction."""
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_begin(connection: Connection) -> None:
    """BEGIN IMMEDIATE for writes (a writer waits for another instead of failing half-way), BEGIN for reads."""
    writes = connection.get_execution_options().get("registry_writes", False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if writes else "BEGIN")


def _alembic_config() -> Any:
    """The Alembic configuration of the shipped migrations; ``env.py`` runs them on ``attributes["connection"]``."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    return config


def _checked(table: sa.Table, **values: Any) -> dict[str, Any]:
    """``values`` for a row of ``table``; a text longer than its column allows is a UserError naming the column and
    its limit (never the value: it is personal data), raised before the database sees it."""
    for key, value in values.items():
        limit = getattr(table.c[key].type, "length", None)
        if limit is not None and isinstance(value, str) and len(value) > limit:
            raise UserError(f"{table.name}.{key}: longer than {limit} characters")
    return values


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
        self._writer = engine.execution_options(registry_writes=True)  # BEGIN IMMEDIATE on SQLite
        sqlite_file = engine.dialect.name == "sqlite" and engine.url.database
        self.shown = engine.url.database if sqlite_file else engine.url.render_as_string(hide_password=True)  # for messages

    @classmethod
    def open(cls, url_or_path: str | os.PathLike | None = None, create: bool = True) -> "Registry":
        """Connect and bring the schema up to date; a bad URL, a missing driver, a file that is no database or a
        schema this version does not know is a UserError, and so is a missing SQLite file without ``create``."""
        registry = cls(_create_engine(registry_url(url_or_path, create)))
        try:
            registry._migrate()
        except BaseException:
            registry.close()
            raise
        return registry

    def _migrate(self) -> None:
        """Apply the missing migrations one per transaction (a failed one leaves the registry as it was before it),
        while holding the migration lock; an open of an up-to-date registry takes no lock."""
        from alembic import command
        from alembic.script import ScriptDirectory

        config = _alembic_config()
        order = [revision.revision for revision in reversed(list(ScriptDirectory.from_config(config).walk_revisions()))]
        with self._database_errors(f"cannot open registry {self.shown}"):
            if self._revision(order) == order[-1]:
                return
            with self._migration_lock():
                while (current := self._revision(order)) != order[-1]:
                    target = order[order.index(current) + 1] if current else order[0]
                    with self._database_errors(f"cannot upgrade registry {self.shown} to schema {target} (left as it was before)"):
                        with self._writer.begin() as connection:
                            config.attributes["connection"] = connection
                            command.upgrade(config, target)

    def _revision(self, known: list[str]) -> str | None:
        """The schema revision the database is at (None: empty); one this version does not know is a UserError."""
        from alembic.runtime.migration import MigrationContext

        with self.engine.connect() as connection:
            current = MigrationContext.configure(connection).get_current_revision()
        if current is not None and current not in known:
            raise UserError(
                f"registry {self.shown} has schema revision {current[:32]!r}, which this version of classroom-engagement does "
                f"not know (known: {', '.join(known)}): open it with the version that made it, or restore a backup"
            )
        return current

    @contextlib.contextmanager
    def _migration_lock(self) -> Iterator[None]:
        """Held while the schema is upgraded: a lock file beside a SQLite database, an advisory lock on PostgreSQL
        (other databases: none, so open a new registry once before sharing it)."""
        if self.engine.dialect.name == "postgresql":
            with self.engine.connect() as connection:
                connection.execute(sa.text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
                try:
                    yield
                finally:
                    connection.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY})
        elif self.engine.dialect.name == "sqlite" and self.engine.url.database not in (None, "", ":memory:"):
            import fcntl

            path = Path(f"{self.engine.url.database}.lock")
            try:
                descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            except OSError as error:
                raise UserError(f"cannot lock registry {path}: {error.strerror}") from None
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX)
                yield
            finally:
                os.close(descriptor)
        else:
            yield

    @contextlib.contextmanager
    def _database_errors(self, doing: str | None = None) -> Iterator[None]:
        """Turn a database error into a one-line UserError: the driver's first line, never the SQL or its values."""
        try:
            yield
        except sa.exc.SQLAlchemyError as error:
            reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
            raise UserError(f"{doing or 'registry ' + self.shown}: {reason}") from error

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> "Registry":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[Connection]:
        """A write transaction; writers take turns (SQLite: BEGIN IMMEDIATE; PostgreSQL: an advisory lock), so two
        that add the same course or student at once wait for each other instead of one failing."""
        with self._database_errors(), self._writer.begin() as connection:
            if self.engine.dialect.name == "postgresql":
                connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": WRITE_LOCK_KEY})
            yield connection

    @contextlib.contextmanager
    def _reading(self) -> Iterator[Connection]:
        """A connection for reads; database errors become UserErrors."""
        with self._database_errors(), self.engine.connect() as connection:
            yield connection

    @staticmethod
    def _audit(connection: Connection, action: str, subject: str | None, **details: Any) -> None:
        """Append to the audit log: IDs, dates and counts only (callers pass no names and no paths)."""
        connection.execute(
            audit_log.insert().values(**_checked(
                audit_log, at=_now(), action=action, subject=subject, details=json.dumps(details, default=str, sort_keys=True)
            ))
        )

    # Courses and approvals -------------------------------------------------------------------------

    def add_course(
        self, code: str, title: str | None = None, retention_days: int | None = None, delete_source: bool | None = None
    ) -> None:
        """Create a course, or update the settings given (``None`` keeps the current one) when it exists."""
        if title is not None and not title.strip():
            raise UserError(f"course {code}: the title is blank (the forms print it)")
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
            given = {k: v for k, v in settings.items() if v is not None}
            connection.execute(courses.insert().values(**_checked(courses, code=code, created_at=_now(), **given)))
            self._audit(connection, "course_added", code, **settings)
            return
        changes = {k: v for k, v in settings.items() if v is not None and v != existing._mapping[k]}
        if changes:
            connection.execute(courses.update().where(courses.c.code == code).values(**_checked(courses, **changes)))
            self._audit(connection, "course_changed", code, **changes)

    def course(self, code: str) -> dict[str, Any]:
        """The course row; an unknown course is a UserError saying how to add it."""
        with self._reading() as connection:
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
        with self._reading() as connection:
            return [dict(row._mapping) for row in connection.execute(sa.select(courses).order_by(courses.c.code))]

    # Seat plans ------------------------------------------------------------------------------------

    def save_seat_plan(self, plan: "SeatPlan") -> None:
        """Store a room's seat plan, replacing the room's previous one."""
        text = json.dumps(plan.to_dict())
        with self._transaction() as connection:
            values = _checked(seat_plans, room=plan.room, plan=text, updated_at=_now())
            if connection.execute(sa.select(seat_plans.c.room).where(seat_plans.c.room == plan.room)).first() is None:
                connection.execute(seat_plans.insert().values(**values))
            else:
                connection.execute(seat_plans.update().where(seat_plans.c.room == plan.room).values(**values))
            self._audit(connection, "seat_plan_saved", plan.room, seats=len(plan.seats),
                        non_participating=sum(not seat.participating for seat in plan.seats))

    def seat_plan(self, room: str) -> "SeatPlan":
        """The room's seat plan; an unknown room is a UserError saying how to add one."""
        from engagement.consent.seatplan import SeatPlan

        with self._reading() as connection:
            row = connection.execute(sa.select(seat_plans.c.plan).where(seat_plans.c.room == room)).first()
        if row is None:
            known = ", ".join(self.rooms()) or "none"
            raise UserError(f"room {room!r} has no seat plan in the registry (known: {known}); propose one with "
                            f"'engagement seats propose VIDEO --room {room} --out plan.yaml', then 'engagement seats import plan.yaml'")
        return SeatPlan.from_dict(json.loads(row.plan), f"seat plan of room {room}")

    def rooms(self) -> list[str]:
        """The rooms with a seat plan, by name."""
        with self._reading() as connection:
            return list(connection.execute(sa.select(seat_plans.c.room).order_by(seat_plans.c.room)).scalars())

    def add_approval(
        self, course: str, instructor: str, approver: str, approved_on: dt.date, scope: str, valid_until: dt.date | None = None
    ) -> int:
        """Record a faculty approval of analysing a registered course from ``approved_on`` to ``valid_until``
        (default: one year later); returns its id. The audit log gets its id and dates, not the people's names."""
        blank = [field for field, value in (("instructor", instructor), ("approver", approver), ("scope", scope)) if not value.strip()]
        if blank:
            raise UserError(f"an approval must name its instructor, approver and scope; blank: {', '.join(blank)}")
        valid_until = valid_until or one_year_after(approved_on)
        if valid_until < approved_on:
            raise UserError(f"an approval cannot end ({valid_until}) before it was given ({approved_on})")
        with self._transaction() as connection:
            self._course(connection, course)
            approval_id = connection.execute(
                approvals.insert().values(**_checked(
                    approvals, course=course, instructor=instructor, approver=approver, approved_on=approved_on,
                    valid_until=valid_until, scope=scope, created_at=_now(),
                ))
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
        with self._reading() as connection:
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
        """Record a student's consent status in a course (creating student and course as needed); a record that may
        not replace their current one (``import_records``) is a UserError."""
        record = ConsentRecord(student, course, status, recorded_on or dt.date.today(), form_version, seat, name,
                               date_given=recorded_on is not None)
        for _, reason in self.import_records([record]):
            raise UserError(reason)

    def import_records(self, records: list[ConsentRecord]) -> list[tuple[ConsentRecord, str]]:
        """Write consent records in one transaction, except those that may not replace the student's current record
        in that course; returns each of those with the reason. A record dated before the current one is history, not
        news (a roster signed in September does not undo a withdrawal in December), and an opted-out or withdrawn
        student consents again only by a form signed after that: a record without its date (a roster without the
        ``date`` column, ``consent set`` without ``--date``) never turns them back. A withdrawal erases the name; one of
        a student withdrawn already records nothing more (as ``withdraw``)."""
        for record in records:
            if record.status not in STATUSES:
                raise UserError(f"consent status must be one of {', '.join(STATUSES)}, got {record.status!r}")
        refused = []
        with self._transaction() as connection:
            for record in records:
                reason = self._refusal(connection, record)
                if reason is not None:
                    refused.append((record, reason))
                    continue
                self._upsert_course(connection, record.course)
                self._upsert_student(connection, record.student, None if record.status == WITHDRAWN else record.name)
                if record.status == WITHDRAWN:
                    connection.execute(students.update().where(students.c.id == record.student).values(name=None))
                    if self._latest_status(connection, record.student, record.course) == WITHDRAWN:
                        continue
                connection.execute(
                    consent_records.insert().values(**_checked(
                        consent_records, student=record.student, course=record.course, status=record.status,
                        recorded_on=record.recorded_on, form_version=record.form_version, seat=record.seat, created_at=_now(),
                    ))
                )
                self._audit(
                    connection, "consent_" + record.status, record.student, course=record.course,
                    recorded_on=record.recorded_on, form_version=record.form_version, seat=record.seat,
                )
        return refused

    @staticmethod
    def _latest_status(connection: Connection, student: str, course: str) -> str | None:
        return connection.execute(
            sa.select(consent_records.c.status)
            .where(consent_records.c.student == student, consent_records.c.course == course)
            .order_by(consent_records.c.id.desc()).limit(1)
        ).scalar()

    @staticmethod
    def _refusal(connection: Connection, record: ConsentRecord) -> str | None:
        """Why ``record`` may not replace the student's current record in its course, or None."""
        current = connection.execute(
            sa.select(consent_records.c.status, consent_records.c.recorded_on)
            .where(consent_records.c.student == record.student, consent_records.c.course == record.course)
            .order_by(consent_records.c.id.desc()).limit(1)
        ).first()
        if current is None:
            return None
        since = f"{record.student} in {record.course} is {current.status.replace('_', ' ')} since {current.recorded_on}"
        if record.recorded_on < current.recorded_on:
            return f"{since}, and this record is dated {record.recorded_on}, before that; not recorded"
        if record.status == CONSENTED and current.status in NOT_ANALYSED and not (
            record.date_given and record.recorded_on > current.recorded_on
        ):
            return f"{since}: a new consent needs the date its form was signed, after that day; not recorded"
        return None

    def _upsert_student(self, connection: Connection, student: str, name: str | None) -> None:
        existing = connection.execute(sa.select(students).where(students.c.id == student)).first()
        if existing is None:
            connection.execute(students.insert().values(**_checked(students, id=student, name=name, created_at=_now())))
            self._audit(connection, "student_added", student, named=name is not None)
        elif name is not None and name != existing.name:
            connection.execute(students.update().where(students.c.id == student).values(**_checked(students, name=name)))
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
        with self._reading() as connection:
            return [
                ConsentRecord(r.student, r.course, r.status, r.recorded_on, r.form_version, r.seat, r.name)
                for r in connection.execute(query)
            ]

    def consented_students(self, course: str) -> set[str]:
        return {r.student for r in self.consent(course) if r.status == CONSENTED}

    def opted_out_students(self, course: str) -> set[str]:
        """Students whose current status in ``course`` is opted out or withdrawn."""
        return {r.student for r in self.consent(course) if r.status in NOT_ANALYSED}

    def not_analysed_since(self, course: str, since: dt.datetime, candidates: set[str]) -> set[str]:
        """Which of ``candidates`` were opted out of or withdrawn from ``course`` at or after ``since`` and still are:
        a run that started at ``since`` may hold their rows."""
        if not candidates:
            return set()
        query = sa.select(consent_records.c.student).where(
            consent_records.c.course == course,
            consent_records.c.student.in_(sorted(candidates)),
            consent_records.c.status.in_(sorted(NOT_ANALYSED)),
            consent_records.c.created_at >= since,
        )
        with self._reading() as connection:
            changed = set(connection.execute(query).scalars())
        return changed & self.opted_out_students(course)

    def withdraw(self, student: str, course: str | None = None) -> list[Session]:
        """Mark a student withdrawn (in one course or all of theirs; a course where they are withdrawn already gets
        no second record), erase their name; returns the sessions whose outputs still hold rows about them (see
        ``engagement.consent.outputs``)."""
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
                if self._latest_status(connection, student, code) == WITHDRAWN:  # run again only to finish cleaning
                    continue
                connection.execute(
                    consent_records.insert().values(
                        student=student, course=code, status=WITHDRAWN, recorded_on=dt.date.today(), created_at=_now()
                    )
                )
                self._audit(connection, "consent_withdrawn", student, course=code)
            connection.execute(students.update().where(students.c.id == student).values(name=None))
        return self.sessions_holding(student, enrolled)

    def sessions_holding(self, student: str, courses: set[str]) -> list[Session]:
        """The sessions of ``courses`` that map a track to ``student``."""
        return [s for s in self.sessions() if student in s.track_students.values() and s.course in courses]

    # Sessions ----------------------------------------------------------------------------------------

    def record_session(
        self, course: str, date: dt.date, run_dir: str | os.PathLike, video_sha256: str | None, track_students: dict[int, str]
    ) -> int:
        """Remember an analysed recording and which track was which student; returns the session id."""
        with self._transaction() as connection:
            self._upsert_course(connection, course)
            for student in set(track_students.values()):
                self._upsert_student(connection, student, None)
            values = _checked(sessions, course=course, held_on=date, run_dir=str(Path(run_dir).resolve()),
                              video_sha256=video_sha256, created_at=_now())
            if connection.dialect.name == "sqlite":
                values["id"] = self._next_session_id(connection)
            session_id = int(connection.execute(sessions.insert().values(**values)).inserted_primary_key[0])
            if track_students:
                connection.execute(
                    session_tracks.insert(),
                    [_checked(session_tracks, session_id=session_id, track_id=int(t), student=s) for t, s in track_students.items()],
                )
            self._audit(connection, "session_recorded", course, session=session_id, tracks=len(track_students))
        return session_id

    @staticmethod
    def _next_session_id(connection: Connection) -> int:
        """One more than any session id ever given, purged ones included. SQLite gives a new row the largest id in
        the table plus one, so after a purge a new session would take a purged one's id, and the audit log's entries
        about the old session would read as if about the new one (PostgreSQL's sequence never gives an id twice)."""
        recorded = connection.execute(
            sa.select(audit_log.c.details).where(audit_log.c.action == "session_recorded")).scalars()
        audited = max((int(json.loads(details).get("session", 0)) for details in recorded), default=0)
        in_table = connection.execute(sa.select(sa.func.max(sessions.c.id))).scalar() or 0
        return max(audited, in_table) + 1

    def sessions(self, course: str | None = None, held_on_or_before: dt.date | None = None) -> list[Session]:
        """Recorded sessions, oldest first, optionally of one course and held on or before a date."""
        query = sa.select(sessions).order_by(sessions.c.id)
        if course is not None:
            query = query.where(sessions.c.course == course)
        if held_on_or_before is not None:
            query = query.where(sessions.c.held_on <= held_on_or_before)
        with self._reading() as connection:
            rows = connection.execute(query).all()
            tracks = connection.execute(sa.select(session_tracks)).all()
        by_session: dict[int, dict[int, str]] = {}
        for track in tracks:
            by_session.setdefault(track.session_id, {})[track.track_id] = track.student
        return [
            Session(r.id, r.course, r.held_on, Path(r.run_dir), r.video_sha256, by_session.get(r.id, {}))
            for r in rows
        ]

    def forget_tracks(self, session_id: int, student: str) -> None:
        """Delete which tracks of a session were ``student``: called once their rows are gone from its outputs, so that
        after a withdrawal nothing links them to the session but the audit log's record of the deletion."""
        with self._transaction() as connection:
            connection.execute(session_tracks.delete().where(
                session_tracks.c.session_id == session_id, session_tracks.c.student == student))

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
        with self._reading() as connection:
            rows = connection.execute(sa.select(audit_log).order_by(audit_log.c.id)).all()
        for row in rows:
            yield {**row._mapping, "details": json.loads(row.details)}

