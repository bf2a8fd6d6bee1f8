"""Consent pages: courses and approvals, each student's status and history, roster import, consent and opt-out,
withdrawal after a confirmation, the audit log and a retention purge with a preview.

Every change goes through the same functions as ``engagement consent``; student IDs are the only personal
reference in URLs.
"""

from __future__ import annotations

import datetime as dt
import re
import tempfile
from pathlib import Path
from typing import Any

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for

from engagement.consent.forms import InvalidRecord, check_record, load_policy, read_roster
from engagement.consent.outputs import (
    KNOWN_OUTPUT_PATTERNS, LIVE_RECORDINGS, describe_recorded, expired_recordings, purge_recordings, purge_sessions, record_consent,
    recording_cutoff, session_cutoff, sessions_kept, withdraw_student,
)
from engagement.consent.status import WITHDRAWN
from engagement.errors import UserError, error_line
from engagement.web.app import registry
from engagement.web.sessions import forget_charts

blueprint = Blueprint("consent", __name__, url_prefix="/consent")
RECORDABLE = ("consented", "opted_out")


def _course_or_404(code: str) -> dict[str, Any]:
    try:
        return registry().course(code)
    except UserError as error:
        abort(404, str(error))


@blueprint.get("/")
def index() -> str:
    """Courses with their approvals and status counts, the roster import form and links to the log and purge."""
    courses = []
    for course in registry().courses():
        records = registry().consent(course["code"])
        counts = {status: sum(r.status == status for r in records) for status in ("consented", "opted_out", "withdrawn")}
        courses.append({**course, "approvals": registry().approvals(course["code"]), "counts": counts})
    return render_template("consent.html.j2", courses=courses)


@blueprint.get("/courses/<code>")
def course(code: str) -> str:
    """One course: its approvals, every student's current status, and the form that records consent or opt-out."""
    info = _course_or_404(code)
    return render_template("course.html.j2", course=info, approvals=registry().approvals(code),
                           records=registry().consent(code), statuses=RECORDABLE, today=dt.date.today())


@blueprint.get("/courses/<code>/students/<student>")
def student(code: str, student: str) -> str:
    """A student's current status in a course and every audit entry about them."""
    _course_or_404(code)
    current = next((r for r in registry().consent(code) if r.student == student), None)
    if current is None:
        abort(404, f"student {student!r} has no consent record in course {code!r}")
    history = [entry for entry in registry().audit_log()
               if entry["subject"] == student and entry["details"].get("course") in (None, code)]
    unfinished = current.status == WITHDRAWN and bool(registry().sessions_holding(student, {code}))
    return render_template("student.html.j2", course=code, record=current, history=history, unfinished=unfinished)


@blueprint.post("/courses/<code>/record")
def record(code: str) -> Any:
    """Record consent or opt-out for one student (the checks of ``engagement consent set``)."""
    _course_or_404(code)
    status = request.form.get("status", "")
    if status not in RECORDABLE:
        abort(400, f"status must be one of {', '.join(RECORDABLE)}; withdrawal has its own confirmation page")
    fields = {key: request.form.get(key) for key in ("student_id", "date", "form_version", "seat")}
    try:
        record = check_record({**fields, "course": code, "status": status})
    except InvalidRecord as error:
        flash(f"not recorded: {error}", "error")
    else:
        refused = registry().import_records([record])
        for _, reason in refused:
            flash(reason, "error")
        if not refused:
            kept = sessions_kept(registry(), record)
            flash(f"{record.student}: {status.replace('_', ' ')}"
                  + (f"; from now on. {len(kept)} recorded session(s) keep their rows: withdraw the student to delete "
                     "them" if kept else ""), "info")
    return redirect(url_for("consent.course", code=code))


@blueprint.post("/roster")
def roster() -> Any:
    """Import a roster CSV: a bad row refuses it whole (every bad row listed by its line); a row that may not replace
    a student's current record (``Registry.import_records``) is left out and named."""
    upload = request.files.get("roster")
    if upload is None or not upload.filename:
        return _roster_refused("choose a roster CSV file to upload", [])
    if not upload.filename.lower().endswith(".csv"):
        return _roster_refused(f"{upload.filename} is not a CSV file; nothing imported", [])
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "roster.csv"
        upload.save(path)
        try:
            records = read_roster(path)
        except UserError as error:
            message = str(error).removeprefix(f"{path}: ")
            head, _, rows = message.partition(", nothing imported: ")
            return _roster_refused(f"{upload.filename}: {head}, nothing imported" if rows else f"{upload.filename}: {message}",
                                   rows.split(" | ") if rows else [])
    refused, removals = record_consent(registry(), records)
    if removals:
        forget_charts()
    for _, reason in refused:
        flash(reason, "error")
    flash(f"imported {describe_recorded(records, refused, removals)} from {upload.filename}", "info")
    return redirect(url_for("consent.index"))


def _roster_refused(message: str, problems: list[str]) -> tuple[str, int]:
    return render_template("roster_refused.html.j2", message=message, problems=problems), 400


@blueprint.route("/courses/<code>/students/<student>/withdraw", methods=["GET", "POST"])
def withdraw(code: str, student: str) -> Any:
    """GET: what withdrawal will delete (the sessions holding the student's rows); POST: withdraw, as the CLI does."""
    _course_or_404(code)
    current = next((r for r in registry().consent(code) if r.student == student), None)
    if current is None:
        abort(404, f"student {student!r} has no consent record in course {code!r}")
    if request.method == "POST":
        if current.status == WITHDRAWN and not registry().sessions_holding(student, {code}):  # a second submission
            return render_template("withdrawn.html.j2", course=code, student=student, removals=[],
                                   already=current.recorded_on)
        try:
            removals = withdraw_student(registry(), student, code)
        except (OSError, UserError) as error:
            abort(500, f"{student} is withdrawn, but cleaning their sessions failed ({error_line(error)}); fix that and "
                       "withdraw again from the student's page")
        finally:
            forget_charts()
        return render_template("withdrawn.html.j2", course=code, student=student, removals=removals)
    sessions = registry().sessions_holding(student, {code})
    return render_template("withdraw.html.j2", course=code, student=student, sessions=sessions)


@blueprint.get("/audit")
def audit() -> str:
    """The audit log, newest first."""
    return render_template("audit.html.j2", entries=list(registry().audit_log())[::-1])


def _purge_request() -> tuple[int | None, str | None]:
    """Days and course of a purge form (query or form fields); no days: each course's own retention."""
    values = request.form if request.method == "POST" else request.args
    course = values.get("course") or None
    if course is not None:
        _course_or_404(course)
    text = values.get("older_than") or ""
    if text and not re.fullmatch(r"[0-9]{1,15}", text):
        abort(400, "older than must be a whole number of days, zero or more")
    return (int(text) if text else None), course


@blueprint.route("/purge", methods=["GET", "POST"])
def purge() -> Any:
    """GET: the sessions (and, for all courses, the live recordings) a purge would delete; POST: delete them, with the
    sessions' registry entries. Without a number of days, each course's sessions go by its own retention (else the
    policy's), as ``engagement consent purge`` does; live recordings by the policy's."""
    days, course = _purge_request()
    policy_days = load_policy()["retention_days"]
    courses = registry().courses()
    retention = {item["code"]: days if days is not None else item["retention_days"] or policy_days
                 for item in courses if course in (None, item["code"])}
    recording_days = days if days is not None else policy_days
    recordings = current_app.config["RUNS"] / LIVE_RECORDINGS
    if request.method == "POST":
        purged = [removed for code, kept_days in retention.items() for removed in purge_sessions(registry(), kept_days, code)]
        deleted = purge_recordings(registry(), recordings, recording_days) if course is None else []
        forget_charts()
        flash(f"purged {len(purged)} session(s)" + (f" and {len(deleted)} live recording(s)" if course is None else ""),
              "info")
        return redirect(url_for("consent.purge", older_than="" if days is None else days, course=course or ""))
    cutoffs = {code: session_cutoff(kept_days) for code, kept_days in retention.items()}
    sessions = [
        {"id": s.id, "course": s.course, "held_on": s.held_on, "run_dir": s.run_dir,
         "files": sorted({p.name for pattern in KNOWN_OUTPUT_PATTERNS for p in s.run_dir.glob(pattern) if p.is_file()})}
        for code, cutoff in cutoffs.items() for s in registry().sessions(course=code, held_on_or_before=cutoff)
    ]
    expired = [path.name for path in expired_recordings(recordings, recording_days)] if course is None else []
    return render_template("purge.html.j2", days=days, course=course, cutoffs=cutoffs, retention=retention,
                           sessions=sessions, recordings=expired, recordings_cutoff=recording_cutoff(recording_days),
                           courses=courses)
