"""Sessions pages: every run under the runs folder, one run's video, charts and tables, and its files, and the
course view across a course's sessions.

A run is a folder holding ``session.json``; its URL key is its path relative to the runs folder. Pages answer
without drawing: charts are separate PNG requests, drawn once per version of the run's tables and kept in memory
(``CHART_CACHE`` entries; a withdrawal rewrites the tables, so its charts are drawn again).
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable

from flask import Blueprint, Response, abort, current_app, render_template, send_file

from engagement.errors import UserError
from engagement.files import SESSION_JSON
from engagement.report.builder import comparison_charts, comparison_context, session_charts, session_overview
from engagement.report.run import Run, load_run
from engagement.session import SessionRecord
from engagement.web.app import file_in, registry

blueprint = Blueprint("sessions", __name__)
DOWNLOADS = ("*.csv", "*.parquet", "*.json", "report.html", "report.pdf")
INLINE = {".mp4", ".html"}  # shown in the page or a tab; other files download
CHART_CACHE = 64  # chart sets kept in memory (one per session or course version)
TABLE_SUFFIXES = {".json", ".parquet", ".csv"}


def run_folders(runs: Path) -> dict[str, Path]:
    """Every run folder under ``runs`` (which is resolved) by its key, newest path last; folders reached through a
    symlink out of ``runs`` are left out, and so are hidden ones (a run being written, or the previous run of an
    overwrite that a killed process left behind: neither is registered, so no withdrawal reaches them)."""
    found = {}
    for record in sorted(runs.rglob("session.json")):
        folder = record.parent.resolve()
        hidden = any(part.startswith(".") for part in record.parent.relative_to(runs).parts)
        if folder.is_relative_to(runs) and not hidden:
            found[record.parent.relative_to(runs).as_posix()] = folder
    return found


def _registry_lost(folder: Path, registered: set[Path]) -> bool:
    """Whether ``folder`` is a run that the consent registry does not hold and that is, or may be, of a course (its
    record says so, or cannot be read): a copy, or a run whose registration failed. No withdrawal or purge can reach
    it."""
    if folder in registered:
        return False
    try:
        record = SessionRecord.read(folder / SESSION_JSON)
    except UserError:
        return True  # its course cannot be told: fails closed
    return bool(record.consent.course or record.config.consent.course)


def served_runs() -> tuple[dict[str, Path], list[str]]:
    """The run folders the app shows and serves, by key, and the keys it leaves out because they are runs of a course,
    or unreadable ones, that the registry does not hold (``_registry_lost``): showing them would keep a withdrawn
    student's rows in view."""
    registered = {session.run_dir.resolve() for session in registry().sessions()}
    served, lost = {}, []
    for key, folder in run_folders(current_app.config["RUNS"]).items():
        if _registry_lost(folder, registered):
            lost.append(key)
        else:
            served[key] = folder
    return served, lost


def run_folder(key: str) -> Path:
    """The run folder of ``key``; 404 when there is none or it is not served (``served_runs``)."""
    folder = served_runs()[0].get(key)
    if folder is None:
        abort(404, f"no session {key!r} under the runs folder")
    return folder


def _version(folders: list[Path]) -> tuple:
    """Name, size and modification time of every table and record in ``folders``: what the charts are drawn from."""
    files = [path for folder in folders for path in sorted(folder.iterdir()) if path.suffix in TABLE_SUFFIXES]
    return tuple((str(path), path.stat().st_size, path.stat().st_mtime_ns) for path in files)


def forget_charts() -> None:
    """Drop every drawn chart: after a withdrawal or a purge none drawn from the removed rows may stay in memory."""
    current_app.extensions.get("charts", OrderedDict()).clear()


def _cached_chart(key: tuple, name: str, draw: Callable[[], dict[str, bytes]]) -> Response:
    """Chart ``name`` of the set ``draw`` makes, drawn once per ``key`` (a set of folders and their version)."""
    cache: OrderedDict = current_app.extensions.setdefault("charts", OrderedDict())
    if key not in cache:
        cache[key] = draw()
        while len(cache) > CHART_CACHE:
            cache.popitem(last=False)
    cache.move_to_end(key)
    if name not in cache[key]:
        abort(404, f"no {name} chart here")
    return Response(cache[key][name], mimetype="image/png")


def _course_runs(code: str) -> list[tuple[str, Run]]:
    runs = []
    for key, folder in served_runs()[0].items():
        try:
            run = load_run(folder, tables=False)
        except UserError:
            continue  # the sessions list names unreadable runs
        if run.course == code:
            runs.append((key, run))
    if not runs:
        abort(404, f"no session of course {code!r} under the runs folder")
    return sorted(runs, key=lambda item: item[1].session.created)


def _row(key: str, run: Run) -> dict[str, Any]:
    return {
        "key": key, "title": run.title, "course": run.course or "not set",
        "date": run.session.created[:10] or "unknown",
        "duration_s": run.duration_s, "score": run.summary.get("session_score"),
        "students": len(run.students), "excluded": run.people_excluded,
    }


@blueprint.get("/")
def index() -> str:
    """Every run: date, course, duration, session score, students analysed and excluded by consent."""
    rows, unreadable = [], []
    served, lost = served_runs()
    for key, folder in served.items():
        try:
            rows.append(_row(key, load_run(folder, tables=False)))
        except UserError as error:
            unreadable.append(str(error))
    rows.sort(key=lambda row: (row["date"], row["key"]), reverse=True)
    return render_template("sessions.html.j2", rows=rows, unreadable=unreadable, lost=lost)


@blueprint.get("/courses/<code>")
def course(code: str) -> str:
    """The course view of ``engagement report --compare``: every session of the course, their scores and states."""
    runs = _course_runs(code)
    context = comparison_context([run for _, run in runs], draw_charts=False)
    return render_template("course_view.html.j2", code=code, report=context, keys=[key for key, _ in runs])


@blueprint.get("/courses/<code>/charts/<name>.png")
def course_chart(code: str, name: str) -> Response:
    runs = _course_runs(code)
    folders = [run.path for _, run in runs]
    return _cached_chart(("course", code, _version(folders)), name, lambda: comparison_charts([run for _, run in runs]))


@blueprint.get("/sessions/<path:key>")
def session_page(key: str) -> str:
    """One run: the annotated video, the report's charts (timeline, states, students), the state shares, downloads."""
    folder = run_folder(key)
    try:
        run = load_run(folder)
        context = session_overview(run)
    except UserError as error:
        abort(404, str(error))
    downloads = sorted({path.name for pattern in DOWNLOADS for path in folder.glob(pattern) if path.is_file()})
    return render_template("session.html.j2", key=key, run=run, report=context, downloads=downloads,
                           row=_row(key, run), students=run.students)


@blueprint.get("/charts/<path:key>/-/<name>.png")
def session_chart(key: str, name: str) -> Response:
    """One chart of a session's page (``timeline``, ``states``, ``heatmap``)."""
    folder = run_folder(key)

    def draw() -> dict[str, bytes]:
        try:
            return session_charts(load_run(folder))
        except UserError as error:
            abort(404, str(error))

    return _cached_chart(("session", str(folder), _version([folder])), name, draw)


@blueprint.get("/files/<path:key>/-/<path:name>")
def run_file(key: str, name: str) -> Any:
    """A file of a run, with HTTP range requests (video seeking); anything resolving outside the run is a 404."""
    path = file_in(run_folder(key), name)
    if path is None:
        abort(404, "no such file in this session")
    return send_file(path, conditional=True, as_attachment=path.suffix not in INLINE)
