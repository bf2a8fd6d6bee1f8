"""Read a run directory written by ``engagement process`` into one object the report templates can use.

Every file except ``session.json`` may be missing (a run without video, a session nobody consented to):
the loader returns empty tables and ``None`` instead, so the report can say what is absent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from engagement.errors import UserError
from engagement.files import ANNOTATED_MP4, SCORES_CSV, SESSION_JSON, STATES_PARQUET, SUMMARY_JSON
from engagement.records import read_json_object
from engagement.session import SessionRecord


def readable_name(name: str) -> str:
    """A state or model-role name as people read it: ``taking_notes`` -> ``taking notes``."""
    return name.replace("_", " ")


@dataclass
class Run:
    """The files of one run directory; tables are empty and optional parts ``None`` when absent."""

    path: Path
    session: SessionRecord
    summary: dict[str, Any] = field(default_factory=dict)
    scores: pd.DataFrame = field(default_factory=pd.DataFrame)
    states: pd.DataFrame = field(default_factory=pd.DataFrame)
    video: Path | None = None

    @property
    def students(self) -> list[dict[str, Any]]:
        return list(self.summary.get("students") or [])

    @property
    def people_excluded(self) -> int:
        return self.session.consent.people_excluded or int(self.summary.get("people_excluded") or 0)

    @property
    def people_tracked(self) -> int:
        """Confirmed tracks, analysed or not; the analysed students when the run did not record tracking."""
        return self.session.tracking.confirmed_tracks or len(self.students)

    @property
    def instructors(self) -> list[int]:
        """The tracks marked as the instructor: tracked, never analysed."""
        return list(self.session.tracking.instructor_tracks or [])

    @property
    def duration_s(self) -> float:
        return self.session.input.duration_s

    @property
    def course(self) -> str | None:
        return self.session.consent.course or self.session.config.consent.course

    @property
    def title(self) -> str:
        """Course and session names as configured (a course alone with the run folder's name, so that two runs of one
        course tell apart), else the input video's file name."""
        if self.course and not self.session.config.consent.session:
            return f"{self.course} - {self.path.name}"
        parts = [part for part in (self.course, self.session.config.consent.session) if part]
        return " - ".join(parts) if parts else Path(self.session.input.path or self.path.name).name


def load_run(run_dir: Path, tables: bool = True) -> Run:
    """Load ``run_dir``; a missing folder or one without ``session.json`` is a UserError. Without ``tables`` only
    the two JSON files are read (a listing of many runs)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"run directory not found: {run_dir}")
    if not (run_dir / SESSION_JSON).is_file():
        raise UserError(f"{run_dir} is not a run directory (no {SESSION_JSON})")
    summary = run_dir / SUMMARY_JSON
    video = run_dir / ANNOTATED_MP4
    return Run(
        path=run_dir,
        session=SessionRecord.read(run_dir / SESSION_JSON),
        summary=read_json_object(summary) if summary.is_file() else {},
        scores=_read_table(run_dir / SCORES_CSV, ["track_id", "minute", "score", "n_frames"]) if tables else pd.DataFrame(),
        states=_read_table(run_dir / STATES_PARQUET, ["frame", "time_s", "track_id", "state"]) if tables else pd.DataFrame(),
        video=video if video.is_file() else None,
    )


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
