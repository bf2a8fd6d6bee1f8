"""``process_video``: a recorded video in two passes (analyse, decide, render), a stream in one online pass."""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from engagement.config import PipelineConfig
from engagement.consent.stage import RegistrySnapshot, points_in_polygon
from engagement.errors import UserError
from engagement.files import SESSION_JSON
from engagement.pipeline.analyse import Analyzer, StageTimer, analyse_frames
from engagement.pipeline.decide import decide
from engagement.pipeline.record import finish_outputs, register_session, session_record, write_json, write_summary
from engagement.pipeline.render import Renderer, RunWriter, run_frames
from engagement.session import SessionRecord
from engagement.sinks import RunDirectory
from engagement.sources import FrameSource, VideoInfo


def with_running_baseline(config: PipelineConfig) -> PipelineConfig:
    """The configuration with ``classifier.baseline: running``: what a live view, a camera or a stream can run
    (there is no whole session yet to compare each person with, and a stream cannot be read twice)."""
    return replace(config, classifier=replace(config.classifier, baseline="running"))


def for_source(config: PipelineConfig, info: VideoInfo) -> PipelineConfig:
    """The configuration as it runs on the source ``info`` describes, checked against it before any work:
    ``analysis_fps`` no higher than the source's frame rate (the tracker counts its memory, ``tracker.max_age_s``,
    in analysis frames: at a rate the video does not have, tracks outlived it many times over, and DeepSORT spent
    minutes per frame at 1e9), and each opted-out seat zone overlapping the frame (one drawn for another camera
    or size would hide nobody)."""
    frame = np.array([[0, 0], [info.width, 0], [info.width, info.height], [0, info.height]], np.float64)
    grid = np.stack(np.meshgrid(np.linspace(0, info.width, 65), np.linspace(0, info.height, 65)), -1).reshape(-1, 2)
    for zone in config.consent.opted_out_seats:
        polygon = np.asarray(zone.polygon, np.float64)
        if not points_in_polygon(polygon, frame).any() and not points_in_polygon(grid, polygon).any():
            raise UserError(f"opted-out seat zone {zone.name!r} lies outside the {info.width}x{info.height} frame: it would "
                            "hide nobody (drawn for another camera or frame size?)")
    return replace(config, analysis_fps=min(config.analysis_fps, info.fps))


def process_video(
    video: str,
    out: str | Path,
    config: PipelineConfig,
    overwrite: bool = False,
    quiet: bool = False,
    report: bool = True,
    progress: Any = None,
    consent: RegistrySnapshot | None = None,
    register: bool = True,
) -> SessionRecord:
    """Process one recorded video (two passes: analyse, decide, render) or a stream (one online pass) into a run
    directory; returns the session record.

    ``progress``: a tqdm-like object (``reset(total)``, ``update(n)``) fed instead of a bar of its own. With a
    course set, ``consent`` carries the registry's decisions (read here when not given) and ``register=False``
    leaves the registry write to the caller: a task on another machine never opens the registry."""
    from tqdm import tqdm

    started_at = datetime.now(timezone.utc)  # consent changes from now on are applied to the run when it is registered
    source = FrameSource(video)  # opens and validates the input before any output exists
    config = for_source(config, source.info)
    if config.consent.course is not None and consent is None:
        consent = RegistrySnapshot.read(config.consent)
    two_passes = not source.info.is_live  # a camera or stream cannot be read twice
    if consent is not None and consent.seat_plan is not None:
        if not two_passes:
            raise UserError(f"consent by seat (consent.room {config.consent.room}) needs a recorded video: it places each "
                            "person after the whole recording; for a camera or stream, map tracks by hand or blur everyone")
        consent.seat_plan.for_frame(source.info.width, source.info.height)  # another camera's plan: refused before any work
    if not two_passes:
        config = with_running_baseline(config)
    with RunDirectory(out, overwrite=overwrite) as directory:
        started = time.perf_counter()
        timer = StageTimer()
        with timer("load_models"):
            analyzer = Analyzer.from_config(config, timer, consent)
            renderer = Renderer(config, source.info.fps)
            analyzer.warm_up(source.info.height, source.info.width)
            renderer.warm_up(source.info.height, source.info.width)
        writer = RunWriter(directory, source.info, config, video=config.output.video)
        total = source.info.frames * 2 if two_passes and source.info.frames else source.info.frames
        bar = nullcontext(progress) if progress is not None else tqdm(unit="frame", disable=quiet, desc=Path(video).name, dynamic_ncols=True)
        with bar as progress:
            progress.reset(total=total)
            try:
                keyframes = None
                if two_passes:
                    keyframes = analyse_frames(source, analyzer, progress)
                    tracking = decide(keyframes, analyzer, (source.info.width, source.info.height))
                    source = FrameSource(video)
                frames, analysed = run_frames(source, analyzer, renderer, writer, progress, keyframes)
                if not two_passes:
                    tracking = analyzer.tracklets.tracking_record()
            finally:
                writer.close()
                analyzer.close()
        finish_outputs(directory, config, source.info)
        session = session_record(source.info, config, analyzer, renderer, analysed, frames, tracking, time.perf_counter() - started)
        write_json(directory / SESSION_JSON, session)
        if config.classifier.enabled:
            write_summary(directory, session)
        if report and config.output.report:
            from engagement.report import build_report

            build_report(directory)
    if config.consent.course is not None and register:
        register_session(config, Path(out), session, started_at)
    return session
