"""Seat plan pages: per room, a reference frame from a camera; the instructor draws seat polygons by clicks, names
them and marks non-participating seats; the plan is stored in the registry (as ``engagement seats import``).

The reference frame never shows a face: it is a frame of a session's annotated video (already anonymized) or of an
uploaded video with every face blurred (as ``engagement seats check``), kept in memory only.
"""

from __future__ import annotations

import json
import math
import re
import tempfile
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, abort, current_app, flash, redirect, render_template, request, url_for

from engagement.consent.seatplan import SeatPlan
from engagement.errors import UserError
from engagement.files import ANNOTATED_MP4, SESSION_JSON
from engagement.session import SessionRecord
from engagement.web.app import registry
from engagement.web.sessions import run_folder, served_runs

blueprint = Blueprint("seats", __name__, url_prefix="/seats")
UPLOADED = "uploaded"  # the ``source`` of a reference frame taken from an uploaded video
FACES_OF_CONSENTING_ONLY = ("unconsented", "all")  # blur policies whose videos may serve as reference frames


def _room_or_404(room: str) -> str:
    if not room.strip() or len(room) > 64 or room != room.strip() or any(ord(c) < 32 for c in room):
        abort(404, "a room name is 1 to 64 characters, without spaces at either end or control characters")
    return room


def _seconds(value: str | None) -> float:
    """A time in a video from a form or query; anything that is not a finite number of seconds is a UserError."""
    try:
        seconds = float(value or 0)
    except ValueError:
        raise UserError(f"not a time in seconds: {value!r}") from None
    if not math.isfinite(seconds) or seconds < 0:
        raise UserError(f"not a time in seconds: {value!r}")
    return seconds


def _stored_plan(room: str) -> SeatPlan | str:
    """The room's stored plan, or why it cannot be used: a plan stored before a check was added (edges that cross)
    is refused on reading, as ``engagement process`` refuses it, and must be drawn again."""
    try:
        return registry().seat_plan(room)
    except UserError as error:
        return f"{error}: draw the plan again"


def _plan(room: str) -> SeatPlan | None:
    """The room's usable plan, None for none; a stored plan that cannot be used is named in an error message."""
    plan = _stored_plan(room) if room in registry().rooms() else None
    if isinstance(plan, str):
        flash(plan, "error")
        return None
    return plan


@blueprint.get("/")
def index() -> Any:
    """The rooms with a seat plan, and where to start a new one (``?room=NAME`` opens that room's page)."""
    if request.args.get("room"):
        return redirect(url_for("seats.editor", room=request.args["room"].strip()))
    stored = {room: _stored_plan(room) for room in registry().rooms()}
    return render_template("seats.html.j2", plans=[p for p in stored.values() if isinstance(p, SeatPlan)],
                           broken={room: why for room, why in stored.items() if isinstance(why, str)},
                           sessions=list(served_runs()[0]))


@blueprint.get("/<room>")
def editor(room: str) -> str:
    """The drawing page of ``room``: its plan so far over a reference frame (``source``: a session key or
    ``uploaded``; ``t``: seconds into it)."""
    room = _room_or_404(room)
    plan = _plan(room)
    sessions = [key for key, folder in served_runs()[0].items() if (folder / ANNOTATED_MP4).is_file()]
    source = request.args.get("source") or (sessions[-1] if sessions else "")
    time_s = request.args.get("t", "0")
    return render_template("seat_editor.html.j2", room=room, plan=plan.to_dict() if plan else None, sessions=sessions,
                           source=source, time_s=time_s, has_upload=room in _uploads())


@blueprint.get("/<room>/frame.png")
def frame(room: str) -> Response:
    """The reference frame as PNG: a session's annotated video at ``t`` seconds, or the room's uploaded frame."""
    from engagement.sources import read_frame_at

    room = _room_or_404(room)
    source = request.args.get("source", "")
    if source == UPLOADED:
        if room not in _uploads():
            abort(404, "no uploaded reference frame for this room: upload a video first")
        return Response(_uploads()[room], mimetype="image/png")
    folder = run_folder(source)
    video = folder / ANNOTATED_MP4
    if not video.is_file():
        abort(404, "this session has no annotated video (deleted on a withdrawal?); pick another session or upload a video")
    policy = SessionRecord.read(folder / SESSION_JSON).config.consent.blur
    if policy not in FACES_OF_CONSENTING_ONLY:
        abort(404, f"this session was made with consent.blur {policy}, which shows faces without a consent record; "
                   "pick another session or upload a video")
    try:
        image, _, _ = read_frame_at(video, _seconds(request.args.get("t")), last_if_past_end=True)
    except UserError as error:
        abort(404, f"no reference frame: {error}")
    if image is None:
        abort(404, "no reference frame at that time")
    return Response(_png(image), mimetype="image/png")


@blueprint.post("/<room>/upload")
def upload(room: str) -> Any:
    """A reference frame from an uploaded video, every face blurred; anything that is not a readable video is
    refused with one message, and nothing changes."""
    room = _room_or_404(room)
    sent = request.files.get("video")
    if sent is None or not sent.filename:
        flash("choose a video file to take the reference frame from", "error")
        return redirect(url_for("seats.editor", room=room))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / ("upload" + Path(sent.filename).suffix.lower()[:8])
        sent.save(path)
        try:
            image = _blurred_frame(path, _seconds(request.form.get("t")))
        except UserError as error:
            flash(f"not used: {error}".replace(str(path), sent.filename), "error")
            return redirect(url_for("seats.editor", room=room))
    _uploads()[room] = _png(image)
    return redirect(url_for("seats.editor", room=room, source=UPLOADED))


@blueprint.post("/<room>")
def save(room: str) -> Any:
    """Store the drawn plan (a JSON field, checked like a YAML import); a malformed plan changes nothing."""
    room = _room_or_404(room)
    try:
        data = json.loads(request.form.get("plan", ""))
        if isinstance(data, dict):
            data["room"] = room
        plan = SeatPlan.from_dict(data, f"seat plan of room {room}")
    except (json.JSONDecodeError, RecursionError):  # nested beyond what the parser recurses into
        flash("not saved: the plan is not valid JSON", "error")
    except UserError as error:
        flash(f"not saved: {error}", "error")
    else:
        registry().save_seat_plan(plan)
        flash(f"room {room}: seat plan saved ({len(plan.seats)} seats, "
              f"{sum(not seat.participating for seat in plan.seats)} non-participating)", "info")
    return redirect(url_for("seats.editor", room=room, source=request.form.get("source", ""), t=request.form.get("t", "0")))


@blueprint.get("/<room>/plan.yaml")
def export(room: str) -> Response:
    """The room's plan as YAML (``engagement seats import`` reads it)."""
    if _room_or_404(room) not in registry().rooms():
        abort(404, f"room {room!r} has no seat plan")
    plan = _stored_plan(room)
    if isinstance(plan, str):
        abort(404, plan)
    filename = re.sub(r"[^A-Za-z0-9._-]", "_", room)
    return Response(plan.to_yaml(), mimetype="application/x-yaml",
                    headers={"Content-Disposition": f'attachment; filename="{filename}.yaml"'})


def _uploads() -> dict[str, bytes]:
    return current_app.extensions.setdefault("seat_frames", {})


def _png(image: Any) -> bytes:
    import cv2

    return cv2.imencode(".png", image)[1].tobytes()


def _blurred_frame(path: Path, time_s: float) -> Any:
    from engagement.config import load_pipeline
    from engagement.seats import blurred_frame, read_frame

    image, fps = read_frame(str(path), time_s)
    return blurred_frame(image, fps, load_pipeline("lecture"))[0]
