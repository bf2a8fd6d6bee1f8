"""Privacy leak benchmark: anonymize real videos with policy ``all`` and count frames whose faces survive.

For each video: people are detected with the pose model at the pipeline's analysis rate (detections
are held, not interpolated, on the frames in between: a harder case than the pipeline's tracks), every
frame goes through ``Anonymizer.annotate`` with ``blur_all_faces=True`` and is encoded with libx264,
then ``engagement.privacy.leak_check`` compares original and output frame by frame.

    python benchmarks/privacy_leak.py ../shared/videos/classroom_front_class110.mp4 \
        ../shared/videos/webcam_session_p2.mp4 --out /tmp/privacy_leak.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from engagement.config import AnonymizerConfig, apply_override, from_dict, to_dict
from engagement.privacy import anonymize_video, leak_check


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("videos", nargs="+", type=Path)
    parser.add_argument("--analysis-fps", type=float, default=5.0, help="pose detection rate (lecture pipeline: 5)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="anonymizer override, e.g. face_every=2")
    parser.add_argument("--max-frames", type=int)
    parser.add_argument("--out", type=Path, help="write the full per-frame results as JSON")
    args = parser.parse_args(argv)

    settings = to_dict(AnonymizerConfig())
    for item in args.set:
        apply_override(settings, item)
    config = from_dict(AnonymizerConfig, settings)
    results = []
    with tempfile.TemporaryDirectory() as workdir:
        for video in args.videos:
            anonymized = Path(workdir) / f"{video.stem}.anonymized.mp4"
            timing = anonymize_video(video, anonymized, config, args.analysis_fps, args.max_frames)
            report = leak_check(video, anonymized, max_frames=args.max_frames)
            results.append({"video": video.name, "config": settings, **timing, **report})
            totals = report["totals"]
            print(
                f"{video.name}: {totals['frames']} frames, {totals['faces_original']} faces in original, "
                f"{totals['leaked_faces']} leaked faces in {totals['leak_frames']} frames; "
                f"anonymizer {timing['anonymize_ms_mean']:.1f} ms/frame mean, {timing['anonymize_ms_p95']:.1f} p95"
            )
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))
    return 1 if any(r["totals"]["leak_frames"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
