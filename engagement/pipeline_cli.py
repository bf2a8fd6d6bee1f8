"""CLI commands for the video pipeline: ``process`` (recorded video) and ``live`` (camera or stream)."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace

from pathlib import Path

from engagement.arguments import count, not_negative, positive
from engagement.config import BLUR_POLICIES, PipelineConfig, load_pipeline
from engagement.errors import EXIT_INCOMPLETE_INPUT, UserError
from engagement.session import SessionRecord


def _add_config_options(parser: argparse.ArgumentParser, default_pipeline: str) -> None:
    parser.add_argument("--pipeline", default=default_pipeline, metavar="NAME|PATH", help=f"pipeline YAML, shipped name or path (default: {default_pipeline})")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config field, e.g. --set detector.confidence=0.3 (repeatable)")
    parser.add_argument("--analysis-fps", type=float, help="detection/tracking rate in frames per second")
    parser.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps")
    parser.add_argument("--models-dir", help="folder holding model weights")
    parser.add_argument(
        "--blur", choices=BLUR_POLICIES,
        help="whose faces are hidden: unconsented (default: everyone without a consent record), opted_out, all, none",
    )


def config_from_args(args: argparse.Namespace) -> PipelineConfig:
    """The pipeline YAML, then --set overrides, then the dedicated flags."""
    overrides = list(args.set)
    flags = {
        "analysis_fps": args.analysis_fps,
        "detector.device": args.device,
        "models_dir": args.models_dir,
        "consent.blur": args.blur,
        "output.keep_audio": True if getattr(args, "keep_audio", False) else None,
    }
    overrides += [f"{key}={json.dumps(value)}" for key, value in flags.items() if value is not None]
    return load_pipeline(args.pipeline, overrides)


VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm", ".mpg", ".mpeg", ".wmv"}


def expand_inputs(inputs: list[str]) -> list[Path]:
    """Files as given; folders expand to the videos directly inside them, sorted."""
    videos: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found = sorted(p for p in item.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
            if not found:
                raise UserError(f"{item}: folder holds no video files ({', '.join(sorted(VIDEO_SUFFIXES))})")
            videos += found
        else:
            videos.append(item)
    return videos


def describe(out: str | Path, session: SessionRecord) -> str:
    """One line about a finished run: speed (with and without the one-time model loading), tracking, consent and
    the blur policy that ran."""
    from engagement.consent.stage import BLURRED_BY_POLICY

    policy = session.consent.policy
    tracking = session.tracking
    ratio = "n/a" if tracking.id_ratio is None else f"{tracking.id_ratio:.2f}"
    if tracking.id_ratio_before_stitching is not None:
        ratio += f", {tracking.id_ratio_before_stitching:.2f} before stitching {tracking.tracklets_before_stitching} tracklets"
    seconds = session.timings_s["total"]
    loading = session.timings_s.get("load_models", 0.0)
    duration = session.input.duration_s
    return (
        f"{out}: {session.input.frames} frames ({session.frames_analysed} analysed) in {seconds:.1f} s, "
        f"{duration / seconds:.2f}x real time ({duration / max(seconds - loading, 1e-9):.2f}x after "
        f"{loading:.1f} s of model loading); {tracking.confirmed_tracks} track IDs for at most "
        f"{tracking.max_people_in_frame} people in a frame (ID ratio {ratio}); "
        f"{session.consent.people_excluded} excluded by consent; faces hidden: "
        f"{BLURRED_BY_POLICY.get(policy, policy)} (consent.blur: {policy})"
        + ("" if session.input.input_complete else
           f"; INCOMPLETE INPUT: decoded {session.input.frames_decoded} of the "
           f"{session.input.frames_expected} frames the file declares (truncated or corrupt)")
    )


def _process(args: argparse.Namespace) -> int:
    from engagement.pipeline import process_video

    config = config_from_args(args)
    videos = expand_inputs(args.videos)
    if len(videos) == 1 and not Path(args.videos[0]).is_dir() and args.engine == "local":
        session = process_video(str(videos[0]), args.out, config, overwrite=args.overwrite, quiet=not args.progress, report=not args.no_report)
        print(describe(args.out, session), file=sys.stderr if args.quiet else sys.stdout)
        return 0 if session.input.input_complete or args.allow_partial else EXIT_INCOMPLETE_INPUT
    from engagement.batch import process_many
    from engagement.engines import make_engine

    cpus = args.cpus_per_video if args.cpus_per_video is not None or args.engine == "local" else 1.0  # Ray's default for a task
    if cpus is not None and config.detector.threads == 0:
        config = replace(config, detector=replace(config.detector, threads=detector_threads(cpus)))
    engine = make_engine(args.engine, workers=args.workers, address=args.address, cpus=cpus or 1,
                         gpus=args.gpus_per_video, memory=args.memory_per_video, retries=args.retries)
    try:
        return process_many(videos, Path(args.out), config, engine, overwrite=args.overwrite, report=not args.no_report,
                            allow_partial=args.allow_partial, resume=args.resume, show_progress=args.progress)
    finally:
        engine.close()


def detector_threads(cpus: float) -> int:
    """Detector threads for a task given ``cpus`` CPUs: all but one, left to the anonymizer and the encoder, at least one."""
    return max(1, int(cpus) - 1)


_SIZE_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20, "gib": 2**30}


def parse_size(text: str) -> int:
    """``3GiB``, ``500MB`` or a number of bytes."""
    number = text.rstrip("KMGiBkmgib ")
    unit = text[len(number):].strip().lower()
    try:
        return int(float(number) * _SIZE_UNITS[unit])
    except (ValueError, KeyError):
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 3GiB, 500MB)") from None


def _live(args: argparse.Namespace) -> int:
    from engagement.live import run_live

    config = config_from_args(args)
    stats = run_live(args.source, config, window=not args.no_window, record=args.record, duration=args.duration, realtime=not args.as_fast_as_possible)
    print(f"live: {stats['frames']} frames shown at {stats['display_fps']:.1f} fps, {stats['analysed']} analysed "
          f"at {stats['analysis_fps']:.1f} fps; {stats['track_ids']} track IDs")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``process`` and ``live``."""
    process = subparsers.add_parser("process", help="analyse a recorded lecture video into a run directory")
    process.add_argument("videos", nargs="+", metavar="VIDEO", help="input video file(s) or folder(s) of videos")
    process.add_argument("--out", required=True, help="run directory to create (with several videos or --engine ray: the parent folder, one run per video)")
    process.add_argument("--workers", type=int, default=1, help="--engine local: videos processed at once when given several (default 1)")
    process.add_argument("--engine", choices=["local", "ray"], default="local", help="where several videos run: local process pool (default) or a Ray cluster")
    process.add_argument("--address", metavar="HOST:PORT", help="--engine ray: the Ray head (default: RAY_ADDRESS, else a Ray instance on this machine)")
    process.add_argument("--cpus-per-video", type=positive, metavar="N", help="--engine ray: CPUs reserved per video (default 1); the detector gets N-1 threads, at least 1 (also with --engine local)")
    process.add_argument("--gpus-per-video", type=not_negative, default=0, metavar="F", help="--engine ray: GPU share per video, e.g. 0.5 (default 0); the detector then runs on CUDA")
    process.add_argument("--memory-per-video", type=parse_size, metavar="SIZE", help="--engine ray: memory reserved per video, e.g. 3GiB")
    process.add_argument("--retries", type=count, default=2, help="--engine ray: reruns of a video whose worker crashed or whose node was lost (default 2)")
    existing = process.add_mutually_exclusive_group()
    existing.add_argument("--resume", action="store_true", help="skip videos whose run directory is already complete")
    existing.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    process.add_argument("--keep-audio", action="store_true", help="keep the input's audio (dropped by default)")
    process.add_argument("--no-report", action="store_true", help="skip report.html and report.pdf")
    process.add_argument(
        "--allow-partial", action="store_true",
        help=f"exit 0 when a video decodes to fewer frames than it declares (default: the run is written, marked "
             f"input_complete: false, and the exit code is {EXIT_INCOMPLETE_INPUT}; with several videos, 1 if one failed)",
    )
    _add_config_options(process, "lecture")
    process.set_defaults(handler=_process)

    live = subparsers.add_parser("live", help="analyse a webcam, stream or file live, with a window")
    live.add_argument("--source", default="0", help="camera index, video file or rtsp:// URL (default: 0)")
    live.add_argument("--no-window", action="store_true", help="run headless (servers, tests)")
    live.add_argument("--record", help="write the annotated, anonymized view to this MP4 file (name ending in .mp4)")
    live.add_argument("--duration", type=positive, help="stop after this many seconds")
    live.add_argument("--as-fast-as-possible", action="store_true", help="read a file source as fast as possible instead of at its frame rate")
    _add_config_options(live, "webcam")
    live.set_defaults(handler=_live)
