"""Tracklet stitching: one ID per person for a whole recording.

An online tracker loses a student who is hidden for longer than its ``max_age`` and gives them a new ID when
they reappear. With the whole recording tracked, ``stitch`` joins tracklets that follow one another into one
person, using what the online tracker cannot wait for:

- time: two tracklets of one person never overlap, and the gap between them is at most ``stitch_max_gap_s``;
- position: students mostly stay in their seats, so one tracklet's last anchor (the lower middle of its box) and
  the next one's first anchor lie within ``stitch_max_shift`` box heights of each other;
- appearance: the cosine distance of the tracklets' mean appearance embeddings is at most ``stitch_max_distance``;
- consent: only tracklets with the same consent outcome are joined, so stitching never shows or analyses anyone
  the consent stage did not allow.

Links are made greedily, closest pair first (appearance, shift and gap, each relative to its limit); each tracklet gets at most one predecessor and one successor, so a
person is a chain of tracklets in time order and takes the smallest ID in the chain.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

from engagement.config import TrackerConfig
from engagement.detections import Detections
from engagement.session import TrackingRecord


@dataclass
class Tracklet:
    """What stitching needs of one online track: its span, end boxes, summed appearance and consent outcomes."""

    track_id: int
    start_s: float
    end_s: float
    first_box: np.ndarray
    last_box: np.ndarray
    embedding_sum: np.ndarray | None = None
    consent: set[tuple[str, str | None]] = field(default_factory=set)

    @property
    def mean_embedding(self) -> np.ndarray | None:
        if self.embedding_sum is None:
            return None
        norm = float(np.linalg.norm(self.embedding_sum))
        return self.embedding_sum / norm if norm > 0 else self.embedding_sum


class Tracklets:
    """Accumulates every confirmed track seen on the analysis frames (a few KB per track, not per frame)."""

    def __init__(self) -> None:
        self.by_id: dict[int, Tracklet] = {}
        self.max_people = 0

    def add(self, time_s: float, detections: Detections, embeddings: np.ndarray | None = None) -> None:
        """Record one analysis frame's tracked detections; ``embeddings`` (N, D) are their appearance vectors."""
        self.max_people = max(self.max_people, len(detections))
        reasons = detections.data.get("consent", ["analyzed"] * len(detections))
        students = detections.data.get("student_id", [None] * len(detections))
        for row in np.flatnonzero(detections.track_id >= 0):
            track_id = int(detections.track_id[row])
            box = detections.xyxy[row].copy()
            tracklet = self.by_id.setdefault(track_id, Tracklet(track_id, time_s, time_s, box, box))
            tracklet.end_s, tracklet.last_box = time_s, box
            tracklet.consent.add((str(reasons[row]), students[row]))
            if embeddings is not None and embeddings.shape[1] > 1:  # a constant 1-d vector means no embedder
                tracklet.embedding_sum = embeddings[row].astype(np.float64) + (0 if tracklet.embedding_sum is None else tracklet.embedding_sum)

    def tracking_record(self, mapping: dict[int, int] | None = None) -> TrackingRecord:
        """Confirmed IDs and the ID ratio (IDs / most people in one frame), after ``mapping`` when given."""
        ids = {(mapping or {}).get(t, t) for t in self.by_id}
        return TrackingRecord(confirmed_tracks=len(ids), max_people_in_frame=self.max_people,
                              id_ratio=len(ids) / self.max_people if self.max_people else None)


def _anchor(box: np.ndarray) -> np.ndarray:
    return np.array([(box[0] + box[2]) / 2, box[3]])


def link_cost(before: Tracklet, after: Tracklet, config: TrackerConfig) -> float | None:
    """How well ``after`` continues ``before`` (lower is better), or None when it cannot be the same person."""
    gap = after.start_s - before.end_s
    if gap <= 0 or gap > config.stitch_max_gap_s or before.consent != after.consent:
        return None
    height = max(before.last_box[3] - before.last_box[1], after.first_box[3] - after.first_box[1], 1.0)
    shift = float(np.linalg.norm(_anchor(before.last_box) - _anchor(after.first_box))) / height
    if shift > config.stitch_max_shift:
        return None
    a, b = before.mean_embedding, after.mean_embedding
    distance = 0.0 if a is None or b is None else 1.0 - float(np.dot(a, b))
    if distance > config.stitch_max_distance:
        return None
    # Each term is 0..1 of its limit; the gap term makes a person's next tracklet win over a later one.
    return distance / config.stitch_max_distance + shift / config.stitch_max_shift + gap / config.stitch_max_gap_s


def stitch(tracklets: Iterable[Tracklet], config: TrackerConfig) -> dict[int, int]:
    """Old track ID -> the ID of the person it belongs to (the smallest ID of its chain), for every tracklet."""
    items = sorted(tracklets, key=lambda t: (t.start_s, t.track_id))
    pairs = []
    for i, before in enumerate(items):
        for after in items[i + 1:]:
            cost = link_cost(before, after, config)
            if cost is not None:
                pairs.append((cost, before.track_id, after.track_id))
    successor: dict[int, int] = {}
    predecessor: dict[int, int] = {}
    for _, before, after in sorted(pairs):
        if before not in successor and after not in predecessor:
            successor[before], predecessor[after] = after, before
    mapping = {}
    for tracklet in items:
        head = tracklet.track_id
        while head in predecessor:
            head = predecessor[head]
        chain = [head]
        while chain[-1] in successor:
            chain.append(successor[chain[-1]])
        mapping[tracklet.track_id] = min(chain)
    return mapping


def relabel(frames: Iterable[Detections], mapping: dict[int, int]) -> None:
    """Rewrite the track IDs of ``frames`` in place (untracked rows stay -1)."""
    for detections in frames:
        detections.track_id = np.array([mapping.get(int(t), int(t)) for t in detections.track_id], np.int64)
