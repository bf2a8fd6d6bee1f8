"""What a run writes besides frames: provenance (``session.json``), the summary and scores, CSV copies and audio,
and the session's entry in the consent registry."""

from __future__ import annotations

import json
import platform
from datetime import datetime, timedelta, timezone
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engagement import __version__
from engagement.config import PipelineConfig, to_dict
from engagement.models import file_sha256, find_model
from engagement.pipeline.analyse import Analyzer
from engagement.pipeline.render import Renderer
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

def model_record(name: str, models_dir: str | None) -> dict[str, Any]:
    """Name, resolved file and sha256 of a model, for provenance."""
    path = find_model(name, models_dir)
    return {"name": name, "file": str(path) if path else None, "sha256": file_sha256(path) if path else None}

def model_records(analyzer: Analyzer, renderer: Renderer) -> dict[str, Any]:
    config = analyzer.config
    detector = analyzer.detector
    records: dict[str, Any] = {"detector": {"name": config.detector.model, "file": str(detector.weights), "sha256": detector.sha256}}
    if renderer.anonymizer is not None:
        records["face_detector"] = model_record(config.anonymizer.face_model, config.models_dir)
    if analyzer.states is not None:
        records["face_landmarker"] = model_record(config.classifier.face_landmarker, config.models_dir)
        records["classifier"] = analyzer.states.classifier_record()
    return records

def session_record(
    info: VideoInfo, config: PipelineConfig, analyzer: Analyzer, renderer: Renderer, analysed: int, frames: int, tracking: dict[str, Any], seconds: float,
    snapshot: "RegistrySnapshot | None" = None,
) -> dict[str, Any]:
    """The run's provenance for ``session.json``: input, models, resolved config, timings, tracking, consent."""
    timings = dict(sorted(analyzer.timer.seconds.items()))
    timings["total"] = seconds
    is_file = not info.is_live and Path(info.source).is_file()
    return {
        "engagement_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "input": {
            "path": str(Path(info.source).resolve()) if is_file else info.source,
            "fps": info.fps, "frames": frames, "width": info.width, "height": info.height,
            "duration_s": frames / info.fps,
            # What the container declares against what could be decoded: a truncated or corrupt file says so.
            "frames_expected": info.frames,
            "frames_decoded": frames,
            "input_complete": info.frames is None or frames >= info.frames,
            "sha256": file_sha256(info.source) if is_file else None,
        },
        "models": model_records(analyzer, renderer),
        "config": to_dict(config),
        "timings_s": timings,
        "frames_analysed": analysed,
        "tracking": tracking,
        "consent": consent_record(config, analyzer, snapshot),
        "versions": package_versions(),
    }

def consent_record(config: PipelineConfig, analyzer: Analyzer, snapshot: "RegistrySnapshot | None" = None) -> dict[str, Any]:
    """The session's consent facts: policy, exclusions and, with a course, the registry's status (from
    ``snapshot``, read from the registry when not given)."""
    from engagement.consent.forms import load_policy
    from engagement.consent.stage import RegistrySnapshot

    policy = load_policy()
    record: dict[str, Any] = {
        "policy": config.consent.blur,
        "unknown": config.consent.unknown,
        "people_excluded": len(analyzer.consent.excluded_track_ids),
        "course": config.consent.course,
        "form_version": policy.get("form_version"),
        "retention_days": policy.get("retention_days"),
        "status_counts": None,
    }
    if config.consent.course is not None:
        snapshot = snapshot or RegistrySnapshot.read(config.consent)
        record.update(status_counts=dict(snapshot.status_counts), form_version=", ".join(snapshot.form_versions) or record["form_version"])
        record["retention_days"] = snapshot.retention_days or record["retention_days"]
    record["retention_until"] = (datetime.now(timezone.utc) + timedelta(days=record["retention_days"])).date().isoformat()
    return record

def register_session(config: PipelineConfig, run_dir: Path, session: dict[str, Any]) -> None:
    """With a course set, remember the run in the consent registry so withdrawal and purge can find it, then
    delete the analysed recording when the course asks for it. Runs where the registry lives (the CLI)."""
    from engagement.consent.registry import Registry

    with Registry.open(config.consent.registry) as registry:
        registry.record_session(
            config.consent.course,
            datetime.now(timezone.utc).date(),
            run_dir,
            session["input"]["sha256"],
            {int(t): s for t, s in config.consent.track_students.items()},
        )
    from engagement.consent.outputs import delete_source

    delete_source(config.consent.registry, config.consent.course, session["input"]["path"], run_dir)

def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")

def finish_outputs(directory: Path, config: PipelineConfig, info: VideoInfo) -> None:
    """Audio (only when asked: dropped by default) and CSV copies of the tables."""
    video = directory / "annotated.mp4"
    if config.output.keep_audio and video.exists() and not info.is_live:
        with_audio = directory / "annotated.audio.mp4"
        if copy_audio(video, info.source, with_audio):
            with_audio.replace(video)
    if config.output.csv:
        parquet_to_csv(directory / "tracks.parquet", directory / "tracks.csv")

def write_summary(directory: Path, session: dict[str, Any]) -> None:
    """scores.csv and summary.json from the states table."""
    import pandas as pd

    from engagement.scoring import summarize

    states = pd.read_parquet(directory / "states.parquet")
    scores, summary = summarize(states, session["input"]["duration_s"], session["consent"]["people_excluded"])
    summary.update({key: session["input"][key] for key in ("frames_expected", "frames_decoded", "input_complete")})
    scores.to_csv(directory / "scores.csv", index=False)
    write_json(directory / "summary.json", summary)
