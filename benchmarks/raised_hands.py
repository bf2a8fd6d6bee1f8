"""Can a keypoint source see a raised hand in a classroom filmed from the front? Per clabehavior room and label.

"Engaged in discussion" scores lowest on an unseen room (model card, "Crop model for the front view"): room A's
children raise a hand with the forearm upright beside the head, room B has 28 raised hands. If a keypoint source found
those hands, a raised hand would need no learning from the room. For each labelled box matched to a detected person
(as ``engagement classifier evaluate`` matches them, detections from the 3x3 tiles it uses), three sources:

- ``tiles``: the matched detection's keypoints; share of boxes with a confident wrist above the shoulders
  (``wrist_above_shoulder`` > 0) and above the eyes;
- ``crop``: YOLO pose run again on a square around the person's head (5 head widths, the head in its lower half),
  which the detector upscales to its 640 px input; share with a confident wrist above the eyes;
- ``palms``: MediaPipe's palm detector on a square of 4 head widths around the head, each palm confirmed by the hand
  landmark model as the webcam pipeline does (``hands``); share with a confirmed palm at or above the head's centre.

A source helps only if the raised hands' share is well above the other labels'.

    python benchmarks/raised_hands.py ../shared/datasets/clabehavior --per-label 120
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from engagement.classifier.cli import DEFAULT_CACHE
from engagement.classifier.data import DatasetFeaturizer, match_heads, upper_body_heads
from engagement.config import HandsConfig
from engagement.detections import KEYPOINT_INDEX, KEYPOINT_MIN_SCORE
from engagement.errors import UserError, run_reporting_errors
from engagement.features import head_boxes, person_scale

EYES = [KEYPOINT_INDEX[name] for name in ("left_eye", "right_eye", "nose")]
WRISTS = [KEYPOINT_INDEX["left_wrist"], KEYPOINT_INDEX["right_wrist"]]
SHOULDERS = [KEYPOINT_INDEX["left_shoulder"], KEYPOINT_INDEX["right_shoulder"]]


def highest_wrist_above(keypoints: np.ndarray, xyxy: np.ndarray, reference: list[int]) -> float:
    """How far the highest confident wrist is above the highest confident ``reference`` keypoint, in person scales;
    -inf when either is missing."""
    points = keypoints[reference]
    points, wrists = points[points[:, 2] >= KEYPOINT_MIN_SCORE], keypoints[WRISTS]
    wrists = wrists[wrists[:, 2] >= KEYPOINT_MIN_SCORE]
    if not len(points) or not len(wrists):
        return -np.inf
    return float((points[:, 1].min() - wrists[:, 1].min()) / person_scale(keypoints[None], xyxy[None])[0])


def square(frame: np.ndarray, head: np.ndarray, side_heads: float, head_at: float) -> tuple[np.ndarray, np.ndarray]:
    """A square of ``side_heads`` head widths with the head's centre ``head_at`` of the way down, and its origin."""
    width = head[2] - head[0]
    centre = (head[:2] + head[2:]) / 2
    side = side_heads * width
    x0, y0 = int(max(centre[0] - side / 2, 0)), int(max(centre[1] - head_at * side, 0))
    x1, y1 = int(min(x0 + side, frame.shape[1])), int(min(y0 + side, frame.shape[0]))
    return frame[y0:y1, x0:x1], np.array([x0, y0], np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", help="a COCO classroom set with rooms (clabehavior)")
    parser.add_argument("--per-label", type=int, default=120, help="boxes per room and label for crop and palms "
                        "(all boxes for tiles)")
    parser.add_argument("--models-dir", default=None)
    parser.add_argument("--cache-dir", default=str(DEFAULT_CACHE))
    args = parser.parse_args()

    import cv2

    from engagement.detector import PoseDetector
    from engagement.hands import HandWrists

    root = Path(args.dataset)
    if not (root / "annotations.json").is_file():
        raise UserError(f"{root}: no annotations.json (a COCO classroom set with rooms, like clabehavior)")
    data = json.loads((root / "annotations.json").read_text())
    names = {c["id"]: c["name"] for c in data["categories"]}
    boxes_of = defaultdict(list)
    for annotation in data["annotations"]:
        x, y, w, h = annotation["bbox"]
        boxes_of[annotation["image_id"]].append((names[annotation["category_id"]], [x, y, x + w, y + h]))
    featurizer = DatasetFeaturizer(cache_dir=args.cache_dir, models_dir=args.models_dir)
    detector = PoseDetector(featurizer.detector_config, args.models_dir)
    hands = HandWrists.from_config(HandsConfig(enabled=True), args.models_dir)
    shares: dict[tuple[str, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    rng = np.random.default_rng(0)
    for image in rng.permutation(np.array(data["images"], dtype=object)):
        labelled = boxes_of.get(image["id"])
        if not labelled:
            continue
        frame = cv2.imread(str(root / image["file_name"]))
        found = featurizer.detections(root / image["file_name"], frame, featurizer.tile_grid)
        boxes = np.array([box for _, box in labelled], np.float32)
        matches = match_heads(upper_body_heads(boxes), found)
        heads = head_boxes(found.keypoints, found.xyxy)
        for (label, _), match in zip(labelled, matches):
            if match < 0:
                continue
            counts = shares[(image["room"], label)]
            keypoints, xyxy = found.keypoints[match], found.xyxy[match]
            counts["tiles: above shoulders"].append(highest_wrist_above(keypoints, xyxy, SHOULDERS) > 0)
            counts["tiles: above eyes"].append(highest_wrist_above(keypoints, xyxy, EYES) > 0)
            if len(counts["crop: above eyes"]) >= args.per_label:
                continue
            crop, origin = square(frame, heads[match], 5.0, 0.75)
            again = detector(crop)
            raised = False
            if len(again):
                again_heads = head_boxes(again.keypoints, again.xyxy)
                centres = (again_heads[:, :2] + again_heads[:, 2:]) / 2
                nearest = int(np.argmin(np.linalg.norm(centres + origin - (heads[match, :2] + heads[match, 2:]) / 2, axis=1)))
                raised = highest_wrist_above(again.keypoints[nearest], again.xyxy[nearest], EYES) > 0
            counts["crop: above eyes"].append(raised)
            crop, origin = square(frame, heads[match], 4.0, 0.5)
            palms = hands.confirmed_palms(crop)
            centre_y = (heads[match, 1] + heads[match, 3]) / 2 - origin[1]
            counts["palms: at or above head"].append(bool(len(palms)) and
                                                     bool(((palms.xyxy[:, 1] + palms.xyxy[:, 3]) / 2 <= centre_y).any()))
    sources = ["tiles: above shoulders", "tiles: above eyes", "crop: above eyes", "palms: at or above head"]
    print("| room | label | boxes matched | " + " | ".join(sources) + " |")
    print("|---|---|---|" + "---|" * len(sources))
    for (room, label), counts in sorted(shares.items()):
        print(f"| {room} | {label} | {len(counts[sources[0]])} | "
              + " | ".join(f"{np.mean(counts[s]):.2f} ({len(counts[s])})" for s in sources) + " |")


if __name__ == "__main__":
    raise SystemExit(run_reporting_errors(main, "raised_hands"))
