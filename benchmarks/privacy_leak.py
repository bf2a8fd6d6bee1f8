"""Privacy leak benchmark: the default `engagement process` on real videos and harder variants of them, checked
frame by frame by two face detectors (YuNet, the anonymizer's own model, and CenterFace, an independent one).

Variants are made with ffmpeg from each video's first ``--seconds``: other resolutions (240p to an upscaled
1080p), other frame rates (10 and 60 fps), a video turned 90 degrees in its pixels (no rotation metadata), and a
phone-style video stored sideways with a rotation flag that turns it upright. Each goes through the real pipeline with its default configuration (no
registry, so every face must be hidden), then `engagement.privacy.leak_check` compares original and output.

    ENGAGEMENT_MODELS=../shared/models python benchmarks/privacy_leak.py \\
        ../shared/videos/classroom_front_class110.mp4 ../shared/videos/webcam_session_p2.mp4 --out /tmp/leaks.json

Prints one Markdown table row per video and variant; exits 1 if any face leaked.

``--faces-only`` checks the anonymizer's safety net alone, as if the pose model had found nobody: each frame goes
through ``Anonymizer.annotate`` with no people and is written at x264 crf 0 (lossless but for the chroma
subsampling), so only the face detector's boxes hide faces and no compression softens what is left. This is how ``anonymizer.face_every`` was chosen:

    ENGAGEMENT_MODELS=../shared/models python benchmarks/privacy_leak.py ../shared/videos/classroom_front_class110.mp4 \
        --faces-only --detectors yunet --set anonymizer.face_every=6
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from engagement.anonymize import Anonymizer
from engagement.config import PipelineConfig, load_pipeline
from engagement.detections import Detections
from engagement.files import ANNOTATED_MP4
from engagement.pipeline import process_video
from engagement.privacy import LEAK_DETECTORS, leak_check
from engagement.sinks import VideoWriter
from engagement.sources import FrameSource
from engagement.errors import run_reporting_errors

X264 = ["-c:v", "libx264", "-crf", "18", "-preset", "veryfast"]
# name -> ffmpeg output options of each pass; 'metadata90' is a phone video stored sideways (pixels turned clockwise)
# with a rotation flag that turns it upright for display.
VARIANTS: dict[str, list[list[str]]] = {
    "original": [X264],
    "240p": [["-vf", "scale=-2:240", *X264]],
    "480p": [["-vf", "scale=-2:480", *X264]],
    "1080p": [["-vf", "scale=-2:1080", *X264]],
    "10fps": [["-vf", "fps=10", *X264]],
    "60fps": [["-vf", "fps=60", *X264]],
    "turned90": [["-vf", "transpose=1", *X264]],
    "metadata90": [["-vf", "transpose=1", *X264], ["-c", "copy", "-metadata:s:v:0", "rotate=90"]],
}


def make_variant(video: Path, variant: str, seconds: float, target: Path) -> Path:
    """The first ``seconds`` of ``video`` as ``variant`` (audio dropped)."""
    if shutil.which("ffmpeg") is None:
        sys.exit("privacy_leak: ffmpeg is needed to make the variants (apt-get install ffmpeg)")
    source = video
    for number, options in enumerate(VARIANTS[variant]):
        output = target.with_suffix(f".pass{number}.mp4")
        subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(source), "-t", str(seconds), "-an", *options, str(output)], check=True)
        source = output
    return source.replace(target)


def anonymize_faces_only(clip: Path, run: Path, config: PipelineConfig) -> None:
    """``run``/annotated.mp4: every frame of ``clip`` with only the faces the anonymizer's face detector finds
    hidden (no people), written at crf 0."""
    source = FrameSource(str(clip))
    anonymizer = Anonymizer(config.anonymizer, source.info.fps, config.models_dir)
    run.mkdir()
    writer = VideoWriter(run / ANNOTATED_MP4, source.info.fps, source.info.width, source.info.height, crf=0)
    try:
        for index, frame in source:
            writer.write(anonymizer.annotate(frame, Detections.empty(), blur_all_faces=True), source.time_of(index))
    finally:
        writer.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("videos", nargs="+", type=Path)
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, from: {', '.join(VARIANTS)}")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each variant, from the video's start")
    parser.add_argument("--pipeline", default="lecture")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="pipeline override (default: none)")
    parser.add_argument("--detectors", default=",".join(LEAK_DETECTORS))
    parser.add_argument("--out", type=Path, help="write the totals of every row as JSON")
    parser.add_argument("--faces-only", action="store_true", help="the face detector alone, as if the pose model found "
                        "nobody, output at crf 0 (see above)")
    args = parser.parse_args(argv)

    variants = args.variants.split(",")
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variant {unknown[0]!r}")
    detectors = args.detectors.split(",")
    config = load_pipeline(args.pipeline, ["output.report=false", *args.set])
    print("| video | variant | size, fps, frames | " + " | ".join(f"{d}: faces, leaked (frames)" for d in detectors) + " | pipeline s |")
    print("|---|---|---|" + "---|" * len(detectors) + "---|")
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        for video in args.videos:
            for variant in variants:
                clip = make_variant(video, variant, args.seconds, Path(workdir) / f"{video.stem}.{variant}.mp4")
                run = Path(workdir) / f"{video.stem}.{variant}.run"
                started = time.perf_counter()
                if args.faces_only:
                    anonymize_faces_only(clip, run, config)
                else:
                    process_video(str(clip), run, config, quiet=True, report=False)
                seconds = time.perf_counter() - started
                info = FrameSource(str(clip)).info
                row = {"video": video.name, "variant": variant, "width": info.width, "height": info.height, "fps": round(info.fps, 2),
                       "frames": info.frames, "pipeline_s": round(seconds, 1)}
                for detector in detectors:
                    row[detector] = leak_check(clip, run / ANNOTATED_MP4, detector=detector)["totals"]
                rows.append(row)
                cells = " | ".join(f"{row[d]['faces_original']}, **{row[d]['leaked_faces']}** ({row[d]['leak_frames']})" for d in detectors)
                print(f"| {video.stem} | {variant} | {info.width}x{info.height}, {info.fps:.1f}, {info.frames} | {cells} | {seconds:.0f} |", flush=True)
                shutil.rmtree(run)
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2))
    return 1 if any(row[d]["leak_frames"] for row in rows for d in detectors) else 0


if __name__ == "__main__":
    raise SystemExit(run_reporting_errors(main, "privacy_leak"))
