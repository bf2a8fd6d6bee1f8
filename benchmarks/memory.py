"""Peak memory against video length: a shared video looped to 1 and 10 minutes, each processed by
`engagement process` in its own process; prints the peak resident memory of each and their ratio.

    python benchmarks/memory.py VIDEO [--minutes 1 10] [--set key=value ...]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2

from engagement.errors import run_reporting_errors


def loop_video(source: str, minutes: float, out: Path) -> Path:
    """Write ``source`` repeated to ``minutes`` long (MJPEG AVI, so looping costs no re-encoding loss)."""
    capture = cv2.VideoCapture(source)
    fps = capture.get(cv2.CAP_PROP_FPS)
    frames = []
    while (read := capture.read())[0]:
        frames.append(read[1])
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    for i in range(round(minutes * 60 * fps)):
        writer.write(frames[i % len(frames)])
    writer.release()
    return out


MEASURE = "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"


def peak_rss_mb(command: list[str]) -> float:
    """Peak resident memory of ``command``, read by a fresh wrapper process whose only child it is."""
    result = subprocess.run([sys.executable, "-c", MEASURE, *command], check=True, capture_output=True, text=True)
    return int(result.stdout.split()[-1]) / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("video")
    parser.add_argument("--minutes", type=float, nargs="+", default=[1, 10])
    parser.add_argument("--set", action="append", default=[])
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for minutes in sorted(args.minutes):
            looped = loop_video(args.video, minutes, Path(tmp) / f"loop_{minutes}min.avi")
            command = [sys.executable, "-m", "engagement.cli", "process", str(looped), "--out", str(Path(tmp) / f"run_{minutes}"), "--quiet", "--no-report"]
            command += [item for override in args.set for item in ("--set", override)]
            results[f"{minutes:g} min"] = peak_rss_mb(command)
    values = list(results.values())
    print(json.dumps({"peak_rss_mb": results, "longest_over_shortest": values[-1] / values[0]}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(run_reporting_errors(main, "memory"))
