"""Roles: the instructor is not a student.

A track-level decision over a whole recording (``engagement.pipeline.decide``): tracks found to be the instructor
get ``data["role"] = "instructor"``, are drawn as such, and are left out of every student table, score and
report (``engagement.consent.stage.analysable``). ``classifier.instructor`` chooses how:

- ``auto``: a person who stands for most of the analysed frames (legs visible and long under the hips, as they
  are not for someone seated behind a desk) and walks (the box's lower middle ranges over at least one box
  height) is the instructor;
- ``zone``: a person whose box's lower middle is inside ``classifier.instructor_zone`` (a polygon in pixels, the
  front of the room) for most of the analysed frames;
- ``none``: everyone is a student.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Iterable

import numpy as np

from engagement.detections import KEYPOINT_INDEX, Detections

HIPS = [KEYPOINT_INDEX["left_hip"], KEYPOINT_INDEX["right_hip"]]
LEGS = [KEYPOINT_INDEX[name] for name in ("left_knee", "right_knee", "left_ankle", "right_ankle")]
KEYPOINT_SEEN = 0.3
STANDING_LEGS = 0.3  # knees or ankles this far below the hips, in box heights, is standing
MOST_OF_THE_TIME = 0.5  # share of a track's analysed frames
WALKING_RANGE = 1.0  # anchor range over the track, in median box heights


def standing(detections: Detections) -> np.ndarray:
    """Per row: whether the person stands (knees or ankles visible well below the hips)."""
    keypoints = detections.keypoints
    heights = np.maximum(detections.xyxy[:, 3] - detections.xyxy[:, 1], 1.0)
    hips_seen = keypoints[:, HIPS, 2] >= KEYPOINT_SEEN
    legs_seen = keypoints[:, LEGS, 2] >= KEYPOINT_SEEN
    hip_y = (keypoints[:, HIPS, 1] * hips_seen).sum(axis=1) / np.maximum(hips_seen.sum(axis=1), 1)
    lowest_leg_y = np.where(legs_seen, keypoints[:, LEGS, 1], -np.inf).max(axis=1, initial=-np.inf)
    return hips_seen.any(axis=1) & legs_seen.any(axis=1) & ((lowest_leg_y - hip_y) / heights >= STANDING_LEGS)


def instructor_tracks(frames: Iterable[Detections], mode: str, zone: list[list[float]] | None = None) -> set[int]:
    """The track IDs that are the instructor, by ``mode`` (``auto``, ``zone`` or ``none``), over all ``frames``."""
    if mode == "none":
        return set()
    from engagement.consent.stage import points_in_polygon

    votes: dict[int, list[bool]] = defaultdict(list)
    anchors: dict[int, list[np.ndarray]] = defaultdict(list)
    heights: dict[int, list[float]] = defaultdict(list)
    for detections in frames:
        tracked = detections[detections.track_id >= 0]
        if mode == "zone":
            hits = points_in_polygon(tracked.anchor, np.asarray(zone or [], np.float64))
        else:
            hits = standing(tracked)
        for track_id, hit, anchor, box in zip(tracked.track_id, hits, tracked.anchor, tracked.xyxy):
            votes[int(track_id)].append(bool(hit))
            anchors[int(track_id)].append(anchor)
            heights[int(track_id)].append(float(box[3] - box[1]))
    found = set()
    for track_id, hits in votes.items():
        if np.mean(hits) < MOST_OF_THE_TIME:
            continue
        if mode == "auto":
            spread = np.ptp(np.asarray(anchors[track_id]), axis=0).max()
            if spread < WALKING_RANGE * max(float(np.median(heights[track_id])), 1.0):
                continue
        found.add(track_id)
    return found


def mark_roles(frames: Iterable[Detections], instructors: set[int]) -> None:
    """Set ``data["role"]`` (``instructor`` or ``student``) on every row of ``frames``, in place."""
    for detections in frames:
        detections.data["role"] = ["instructor" if int(t) in instructors else "student" for t in detections.track_id]
