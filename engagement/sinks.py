"""Output edges: the run directory, the H.264 video writer and streaming tables."""

from __future__ import annotations

import glob
import json
import logging
import os
import queue
import re
import shutil
import socket
import threading
from fractions import Fraction
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from engagement.detections import COCO_KEYPOINTS, Detections
from engagement.errors import OutputError, UserError, os_error_reason
from engagement.files import SESSION_JSON

# Arrow's default allocator (jemalloc/mimalloc) kept growing the resident memory of a long run by about
# 1 GB a minute once MediaPipe's threads were busy (measured on a 10-minute video); the system
# allocator keeps it flat. Our tables are small per frame, so its speed does not matter here.
pa.set_memory_pool(pa.system_memory_pool())

log = logging.getLogger(__name__)

# ``.NAME.partial-PID@HOST`` (a run folder) or ``.NAME.partial-PID.mp4`` (a live recording) being written by process
# PID on machine HOST (no host: this machine). The host keeps a machine from judging another machine's PIDs when
# several write into one shared folder (a cluster batch).
PARTIAL_NAME = re.compile(r"\..+\.partial-(?P<pid>[0-9]+)(@(?P<host>[A-Za-z0-9_.-]+?))?(\.mp4)?")
TIME_BASE = Fraction(1, 90000)  # the MPEG clock: exact for 24, 25, 30, 50, 60 fps and their 1000/1001 variants


def is_run(folder: Path) -> bool:
    """Whether ``folder`` holds this project's ``session.json`` (a JSON object with ``engagement_version``)."""
    try:
        session = json.loads((folder / SESSION_JSON).read_text())
    except (OSError, ValueError):  # unreadable, not UTF-8 or not JSON
        return False
    return isinstance(session, dict) and "engagement_version" in session


def _is_empty(folder: Path) -> bool:
    try:
        return next(folder.iterdir(), None) is None
    except OSError:
        return False


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):  # another user's process, or a number no PID can be: keep its files
        return True
    return not _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    """Whether ``pid`` has exited and only waits for its parent to collect it (Linux; False where there is no /proc)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[:1] == ["Z"]


def remove_stale_partials(parent: Path) -> list[Path]:
    """Remove the partial outputs in ``parent`` whose writing process no longer exists (killed mid-run); returns them.

    A partial of a live process (another run still writing) or of another machine is left alone.
    """
    try:
        entries = list(parent.iterdir())
    except OSError:
        return []
    removed = []
    for entry in entries:
        match = PARTIAL_NAME.fullmatch(entry.name)
        if match is None or match["host"] not in (None, socket.gethostname()) or _process_exists(int(match["pid"])):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        if not entry.exists():
            log.warning("removed %s, left by an interrupted run", entry)
            removed.append(entry)
    return removed


def remove_partials(final: Path) -> list[Path]:
    """Remove every partial folder of the run ``final``, from any process or machine; returns them. Only for a
    caller that knows no attempt at this run is still writing (a batch whose tasks have all ended)."""
    removed = []
    for entry in final.parent.glob(f".{glob.escape(final.name)}.partial-*"):
        if PARTIAL_NAME.fullmatch(entry.name) and entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


class RunDirectory:
    """A run's output folder, built in a hidden temporary sibling and renamed into place on success.

    A crash or an interrupt removes the temporary folder, so a half-written run never looks complete; the
    temporary folders of killed runs are removed by the next run in the same parent folder. ``overwrite``
    replaces only a run or an empty folder, never a folder of other files.
    """

    def __init__(self, final: str | os.PathLike, overwrite: bool = False) -> None:
        self.final = Path(final)
        if self.final.exists() and not overwrite:
            raise UserError(f"{self.final} already exists (use --overwrite to replace it)")
        if self.final.exists() and not self.final.is_dir():
            raise UserError(f"{self.final} exists and is not a directory")
        if self.final.exists() and not (is_run(self.final) or _is_empty(self.final)):
            raise UserError(f"{self.final} is not a run (it has no {SESSION_JSON} of this project): --overwrite replaces only runs; nothing was deleted")
        self.overwrite = overwrite
        self.path = self.final.parent / f".{self.final.name}.partial-{os.getpid()}@{socket.gethostname()}"

    def __enter__(self) -> Path:
        try:
            self.final.parent.mkdir(parents=True, exist_ok=True)
            remove_stale_partials(self.final.parent)
            shutil.rmtree(self.path, ignore_errors=True)
            self.path.mkdir(mode=0o700)  # a run describes people: readable by its owner only, whatever the umask
            self.path.chmod(0o700)
        except OSError as error:
            raise OutputError(f"cannot create output directory {self.final}: {error.strerror}") from None
        return self.path

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is not None:
            shutil.rmtree(self.path, ignore_errors=True)
            if isinstance(exc, OSError):  # a full disk or a read-only place: say which run, and that none of it is left
                raise OutputError(f"cannot write {self.final}: {os_error_reason(exc)}; nothing of the run was kept") from exc
            return
        if self.final.exists():
            # named as a partial: if this process dies before removing it, the next run here removes it
            old = self.final.parent / f".{self.final.name}.old.partial-{os.getpid()}@{socket.gethostname()}"
            os.replace(self.final, old)
            os.replace(self.path, self.final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(self.path, self.final)


# Set over the ultrafast preset, which turns off CABAC, B-frames and deblocking: they cost little CPU and save nearly
# half of its bytes at a PSNR as high as superfast's (docs/benchmarks.md). The slower presets have them already.
X264_PARAMS = "cabac=1:bframes=3:deblock=1"


class VideoWriter:
    """H.264 (yuv420p, browser-playable) MP4 writer; encodes on a background thread from a bounded queue."""

    def __init__(self, path: str | os.PathLike, fps: float, width: int, height: int, crf: int = 23, preset: str = "ultrafast", buffer: int = 8) -> None:
        import av

        self.path = Path(path)
        self._container = av.open(str(self.path), mode="w")
        self._stream = self._container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        self._stream.width = width - width % 2
        self._stream.height = height - height % 2
        self._stream.pix_fmt = "yuv420p"
        self._stream.options = {"crf": str(crf), "preset": preset, "movflags": "+faststart",
                                **({"x264-params": X264_PARAMS} if preset == "ultrafast" else {})}
        # Frames carry their own presentation times (a variable-frame-rate input keeps its timing), in a clock fine
        # enough for any frame rate.
        self._stream.codec_context.time_base = TIME_BASE
        self._fps = fps
        self._written = 0
        self._queue: queue.Queue = queue.Queue(maxsize=buffer)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._encode, name="encode", daemon=True)
        self._thread.start()

    def _encode(self) -> None:
        import av

        while (item := self._queue.get()) is not None:
            if self._error is not None:
                continue
            frame, time_s = item
            try:
                image = np.ascontiguousarray(frame[: self._stream.height, : self._stream.width])
                # OpenCV's BT.601 conversion matches swscale's to half a level and costs a third as much.
                video_frame = av.VideoFrame.from_ndarray(cv2.cvtColor(image, cv2.COLOR_BGR2YUV_I420), format="yuv420p")
                video_frame.pts, video_frame.time_base = round(time_s / TIME_BASE), TIME_BASE
                self._container.mux(self._stream.encode(video_frame))
            except Exception as error:  # surfaced on the caller's thread by write()/close()
                self._error = error

    def write(self, frame: np.ndarray, time_s: float | None = None) -> None:
        """Queue ``frame`` to be shown at ``time_s`` seconds (default: the next frame period at ``fps``)."""
        if self._error is not None:
            raise self._error
        self._queue.put((frame, self._written / self._fps if time_s is None else time_s))
        self._written += 1

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        try:
            if self._error is None:
                self._container.mux(self._stream.encode(None))
        finally:
            self._container.close()
        if self._error is not None:
            raise self._error


def write_png(path: Path, image: np.ndarray) -> None:
    """Write ``image`` as a PNG atomically (a reader never sees half a file)."""
    from engagement.files import write_atomic

    ok, encoded = cv2.imencode(".png", image)
    if not ok:
        raise UserError(f"could not encode the {image.shape[1]}x{image.shape[0]} frame as PNG")
    write_atomic(path, lambda stream: stream.write(encoded.tobytes()))


def copy_audio(video_path: Path, audio_source: str, out_path: Path) -> bool:
    """Mux the audio streams of ``audio_source`` into ``video_path``, writing ``out_path``; False if it has none."""
    import av

    with av.open(audio_source) as source:
        audio = [s for s in source.streams if s.type == "audio"]
        if not audio:
            return False
        with av.open(str(video_path)) as video, av.open(str(out_path), "w") as output:
            out_video = output.add_stream_from_template(video.streams.video[0])
            out_audio = {s.index: output.add_stream_from_template(s) for s in audio}
            for packet in video.demux(video.streams.video[0]):
                if packet.dts is not None:
                    packet.stream = out_video
                    output.mux(packet)
            for packet in source.demux(*audio):
                if packet.dts is not None:
                    packet.stream = out_audio[packet.stream.index]
                    output.mux(packet)
    return True


def keypoint_columns() -> list[str]:
    return [f"{name}_{axis}" for name in COCO_KEYPOINTS for axis in ("x", "y", "score")]


TRACK_SCHEMA = pa.schema(
    [("frame", pa.int64()), ("time_s", pa.float64()), ("track_id", pa.int64()),
     ("x1", pa.float32()), ("y1", pa.float32()), ("x2", pa.float32()), ("y2", pa.float32()),
     ("confidence", pa.float32()), ("detected", pa.bool_())]
    + [(name, pa.float32()) for name in keypoint_columns()]
)


class TableWriter:
    """Append rows to a Parquet file in row groups, so memory stays flat however long the video.

    A row group is written at ``rows_per_group`` rows or ``appends_per_group`` appends, whichever comes
    first: each append is a small Arrow batch with fixed overhead per column, and a one-person video
    (one row per frame) held 20,000 of them, about 300 MB, before the bound on appends was added.
    """

    def __init__(self, path: str | os.PathLike, schema: pa.Schema, rows_per_group: int = 20_000, appends_per_group: int = 256) -> None:
        self.path = Path(path)
        self.schema = schema
        self.rows_per_group = rows_per_group
        self.appends_per_group = appends_per_group
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = 0
        self._writer = pq.ParquetWriter(str(self.path), schema)
        self.rows = 0

    def append(self, columns: dict[str, Any]) -> None:
        batch = pa.RecordBatch.from_pydict(columns, schema=self.schema)
        if batch.num_rows == 0:
            return
        self._pending.append(batch)
        self._pending_rows += batch.num_rows
        self.rows += batch.num_rows
        if self._pending_rows >= self.rows_per_group or len(self._pending) >= self.appends_per_group:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            self._writer.write_table(pa.Table.from_batches(self._pending, self.schema))
            self._pending, self._pending_rows = [], 0

    def close(self) -> None:
        self._flush()
        self._writer.close()


def track_rows(frame_index: int, time_s: float, detections: Detections) -> dict[str, Any]:
    """Columns of ``tracks.parquet`` for one frame's tracked rows."""
    keypoints = detections.keypoints.reshape(len(detections), len(COCO_KEYPOINTS) * 3)
    columns: dict[str, Any] = {
        "frame": np.full(len(detections), frame_index, np.int64),
        "time_s": np.full(len(detections), time_s),
        "track_id": detections.track_id,
        "x1": detections.xyxy[:, 0], "y1": detections.xyxy[:, 1],
        "x2": detections.xyxy[:, 2], "y2": detections.xyxy[:, 3],
        "confidence": detections.confidence,
        "detected": np.asarray(detections.data.get("detected", np.ones(len(detections), bool)), bool),
    }
    columns.update({name: keypoints[:, i] for i, name in enumerate(keypoint_columns())})
    return columns


def parquet_to_csv(parquet_path: Path, csv_path: Path) -> None:
    """Stream a Parquet file into CSV batch by batch."""
    with pa_csv.CSVWriter(str(csv_path), pq.read_schema(parquet_path)) as writer:
        for batch in pq.ParquetFile(parquet_path).iter_batches():
            writer.write_batch(batch)
