"""Remove a person from the outputs of analysed sessions (withdrawal), whole outputs (retention) and, under a
course's policy, the analysed recording itself.

A run directory holds tables keyed by ``track_id`` (``*.parquet`` and ``*.csv``), ``session.json`` (the run's
record, whose ``consent.track_students`` maps track ids to student ids), ``summary.json`` (whose
``students`` list holds one object per track) and rendered media (``annotated*.mp4``, ``report.*``).
On withdrawal, tables lose the student's tracks and any row holding their id; the JSON files lose every
entry holding their id, and the summary its entries for their tracks (class-level figures recomputed from
the cleaned states table, or dropped); rendered media show or describe everyone, so they are deleted and
must be re-rendered from the cleaned tables. Every rewrite goes to a temp file in the same folder and
replaces the original atomically. The web app's recorded live views (``RUNS/live-recordings``) belong to no course
or session; the retention purge deletes them by the day in their name.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from pathlib import Path
from typing import Any

from engagement.consent.registry import ConsentRecord, Registry, Session
from engagement.consent.status import OPTED_OUT, WITHDRAWN
from engagement.errors import UserError
from engagement.files import SESSION_JSON, STATES_PARQUET, SUMMARY_JSON, write_atomic

RENDERED_PATTERNS = ("annotated*.mp4", "report.*")
KNOWN_OUTPUT_PATTERNS = ("*.parquet", "*.csv", SESSION_JSON, SUMMARY_JSON, *RENDERED_PATTERNS)
LIVE_RECORDINGS = "live-recordings"  # the web app's recorded live views, under its runs folder
LIVE_RECORDING_NAME = "live-%Y%m%d-%H%M%S.mp4"  # the UTC time the recording started
SCORE_AGGREGATES = ("session_score", "timeline", "state_share", "uncertain_share")  # from the states table
CLASS_AGGREGATES = (*SCORE_AGGREGATES, "framing")  # summary.json figures over every analysed student
log = logging.getLogger(__name__)


def _unreadable_errors() -> tuple[type[Exception], ...]:
    """What reading a damaged table or JSON file raises: bad bytes, text or JSON (ValueError and its subclasses, as
    pandas' parser errors are) and Arrow's own errors."""
    import pyarrow

    return ValueError, pyarrow.ArrowException



def _scrub_table(path: Path, student: str, track_ids: set[int]) -> int:
    """Drop the rows of ``track_ids`` and any row with a cell equal to ``student``; returns how many."""
    import pandas as pd

    table = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    hits = pd.Series(False, index=table.index)
    if "track_id" in table.columns:
        hits |= table["track_id"].isin(track_ids)
    text = table.select_dtypes(include=["object", "string"])
    if not text.empty:
        hits |= text.eq(student).any(axis=1)
    removed = int(hits.sum())
    if removed:
        kept = table[~hits]
        if path.suffix == ".parquet":
            write_atomic(path, lambda stream: kept.to_parquet(stream, index=False))
        else:
            write_atomic(path, lambda stream: kept.to_csv(stream, index=False))
    return removed


def _scrub_json(path: Path, student: str, track_ids: set[int]) -> int:
    """Remove every mention of ``student`` (and, in ``summary.json``, their tracks' entries); returns how many."""
    data = json.loads(path.read_text())
    removed = _drop_summary_tracks(data, track_ids, path.parent) if path.name == SUMMARY_JSON else 0
    if path.name == SESSION_JSON:
        removed += _drop_track_seats(data, track_ids)
    data, mentions = _without(data, student)
    if removed or mentions:
        write_atomic(path, lambda stream: stream.write(json.dumps(data, indent=2).encode()))
    return removed + mentions


def _without(value: Any, student: str) -> tuple[Any, int]:
    """``value`` less every mapping entry whose key or value is ``student`` and every list item equal to it,
    at any depth, and how many were removed."""
    if isinstance(value, dict):
        kept: dict[str, Any] = {}
        removed = 0
        for key, item in value.items():
            if key == student or item == student:
                removed += 1
                continue
            kept[key], inner = _without(item, student)
            removed += inner
        return kept, removed
    if isinstance(value, list):
        items = [_without(item, student) for item in value if item != student]
        return [item for item, _ in items], len(value) - len(items) + sum(inner for _, inner in items)
    return value, 0


def _drop_track_seats(session: dict[str, Any], track_ids: set[int]) -> int:
    """Drop the tracks' seats from a session record in place (with the roster, a seat names its student)."""
    seats = (session.get("consent") or {}).get("track_seats") or {}
    gone = [key for key in seats if int(key) in track_ids]
    for key in gone:
        del seats[key]
    return len(gone)


def _drop_summary_tracks(summary: dict[str, Any], track_ids: set[int], run_dir: Path) -> int:
    """Drop the tracks' entries from a summary in place and recompute the class-level figures without them."""
    people = summary.get("students", [])
    kept = [p for p in people if int(p.get("track_id", -1)) not in track_ids]
    removed = len(people) - len(kept)
    if removed:
        summary["students"] = kept
        summary["withdrawn_removed"] = int(summary.get("withdrawn_removed", 0)) + removed
        for key in CLASS_AGGREGATES:
            summary.pop(key, None)
        summary.update(_class_aggregates(run_dir, summary))
    return removed


def _class_aggregates(run_dir: Path, summary: dict[str, Any]) -> dict[str, Any]:
    """Session score, timeline and state shares from the (already scrubbed) states table, and the framing from it and
    the tracks table; none of them when they cannot be read, so that no figure computed with the withdrawn person's
    rows survives."""
    import pandas as pd

    from engagement.framing import run_framing
    from engagement.scoring import summarize

    try:
        states = pd.read_parquet(run_dir / STATES_PARQUET)
        _, fresh = summarize(states, float(summary["duration_s"]), int(summary.get("people_excluded", 0)))
    except (OSError, KeyError, TypeError, ValueError):
        return {}
    figures = {key: fresh[key] for key in SCORE_AGGREGATES}
    try:
        height = int(json.loads((run_dir / SESSION_JSON).read_text())["input"]["height"])
        figures["framing"] = run_framing(run_dir, states, height)
    except (OSError, KeyError, TypeError, ValueError, *_unreadable_errors()):
        pass  # dropped: the framing measured the withdrawn person too
    return figures


def remove_student(run_dir: Path, student: str, track_ids: set[int]) -> dict[str, Any]:
    """Delete the rendered media of ``run_dir`` when ``student`` was tracked there (as ``track_ids``: the video and
    the report may show them), then every row and mention of them in its tables and JSON files (and the media, if
    only those named them); returns what was removed. The media go first, so that a removal that fails half-way and
    is run again finds them too."""
    deleted = _delete(run_dir, RENDERED_PATTERNS) if track_ids else []
    rows: dict[str, int] = {}
    if run_dir.is_dir():
        tables = sorted([*run_dir.glob("*.parquet"), *run_dir.glob("*.csv")])
        jsons = sorted(run_dir.glob("*.json"))  # after the tables: the summary is recomputed from states.parquet
        for path, scrub in [*((table, _scrub_table) for table in tables), *((file, _scrub_json) for file in jsons)]:
            try:
                rows[path.name] = scrub(path, student, track_ids)
            except _unreadable_errors() as error:  # it may hold the student and cannot be cleaned: it goes (fails closed)
                log.warning("%s: unreadable (%s), deleted so that it cannot keep %s", path, type(error).__name__, student)
                path.unlink()
                deleted.append(path.name)
    if any(rows.values()):  # named without a track of theirs
        deleted += _delete(run_dir, RENDERED_PATTERNS)
    return {"run_dir": str(run_dir), "rows_removed": {k: v for k, v in rows.items() if v}, "files_deleted": deleted}


def delete_outputs(run_dir: Path) -> dict[str, Any]:
    """Delete a run's known outputs (tables, session record, summary, media) and the folder if nothing else is left."""
    deleted = _delete(run_dir, KNOWN_OUTPUT_PATTERNS)
    if run_dir.is_dir() and not any(run_dir.iterdir()):
        run_dir.rmdir()
    return {"run_dir": str(run_dir), "files_deleted": deleted, "folder_removed": not run_dir.exists()}


def _delete(run_dir: Path, patterns: tuple[str, ...]) -> list[str]:
    if not run_dir.is_dir():
        return []
    files = sorted({p for pattern in patterns for p in run_dir.glob(pattern) if p.is_file()})
    for file in files:
        file.unlink()
    return [f.name for f in files]


def _audited(removed: dict[str, Any]) -> dict[str, Any]:
    """What the audit log keeps of a removal: IDs, dates, counts and file names, not the run folder (its path may
    hold a user's name)."""
    return {key: value for key, value in removed.items() if key != "run_dir"}


def _scrub_session(registry: Registry, session: Session, student: str) -> dict[str, Any]:
    """Remove ``student`` from one recorded session's outputs, log it, then drop the registry's link between them and
    the session's tracks (kept until then, so that a withdrawal that failed half-way finds the session again);
    returns what was removed."""
    tracks = {t for t, s in session.track_students.items() if s == student}
    removed = {"session": session.id, "course": session.course, **remove_student(session.run_dir, student, tracks)}
    registry.log("outputs_scrubbed", student, **_audited(removed))
    registry.forget_tracks(session.id, student)
    return removed


def withdraw_student(registry: Registry, student: str, course: str | None = None) -> list[dict[str, Any]]:
    """Withdraw a student and remove them from every recorded session; the audit log gets the list."""
    return [_scrub_session(registry, session, student) for session in registry.withdraw(student, course)]


def record_consent(registry: Registry, records: list[ConsentRecord]) -> tuple[list[tuple[ConsentRecord, str]], list[dict[str, Any]]]:
    """Record ``records`` (``Registry.import_records``: those that may not replace a current record come back with
    the reason) and remove each student recorded as withdrawn from their course's recorded sessions, as
    ``withdraw_student`` does; returns the refused records and the removals."""
    refused = registry.import_records(records)
    kept_out = [record for record, _ in refused]
    removals = [
        _scrub_session(registry, session, record.student)
        for record in records if record.status == WITHDRAWN and record not in kept_out
        for session in registry.sessions_holding(record.student, {record.course})
    ]
    return refused, removals


def sessions_kept(registry: Registry, record: ConsentRecord) -> list[Session]:
    """The recorded sessions that keep ``record``'s student's rows after it is recorded: an opt-out applies from now on
    (a withdrawal deletes them)."""
    return registry.sessions_holding(record.student, {record.course}) if record.status == OPTED_OUT else []


def describe_recorded(records: list[ConsentRecord], refused: list[tuple[ConsentRecord, str]],
                      removals: list[dict[str, Any]]) -> str:
    """How many of ``records`` ``record_consent`` recorded, and what their withdrawals cleaned."""
    recorded = f"{len(records) - len(refused)} of {len(records)}" if refused else str(len(records))
    cleaned = f"; withdrawals cleaned {len(removals)} session(s)" if any(r.status == WITHDRAWN for r in records) else ""
    return f"{recorded} consent record(s){cleaned}"


def remove_late_opt_outs(registry: Registry, session_id: int, started: dt.datetime) -> list[dict[str, Any]]:
    """Remove from a just-registered session every mapped student opted out or withdrawn since its run ``started``:
    such a change was recorded while the session was processed, after its consent was read. Together with
    ``withdraw_student`` (which finds the session once it is registered) no withdrawal misses a session."""
    session = next(s for s in registry.sessions() if s.id == session_id)
    late = registry.not_analysed_since(session.course, started, set(session.track_students.values()))
    if late:
        log.warning("%d mapped student(s) opted out or withdrew while this session was processed: their rows were removed, "
                    "and rendered media that showed them deleted", len(late))
    return [_scrub_session(registry, session, student) for student in sorted(late)]


def purge_sessions(registry: Registry, older_than_days: int, course: str | None = None) -> list[dict[str, Any]]:
    """Delete the outputs and registry entries of sessions held ``older_than_days`` or more days ago
    (0: today's sessions too)."""
    purged = []
    for session in registry.sessions(course=course, held_on_or_before=session_cutoff(older_than_days)):
        removed = {"session": session.id, "held_on": session.held_on, **delete_outputs(session.run_dir)}
        registry.forget_session(session.id, _audited(removed))
        purged.append(removed)
    return purged


def _days_before(today: dt.date, days: int) -> dt.date:
    """``today`` less ``days``; the calendar's first day for a longer span (nothing is that old)."""
    return today - dt.timedelta(days=min(days, (today - dt.date.min).days))


def session_cutoff(older_than_days: int) -> dt.date:
    """The last day whose sessions a purge of ``older_than_days`` deletes (sessions are dated in local time)."""
    return _days_before(dt.date.today(), older_than_days)


def utc_today() -> dt.date:
    """Today in UTC, the calendar the web app names live recordings in."""
    return dt.datetime.now(dt.timezone.utc).date()


def recording_cutoff(older_than_days: int) -> dt.date:
    """The last UTC day whose live recordings a purge of ``older_than_days`` deletes (recordings are named in UTC)."""
    return _days_before(utc_today(), older_than_days)


def expired_recordings(folder: Path, older_than_days: int) -> list[Path]:
    """The live recordings in ``folder`` started on or before ``recording_cutoff`` (0: today's too), by the UTC day
    in their name; other files are not the app's and are left alone."""
    expired, cutoff = [], recording_cutoff(older_than_days)
    for path in sorted(folder.glob("live-*.mp4")) if folder.is_dir() else []:
        try:
            started = dt.datetime.strptime(path.name, LIVE_RECORDING_NAME).date()
        except ValueError:
            continue
        if started <= cutoff and path.is_file():
            expired.append(path)
    return expired


def purge_recordings(registry: Registry, folder: Path, older_than_days: int) -> list[str]:
    """Delete the ``expired_recordings`` of ``folder`` and any partial recording a killed process on this machine
    left there, logging each; returns the names of the files deleted."""
    from engagement.sinks import remove_stale_partials

    purged = []
    for path in remove_stale_partials(folder):
        registry.log("live_recording_purged", None, file=path.name, partial=True)
        purged.append(path.name)
    for path in expired_recordings(folder, older_than_days):
        path.unlink(missing_ok=True)  # a purge running at the same time took it first
        registry.log("live_recording_purged", None, file=path.name)
        purged.append(path.name)
    return purged


def delete_source(registry: str | os.PathLike | None, course: str, video: str | os.PathLike, run_dir: str | os.PathLike) -> bool:
    """When ``course``'s policy is ``delete_source``, delete the recording that the registered session in
    ``run_dir`` analysed (checked by its sha256) and log ``source_deleted``; returns whether it deleted it.
    A camera or stream session has no stored recording and nothing is deleted."""
    from engagement.models import file_sha256

    with Registry.open(registry, create=False) as opened:
        if not opened.course(course)["delete_source"]:
            return False
        run = Path(run_dir).resolve()
        session = next((s for s in reversed(opened.sessions(course)) if s.run_dir == run), None)
        source = Path(video)
        if session is None or session.video_sha256 is None or not source.is_file():
            return False
        if file_sha256(source) != session.video_sha256:
            raise UserError(f"{source} changed after it was analysed into {run}; not deleted although course {course} asks for it")
        try:
            source.unlink()
        except OSError as error:
            raise UserError(f"course {course} asks for the analysed recording to be deleted, but {source} cannot be: {error.strerror}") from None
        opened.log("source_deleted", course, session=session.id, video_sha256=session.video_sha256)
    return True
