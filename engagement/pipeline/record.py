"""What a run writes besides frames: provenance (``session.json``), the summary and scores, CSV copies and audio,
and the session's entry in the consent registry."""

from __future__ import annotations

import platform
import shutil
from dataclasses import replace
from datetime import date, datetime, timedelta, timezone
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from engagement import __version__
from engagement.config import PipelineConfig
from engagement.errors import UserError
from engagement.files import ANNOTATED_MP4, SCORES_CSV, STATES_PARQUET, SUMMARY_JSON, TRACKS_PARQUET
from engagement.models import file_sha256, find_model
from engagement.pipeline.analyse import Analyzer
from engagement.pipeline.render import Renderer
from engagement.records import write_json
from engagement.session import ConsentRecord, InputRecord, ModelRecord, ModelsRecord, SessionRecord, TrackingRecord
from engagement.sinks import copy_audio, parquet_to_csv
from engagement.sources import VideoInfo

if TYPE_CHECKING:
    from engagement.consent.stage import RegistrySnapshot

VERSIONED_PACKAGES = ("classroom-engagement", "ultralytics", "torch", "openvino", "deep-sort-realtime", "mediapipe", "diffusers", "opencv-python", "numpy", "pandas")


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def model_record(name: str, models_dir: str | None) -> ModelRecord:
    """Name, resolved file and sha256 of a model, for provenance."""
    path = find_model(name, models_dir)
    return ModelRecord(name=name, file=str(path) if path else None, sha256=file_sha256(path) if path else None)


def model_records(analyzer: Analyzer, renderer: Renderer) -> ModelsRecord:
    """The models of the stages that ran."""
    config = analyzer.config
    detector = analyzer.detector
    hands = analyzer.hands is not None
    return ModelsRecord(
        detector=ModelRecord(name=config.detector.model, file=str(detector.weights), sha256=detector.sha256),
        face_detector=model_record(config.anonymizer.face_model, config.models_dir) if renderer.anonymizer is not None else None,
        face_landmarker=model_record(config.classifier.face_landmarker, config.models_dir) if analyzer.states is not None else None,
        palm_detector=model_record(config.hands.palm_model, config.models_dir) if hands else None,
        hand_landmarker=model_record(config.hands.landmark_model, config.models_dir) if hands else None,
        classifier=analyzer.states.classifier_record() if analyzer.states is not None else None,
        crop_model=analyzer.states.crop_record() if analyzer.states is not None else None,
    )


def session_record(
    info: VideoInfo, config: PipelineConfig, analyzer: Analyzer, renderer: Renderer, analysed: int, frames: int, tracking: TrackingRecord, seconds: float
) -> SessionRecord:
    """The run's provenance for ``session.json``: input, models, resolved config, timings, tracking, consent."""
    timings = dict(sorted(analyzer.timer.seconds.items()))
    timings["total"] = seconds
    is_file = not info.is_live and Path(info.source).is_file()
    return SessionRecord(
        engagement_version=__version__,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        input=InputRecord(
            path=str(Path(info.source).resolve()) if is_file else info.source,
            fps=info.fps, frames=frames, width=info.width, height=info.height,
            duration_s=frames / info.fps,
            sha256=file_sha256(info.source) if is_file else None,
            # What the container declares against what could be decoded: a truncated or corrupt file says so.
            frames_expected=info.frames, frames_decoded=frames,
            input_complete=info.frames is None or frames >= info.frames,
        ),
        models=model_records(analyzer, renderer),
        config=recorded_config(config, analyzer.consent.snapshot),
        timings_s=timings,
        frames_analysed=analysed,
        tracking=tracking,
        consent=consent_record(config, analyzer),
        versions=package_versions(),
    )


def recorded_config(config: PipelineConfig, snapshot: "RegistrySnapshot | None") -> PipelineConfig:
    """``config`` as session.json records it: with a course (the registry's ``snapshot``), its hand-made track map
    (``consent.track_students``) keeps only the consenting students, as the session's own track map does
    (``consent_record``). A resumed batch compares its own config made this way with a run's."""
    if snapshot is None:
        return config
    kept = {track: student for track, student in config.consent.track_students.items() if student in snapshot.consented}
    return replace(config, consent=replace(config.consent, track_students=kept))


def consent_record(config: PipelineConfig, analyzer: Analyzer) -> ConsentRecord:
    """The session's consent facts: policy, exclusions and, with a course, the registry's status as the consent
    stage read it. With a course, the track map keeps only consenting students: nothing of this session (its
    record, the registry's) says which track an opted-out or unregistered student was, or that they were there."""
    from engagement.consent.forms import load_policy

    policy = load_policy()
    form_version, retention_days, counts = policy.get("form_version"), policy.get("retention_days"), None
    track_students = dict(analyzer.consent.track_students)
    snapshot = analyzer.consent.snapshot
    if snapshot is not None:
        track_students = {track: student for track, student in track_students.items() if student in snapshot.consented}
        counts = dict(snapshot.status_counts)
        form_version = ", ".join(snapshot.form_versions) or form_version
        retention_days = snapshot.retention_days or retention_days
    return ConsentRecord(
        policy=config.consent.blur,
        unknown=config.consent.unknown,
        people_excluded=len(analyzer.consent.excluded_track_ids),
        course=config.consent.course,
        form_version=form_version,
        retention_days=retention_days,
        status_counts=counts,
        retention_until=(date.today() + timedelta(days=retention_days)).isoformat(),  # local days, as the purge counts
        track_students=track_students,
        room=config.consent.room,
        track_seats=dict(analyzer.consent.seats) if config.consent.room else None,
    )


def register_session(config: PipelineConfig, run_dir: Path, session: SessionRecord, started: datetime) -> None:
    """With a course set, remember the run in the consent registry so withdrawal and purge can find it, remove the
    students who opted out or withdrew since the run's consent facts were read at ``started`` (their change came
    too late for it), then delete the analysed recording when the course asks for it. Runs where the registry
    lives (the CLI). A run the registry could not record is deleted (failing closed): withdrawal and purge could
    never find it."""
    from engagement.consent.outputs import delete_source, remove_late_opt_outs
    from engagement.consent.registry import Registry

    try:
        with Registry.open(config.consent.registry, create=False) as registry:
            session_id = registry.record_session(
                config.consent.course,
                date.today(),  # the purge counts days in local time (session_cutoff)
                run_dir,
                session.input.sha256,
                session.consent.track_students,
            )
            remove_late_opt_outs(registry, session_id, started)
    except BaseException as error:
        shutil.rmtree(run_dir, ignore_errors=True)
        if isinstance(error, UserError):
            raise type(error)(f"{error}; run {run_dir} deleted: the registry could not record it") from None
        raise
    delete_source(config.consent.registry, config.consent.course, session.input.path, run_dir)


def finish_outputs(directory: Path, config: PipelineConfig, info: VideoInfo) -> None:
    """Audio (only when asked: dropped by default) and CSV copies of the tables."""
    video = directory / ANNOTATED_MP4
    if config.output.keep_audio and video.exists() and not info.is_live:
        with_audio = directory / "annotated.audio.mp4"
        if copy_audio(video, info.source, with_audio):
            with_audio.replace(video)
    if config.output.csv:
        tracks = directory / TRACKS_PARQUET
        parquet_to_csv(tracks, tracks.with_suffix(".csv"))


def write_summary(directory: Path, session: SessionRecord) -> None:
    """scores.csv and summary.json from the states table (and the tracks table, for the framing)."""
    import pandas as pd

    from engagement.framing import run_framing
    from engagement.scoring import summarize

    states = pd.read_parquet(directory / STATES_PARQUET)
    scores, summary = summarize(states, session.input.duration_s, session.consent.people_excluded)
    summary.update(frames_expected=session.input.frames_expected, frames_decoded=session.input.frames_decoded,
                   input_complete=session.input.input_complete,
                   framing=run_framing(directory, states, session.input.height))
    scores.to_csv(directory / SCORES_CSV, index=False)
    write_json(directory / SUMMARY_JSON, summary)
