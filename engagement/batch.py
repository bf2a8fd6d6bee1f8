"""Many videos: one run directory each, a bounded number of worker processes, a summary table.

A video that fails is reported in the table and the others go on.
"""

from __future__ import annotations

import multiprocessing
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import pandas as pd

from engagement.config import PipelineConfig
from engagement.errors import UserError


def _process_one(video: Path, out: Path, config: PipelineConfig, overwrite: bool, report: bool, allow_partial: bool) -> dict[str, Any]:
    from engagement.pipeline import process_video

    row: dict[str, Any] = {"video": str(video), "run_dir": str(out)}
    try:
        session = process_video(str(video), out, config, overwrite=overwrite, quiet=True, report=report)
    except UserError as error:
        return {**row, "status": "failed", "error": str(error)}
    except Exception as error:  # one broken video must not stop the batch; the table says what happened
        return {**row, "status": "failed", "error": f"{type(error).__name__}: {error}"}
    seconds = session.timings_s["total"]
    complete = session.input.input_complete
    return {
        **row,
        "status": "ok" if complete or allow_partial else "partial",
        "error": "" if complete else f"decoded {session.input.frames_decoded} of {session.input.frames_expected} frames",
        "frames": session.input.frames,
        "duration_s": round(session.input.duration_s, 2),
        "wall_s": round(seconds, 2),
        "real_time_factor": round(session.input.duration_s / seconds, 2),
        "track_ids": session.tracking.confirmed_tracks,
        "people_excluded": session.consent.people_excluded,
    }


def run_dirs(videos: list[Path], parent: Path) -> list[Path]:
    """One run directory per video, named after the file; clashing names get a numeric suffix."""
    seen: dict[str, int] = {}
    dirs = []
    for video in videos:
        count = seen.get(video.stem, 0)
        seen[video.stem] = count + 1
        dirs.append(parent / (video.stem if count == 0 else f"{video.stem}-{count + 1}"))
    return dirs


def process_many(
    videos: list[Path], parent: Path, config: PipelineConfig, workers: int = 1, overwrite: bool = False, report: bool = True,
    allow_partial: bool = False,
) -> int:
    """Process ``videos`` into ``parent/<name>/``; writes and prints ``parent/batch_summary.csv``; returns the count of
    failed videos, and of videos that decoded to fewer frames than they declare unless ``allow_partial``."""
    if workers < 1:
        raise UserError(f"--workers must be at least 1, got {workers}")
    parent.mkdir(parents=True, exist_ok=True)
    jobs = list(zip(videos, run_dirs(videos, parent)))
    rows = []
    # Spawned, not forked: a fork copies the parent's threads' locks (decoder, MediaPipe, OpenMP) mid-use.
    with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(_process_one, video, out, config, overwrite, report, allow_partial): video for video, out in jobs}
        for future in as_completed(futures):
            row = future.result()
            rows.append(row)
            print(f"{row['status']:>6}  {row['video']}" + (f": {row['error']}" if row["error"] else ""), file=sys.stderr)
    table = pd.DataFrame(rows).sort_values("video")
    partial = parent / ".batch_summary.csv.partial"
    table.to_csv(partial, index=False)
    partial.replace(parent / "batch_summary.csv")
    print(table.to_string(index=False))
    return int((table.status != "ok").sum())
