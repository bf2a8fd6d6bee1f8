"""Remove a person's rows from the outputs of analysed sessions (withdrawal) or whole outputs (retention).

A run directory holds tables keyed by ``track_id`` (``*.parquet`` and ``*.csv``), a ``summary.json``
whose ``students`` list holds one object per track, and rendered media (``annotated*.mp4``,
``report.*``). Tables and summary are rewritten without the withdrawn tracks (the summary's class-level
figures recomputed from the cleaned states table, or dropped); rendered media show or
describe everyone, so they are deleted and must be re-rendered from the cleaned tables.
Every rewrite goes to a temp file in the same folder and replaces the original atomically.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from engagement.consent.registry import Registry
from engagement.files import write_atomic

RENDERED_PATTERNS = ("annotated*.mp4", "report.*")
KNOWN_OUTPUT_PATTERNS = ("*.parquet", "*.csv", "summary.json", *RENDERED_PATTERNS)
CLASS_AGGREGATES = ("session_score", "timeline", "state_share")  # summary.json figures over every student


def _scrub_table(path: Path, track_ids: set[int]) -> int:
    import pandas as pd

    table = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    if "track_id" not in table.columns:
        return 0
    keep = ~table["track_id"].isin(track_ids)
    removed = int((~keep).sum())
    if removed:
        kept = table[keep]
        if path.suffix == ".parquet":
            write_atomic(path, lambda stream: kept.to_parquet(stream, index=False))
        else:
            write_atomic(path, lambda stream: kept.to_csv(stream, index=False))
    return removed


def _scrub_summary(path: Path, track_ids: set[int]) -> int:
    """Drop the tracks' entries and recompute the class-level figures without them."""
    summary = json.loads(path.read_text())
    people = summary.get("students", [])
    kept = [p for p in people if int(p.get("track_id", -1)) not in track_ids]
    removed = len(people) - len(kept)
    if removed:
        summary["students"] = kept
        summary["withdrawn_removed"] = int(summary.get("withdrawn_removed", 0)) + removed
        for key in CLASS_AGGREGATES:
            summary.pop(key, None)
        summary.update(_class_aggregates(path.parent / "states.parquet", summary))
        write_atomic(path, lambda stream: stream.write(json.dumps(summary, indent=2).encode()))
    return removed


def _class_aggregates(states_path: Path, summary: dict[str, Any]) -> dict[str, Any]:
    """Session score, timeline and state shares from the (already scrubbed) states table; none when it cannot
    be read, so that no figure computed with the withdrawn person's rows survives."""
    import pandas as pd

    from engagement.scoring import summarize

    try:
        states = pd.read_parquet(states_path)
        _, fresh = summarize(states, float(summary["duration_s"]), int(summary.get("people_excluded", 0)))
    except (OSError, KeyError, TypeError, ValueError):
        return {}
    return {key: fresh[key] for key in CLASS_AGGREGATES}


def remove_tracks(run_dir: Path, track_ids: set[int]) -> dict[str, Any]:
    """Delete every row about ``track_ids`` in ``run_dir`` and its rendered media; returns what was removed."""
    rows: dict[str, int] = {}
    if run_dir.is_dir() and track_ids:
        for path in sorted([*run_dir.glob("*.parquet"), *run_dir.glob("*.csv")]):
            rows[path.name] = _scrub_table(path, track_ids)
        summary = run_dir / "summary.json"
        if summary.is_file():
            rows[summary.name] = _scrub_summary(summary, track_ids)
    deleted = _delete(run_dir, RENDERED_PATTERNS) if any(rows.values()) else []
    return {"run_dir": str(run_dir), "rows_removed": {k: v for k, v in rows.items() if v}, "files_deleted": deleted}


def delete_outputs(run_dir: Path) -> dict[str, Any]:
    """Delete a run's known outputs (tables, summary, media) and the folder if nothing else is left."""
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


def withdraw_student(registry: Registry, student: str, course: str | None = None) -> list[dict[str, Any]]:
    """Withdraw a student and remove their rows from every recorded session; the audit log gets the list."""
    removals = []
    for session in registry.withdraw(student, course):
        tracks = {t for t, s in session.track_students.items() if s == student}
        removed = {"session": session.id, **remove_tracks(session.run_dir, tracks)}
        registry.log("outputs_scrubbed", student, **removed)
        removals.append(removed)
    return removals


def purge_sessions(registry: Registry, older_than_days: int, course: str | None = None) -> list[dict[str, Any]]:
    """Delete the outputs and registry entries of sessions held more than ``older_than_days`` ago."""
    cutoff = dt.date.today() - dt.timedelta(days=older_than_days)
    purged = []
    for session in registry.sessions(course=course, held_before=cutoff):
        removed = {"session": session.id, "held_on": session.held_on, **delete_outputs(session.run_dir)}
        registry.forget_session(session.id, removed)
        purged.append(removed)
    return purged
