"""Read a run directory written by ``engagement process`` into one object the report templates can use.

Every file except ``session.json`` may be missing (a run without video, a session nobody consented to):
the loader returns empty tables and ``None`` instead, so the report can say what is absent.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from engagement.errors import UserError


def readable_name(name: str) -> str:
    """A state or model-role name as people read it: ``taking_notes`` -> ``taking notes``."""
    return name.replace("_", " ")


@dataclass
class Run:
    """The files of one run directory; tables are empty and optional parts ``None`` when absent."""

    path: Path
    session: dict[str, Any]
    summary: dict[str, Any] = field(default_factory=dict)
    scores: pd.DataFrame = field(default_factory=pd.DataFrame)
    states: pd.DataFrame = field(default_factory=pd.DataFrame)
    video: Path | None = None

    @property
    def students(self) -> list[dict[str, Any]]:
        return list(self.summary.get("students") or [])

    @property
    def people_excluded(self) -> int:
        consent = self.session.get("consent") or {}
        return int(consent.get("people_excluded") or self.summary.get("people_excluded") or 0)

    @property
    def people_tracked(self) -> int:
        """Confirmed tracks, analysed or not; the analysed students when the run did not record tracking."""
        tracking = self.session.get("tracking") or {}
        return int(tracking.get("confirmed_tracks") or len(self.students))

    @property
    def duration_s(self) -> float:
        return float((self.session.get("input") or {}).get("duration_s") or 0.0)

    @property
    def course(self) -> str | None:
        """The course code the run was analysed for, as recorded or as configured."""
        consent = self.session.get("consent") or {}
        config_consent = (self.session.get("config") or {}).get("consent") or {}
        return consent.get("course") or config_consent.get("course")

    @property
    def title(self) -> str:
        """Course and session names as configured, else the input video's file name."""
        name = ((self.session.get("config") or {}).get("consent") or {}).get("session")
        parts = [part for part in (self.course, name) if part]
        return " - ".join(parts) if parts else Path((self.session.get("input") or {}).get("path") or self.path.name).name


def load_run(run_dir: Path, tables: bool = True) -> Run:
    """Load ``run_dir``; a missing folder or one without ``session.json`` is a UserError. Without ``tables`` only
    the two JSON files are read (a listing of many runs)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"run directory not found: {run_dir}")
    session = _read_json(run_dir / "session.json", required=True)
    return Run(
        path=run_dir,
        session=session,
        summary=_read_json(run_dir / "summary.json", required=False),
        scores=_read_table(run_dir / "scores.csv", ["track_id", "minute", "score", "n_frames"]) if tables else pd.DataFrame(),
        states=_read_table(run_dir / "states.parquet", ["frame", "time_s", "track_id", "state"]) if tables else pd.DataFrame(),
        video=run_dir / "annotated.mp4" if (run_dir / "annotated.mp4").is_file() else None,
    )


def _read_json(path: Path, required: bool) -> dict[str, Any]:
    if not path.is_file():
        if required:
            raise UserError(f"{path.parent} is not a run directory (no {path.name})")
        return {}
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UserError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a JSON object")
    return data


def _read_table(path: Path, columns: list[str]) -> pd.DataFrame:
    """A CSV or Parquet table with at least ``columns``; empty when the file is absent."""
    if not path.is_file():
        return pd.DataFrame(columns=columns)
    try:
        table = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    except Exception as error:  # pyarrow and the CSV parser raise many unrelated types for a corrupt file
        raise UserError(f"{path}: cannot read ({type(error).__name__}: {error})") from None
    missing = [column for column in columns if column not in table.columns]
    if missing:
        raise UserError(f"{path}: missing column {missing[0]!r}")
    return table
