"""Close-up (laptop, video-call) framing of webcam material, for checking issue 13 item 6 on footage we have.

A 16:9 crop centred on the median YuNet face, sized so that the face fills ``share`` of the crop's height, resized
to 640x360: little or no body is left. ``webcam_segments.py --close-up`` crops a video this way; run on its own, this
writes close-up copies of a ``labels.csv`` set (webcam_behaviour): each clip cropped around its own median face,
with the share drawn per clip from ``--share LOW HIGH`` (seeded), the same labels.csv (a clip with no face in its
sampled frames is left out), so that ``engagement classifier evaluate`` scores unseen people in a close framing:

    python benchmarks/close_up.py ../shared/datasets/webcam_behaviour /tmp/close_up/webcam_behaviour
    engagement classifier evaluate /tmp/close_up/webcam_behaviour --persons 1,2

The copies show real people: keep them out of the repository.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import cv2
import numpy as np

from engagement.anonymize import FaceDetector
from engagement.config import AnonymizerConfig
from engagement.errors import UserError, run_reporting_errors

SIZE = (640, 360)


def face_detector() -> FaceDetector:
    """YuNet, as the anonymizer loads it, at a 0.5 score."""
    return FaceDetector(AnonymizerConfig().face_model, 0.5, 0)


def close_up_box(frames: list[np.ndarray], share: float, detector: FaceDetector) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1) of the 16:9 crop around the median face of ``frames`` that makes the face ``share`` of its
    height, shifted (and if need be shrunk) to lie inside the frame so that nothing is stretched; None when no frame
    has a face."""
    faces = np.array([found[0][:4] for found in map(detector, frames) if len(found)])
    if not len(faces):
        return None
    frame_height, frame_width = frames[0].shape[:2]
    cx, cy = np.median((faces[:, :2] + faces[:, 2:4]) / 2, axis=0)
    height = float(np.median(faces[:, 3] - faces[:, 1])) / share
    height = min(height, frame_height, frame_width * SIZE[1] / SIZE[0])
    width = height * SIZE[0] / SIZE[1]
    x0 = int(np.clip(cx - width / 2, 0, frame_width - width))
    y0 = int(np.clip(cy - height / 2, 0, frame_height - height))
    return x0, y0, x0 + int(width), y0 + int(height)


def cropped(image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """``image`` cut to ``box`` (clipped by the image's edges) and resized to 640x360."""
    x0, y0, x1, y1 = box
    return cv2.resize(image[y0:y1, x0:x1], SIZE, interpolation=cv2.INTER_LINEAR)


def read_image(path: Path) -> np.ndarray:
    """A BGR image; a missing or unreadable one is a one-line error."""
    image = cv2.imread(str(path))
    if image is None:
        raise UserError(f"{path}: missing or not an image")
    return image


def write_dataset(source: Path, target: Path, low: float, high: float, seed: int) -> int:
    """Close-up copies of every clip of ``source``'s labels.csv under ``target``; returns the number of images."""
    table = source / "labels.csv"
    if not table.is_file():
        raise UserError(f"{source}: no labels.csv")
    rows = list(csv.DictReader(table.open(newline="")))
    if not rows or "clip" not in rows[0]:
        raise UserError(f"{table}: needs rows with a clip column (a webcam_behaviour-style set)")
    if target.resolve().is_relative_to(source.resolve()):
        raise UserError(f"{target} is inside {source}: write the copies elsewhere")
    detector, rng = face_detector(), np.random.default_rng(seed)
    clips: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        clips.setdefault(row["clip"], []).append(row)
    written = []
    for items in clips.values():
        images = {row["path"]: read_image(source / row["path"]) for row in items}
        box = close_up_box([images[row["path"]] for row in items[::3]], rng.uniform(low, high), detector)
        for row in items if box else []:
            out = target / row["path"]
            out.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(out), cropped(images[row["path"]], box))
            written.append(row)
    with (target / "labels.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(written)
    return len(written)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="a labels.csv set with clips (webcam_behaviour)")
    parser.add_argument("target", type=Path, help="folder for the close-up copies (outside the repository)")
    parser.add_argument("--share", nargs=2, type=float, default=[0.5, 0.9], metavar=("LOW", "HIGH"),
                        help="face height as a share of the frame's, drawn per clip (default 0.5 0.9)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not 0 < args.share[0] <= args.share[1] <= 1:
        raise UserError(f"--share needs 0 < LOW <= HIGH <= 1, got {args.share[0]:g} {args.share[1]:g}")
    print(f"{write_dataset(args.source, args.target, *args.share, args.seed)} images in {args.target}")


if __name__ == "__main__":
    raise SystemExit(run_reporting_errors(main, "close_up"))
