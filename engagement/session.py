"""``session.json``: a run's provenance (input, models, resolved config, timings, tracking, consent), as one frozen
dataclass that the pipeline writes and every reader (report, closing line, batch table, benchmarks) reads.

The JSON keys are the field names; other tools read the file, so a field is added, never renamed. Reading follows
``engagement.records``: unknown keys are ignored and missing ones take the defaults below.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engagement.classifier.card import ModelCard
from engagement.config import PipelineConfig
from engagement.files import SESSION_JSON
from engagement.records import OMIT_IF_NONE, from_json, read_json_object, to_json, write_json


@dataclass(frozen=True)
class InputRecord:
    """The input video: ``path`` is the resolved file, or a camera's or stream's name (then ``sha256`` is None)."""

    path: str | None = None
    fps: float = 0.0
    frames: int = 0
    width: int = 0
    height: int = 0
    duration_s: float = 0.0
    sha256: str | None = None
    frames_expected: int | None = None  # what the container says it holds; None when it does not say
    frames_decoded: int = 0
    input_complete: bool = True  # False when decoding ended before the container said it would


@dataclass(frozen=True)
class ModelRecord:
    """A model's name, the file it was loaded from and that file's sha256."""

    name: str = ""
    file: str | None = None
    sha256: str | None = None


@dataclass(frozen=True)
class ClassifierRecord(ModelRecord):
    """The state classifier, with the model card of its weights."""

    card: ModelCard | None = None


@dataclass(frozen=True)
class ModelsRecord:
    """The models a run used; a stage that did not run has no entry."""

    detector: ModelRecord = field(default_factory=ModelRecord)
    face_detector: ModelRecord | None = field(default=None, metadata=OMIT_IF_NONE)
    face_landmarker: ModelRecord | None = field(default=None, metadata=OMIT_IF_NONE)
    palm_detector: ModelRecord | None = field(default=None, metadata=OMIT_IF_NONE)
    hand_landmarker: ModelRecord | None = field(default=None, metadata=OMIT_IF_NONE)
    classifier: ClassifierRecord | None = field(default=None, metadata=OMIT_IF_NONE)
    crop_model: ModelRecord | None = field(default=None, metadata=OMIT_IF_NONE)  # front view: upper-body crop model


@dataclass(frozen=True)
class TrackingRecord:
    """Confirmed track IDs and the ID ratio (IDs / most people in one frame), after stitching when a recording was
    stitched; the ``*_stitching`` fields and the instructor's tracks only for a recorded video (two passes)."""

    confirmed_tracks: int = 0
    max_people_in_frame: int = 0
    id_ratio: float | None = None
    tracklets_before_stitching: int | None = field(default=None, metadata=OMIT_IF_NONE)
    id_ratio_before_stitching: float | None = field(default=None, metadata=OMIT_IF_NONE)
    stitched: bool | None = field(default=None, metadata=OMIT_IF_NONE)
    instructor_tracks: list[int] | None = field(default=None, metadata=OMIT_IF_NONE)  # left out of the analytics


@dataclass(frozen=True)
class ConsentRecord:
    """The session's consent facts: blur policy, exclusions and, with a course, the registry's status counts."""

    policy: str = ""
    unknown: str = ""
    people_excluded: int = 0
    course: str | None = None
    form_version: str | None = None
    retention_days: int | None = None
    status_counts: dict[str, int] | None = None
    retention_until: str | None = None
    # Track id -> student id as the run decided it (the configured map, or with a seat plan the roster's student of
    # each track's seat) and track id -> seat: what withdrawal finds a student's rows by.
    track_students: dict[int, str] = field(default_factory=dict)
    room: str | None = field(default=None, metadata=OMIT_IF_NONE)
    track_seats: dict[int, str] | None = field(default=None, metadata=OMIT_IF_NONE)


@dataclass(frozen=True)
class SessionRecord:
    """Everything ``session.json`` holds."""

    engagement_version: str = ""
    created: str = ""  # ISO 8601, UTC
    input: InputRecord = field(default_factory=InputRecord)
    models: ModelsRecord = field(default_factory=ModelsRecord)
    config: PipelineConfig = field(default_factory=PipelineConfig)
    timings_s: dict[str, float] = field(default_factory=dict)  # per stage, and "total"
    frames_analysed: int = 0
    tracking: TrackingRecord = field(default_factory=TrackingRecord)
    consent: ConsentRecord = field(default_factory=ConsentRecord)
    versions: dict[str, str] = field(default_factory=dict)  # python and the main packages

    @classmethod
    def from_json(cls, data: Any) -> "SessionRecord":
        return from_json(cls, data, SESSION_JSON)

    @classmethod
    def read(cls, path: Path) -> "SessionRecord":
        """Read a ``session.json``; a missing or malformed file is a UserError."""
        return from_json(cls, read_json_object(path), str(path))

    def to_json(self) -> dict[str, Any]:
        return to_json(self)

    def write(self, path: Path) -> Path:
        return write_json(path, self)
