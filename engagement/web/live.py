"""Live page: a camera, stream or video file analysed by the real webcam pipeline, shown as an MJPEG stream.

Frames come from ``engagement.live.LiveView``, so they are anonymized by the Renderer before they are
encoded; nothing else of the source leaves the process. One analysis runs at a time, on a background thread.
With *record*, the same anonymized frames are written to ``RUNS/live-recordings/live-<UTC time>.mp4`` (kept when the
view stops or its source ends; a failed analysis keeps nothing). The retention purge deletes them.
"""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path
from typing import Any, Iterator

from flask import Blueprint, Response, abort, current_app, flash, redirect, render_template, request, send_file, url_for

from engagement.consent.outputs import LIVE_RECORDING_NAME, LIVE_RECORDINGS
from engagement.report.charts import STATE_COLOURS
from engagement.report.run import readable_name
from engagement.web.app import file_in

blueprint = Blueprint("live", __name__, url_prefix="/live")
BOUNDARY = "frame"
JPEG_QUALITY = 80


class LiveStream:
    """The app's one live analysis: started on a source, stopped, and read as JPEG frames with its rates."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.jpeg: bytes | None = None
        self.sequence = 0
        self.stats: dict[str, Any] = {}
        self.error: str | None = None
        self.source: str | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, source: str, record: Path | None = None) -> None:
        """Analyse ``source`` (camera index, stream URL or video file) instead of whatever ran before; with
        ``record``, also write the anonymized view to that file."""
        from engagement.live import Recording

        self.stop()
        self._stop.clear()
        recording = Recording(record) if record is not None else None
        self.jpeg, self.stats, self.error, self.source = None, {}, None, source
        self._thread = threading.Thread(target=self._run, args=(source, recording), name="live", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._thread = None

    def _run(self, source: str, recording: Any) -> None:
        import cv2

        from engagement.config import load_pipeline
        from engagement.live import LiveView

        try:
            config = load_pipeline("webcam")
            view = LiveView(source, config)
        except Exception as error:  # a bad source, configuration or missing models: shown on the page
            self._fail(error)
            return
        completed = False
        try:
            if recording is not None:
                recording.open(view.info, config.output.crf)
            for image in view:
                if self._stop.is_set():
                    break
                if recording is not None:
                    recording.write(image)
                jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])[1].tobytes()
                with self._changed:
                    self.jpeg, self.sequence, self.stats = jpeg, self.sequence + 1, view.stats()
                    self._changed.notify_all()
            completed = True
        except Exception as error:
            self._fail(error)
        finally:
            view.close()
            if recording is not None:
                try:
                    recording.close(keep=completed)
                except Exception as error:
                    self._fail(error)
            with self._changed:
                self._changed.notify_all()

    def _fail(self, error: Exception) -> None:
        self.error = str(error).splitlines()[0] if str(error) else type(error).__name__
        with self._changed:
            self._changed.notify_all()

    def frames(self) -> Iterator[bytes]:
        """Multipart parts of each new frame while the analysis runs (the newest frame; slow readers skip)."""
        seen = 0
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self.sequence != seen or not self.running, timeout=1.0)
                jpeg, fresh = self.jpeg, self.sequence != seen
                seen = self.sequence
            if fresh and jpeg is not None:
                yield (f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n").encode() + jpeg + b"\r\n"
            elif not self.running:
                return


def _stream() -> LiveStream:
    return current_app.extensions.setdefault("live", LiveStream())


def _recordings() -> Path:
    return current_app.config["RUNS"] / LIVE_RECORDINGS


@blueprint.get("/")
def page() -> str:
    """The stream, its measured rates and class score, the legend of states, start/stop/record and the recordings."""
    legend = [{"label": readable_name(state), "colour": colour} for state, colour in STATE_COLOURS.items()]
    folder = _recordings()
    recordings = sorted(path.name for path in folder.glob("live-*.mp4")) if folder.is_dir() else []
    return render_template("live.html.j2", live=_stream(), legend=legend, recordings=recordings)


@blueprint.post("/start")
def start() -> Any:
    from engagement.errors import UserError

    source = request.form.get("source", "").strip()
    if not source:
        flash("give a camera index (0), a stream URL or a video file", "error")
        return redirect(url_for("live.page"))
    record = None
    if request.form.get("record"):
        _recordings().mkdir(mode=0o700, exist_ok=True)
        record = _recordings() / dt.datetime.now(dt.timezone.utc).strftime(LIVE_RECORDING_NAME)
    try:
        _stream().start(source, record)
    except UserError as error:
        flash(str(error), "error")
    return redirect(url_for("live.page"))


@blueprint.get("/recordings/<name>")
def recording(name: str) -> Any:
    """A recorded live view (already anonymized)."""
    path = file_in(_recordings(), name) if name.startswith("live-") else None
    if path is None or path.parent != _recordings().resolve():
        abort(404, "no such recording")
    return send_file(path, conditional=True)


@blueprint.post("/stop")
def stop() -> Any:
    _stream().stop()
    return redirect(url_for("live.page"))


@blueprint.get("/stream.mjpg")
def stream() -> Response:
    """``multipart/x-mixed-replace``: one JPEG part per analysed, anonymized frame."""
    return Response(_stream().frames(), mimetype=f"multipart/x-mixed-replace; boundary={BOUNDARY}")


@blueprint.get("/stats")
def stats() -> dict[str, Any]:
    """Whether it runs, frames shown and analysed and their rates, or the error that stopped it."""
    live = _stream()
    return {"running": live.running, "error": live.error, **live.stats}
