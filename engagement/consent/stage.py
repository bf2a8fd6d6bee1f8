"""Consent stage: decide per detection whether it may be analysed and whether it must be blurred.

Outcomes, written to ``detections.data``:
- ``opted_out`` (bool): no analytics for this row;
- ``blur`` (bool): the anonymizer must hide this person's face. Under the default policy ``unconsented``
  every row is blurred except a confirmed track mapped to a student whose consent is on record (registry
  mode), so without a registry every face is hidden while the tracks are still analysed pseudonymously;
- ``student_id`` (str | None): the student this track was mapped to, if any;
- ``consent`` (str): why: ``analyzed``, ``seat`` (anchor in an opted-out seat zone, or with a seat plan a
  non-participating, empty or contested seat), ``student`` (mapped to a student who opted out, withdrew or never
  consented), ``unknown`` (see below), ``pending`` (a seat-plan run's pass 1: see ``place``).

A row is *unknown* when the pipeline cannot place it: untracked (track id -1), a track the tracker
has not confirmed yet, or, when a registry course is in use, a track not mapped to any student.
With ``unknown: blur`` unknown rows are treated as opted out (no analytics, blurred); with
``unknown: analyze`` they are analysed and not blurred. Opting out is sticky: once a track is opted
out for a seat or a student reason, or is an unmapped track in registry mode, every later row of it
is opted out too, and it is counted in ``excluded_track_ids``; unconfirmed/untracked rows are not
counted because the track they become may well be a consenting student.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from engagement.config import ConsentConfig, SeatZone
from engagement.consent.seatplan import seat_hits
from engagement.detections import UNTRACKED, Detections

if TYPE_CHECKING:
    from engagement.consent.registry import Registry
    from engagement.consent.seatplan import SeatDecision, SeatPlan
    from engagement.stitch import Tracklets


# Whose faces each ``consent.blur`` policy hides, in words for closing lines and reports.
BLURRED_BY_POLICY = {
    "unconsented": "everyone without a consent record on file",
    "opted_out": "people who opted out or withdrew",
    "all": "everyone",
    "none": "nobody",
}


def points_in_polygon(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Even-odd ray casting: which of ``points`` (N, 2) lie inside ``polygon`` (M, 2); edges count as inside."""
    points = np.asarray(points, np.float64).reshape(-1, 2)
    polygon = np.asarray(polygon, np.float64).reshape(-1, 2)
    if len(polygon) < 3 or len(points) == 0:
        return np.zeros(len(points), bool)
    x, y = points[:, 0:1], points[:, 1:2]
    x1, y1 = polygon[:, 0], polygon[:, 1]
    x2, y2 = np.roll(x1, -1), np.roll(y1, -1)
    crosses = (y1 > y) != (y2 > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        x_at_y = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
    inside = np.count_nonzero(crosses & (x < x_at_y), axis=1) % 2 == 1
    return inside | _on_boundary(points, x1, y1, x2, y2)


def _on_boundary(points: np.ndarray, x1: np.ndarray, y1: np.ndarray, x2: np.ndarray, y2: np.ndarray) -> np.ndarray:
    px, py = points[:, 0:1], points[:, 1:2]
    cross = (x2 - x1) * (py - y1) - (y2 - y1) * (px - x1)
    within = (np.minimum(x1, x2) - 1e-9 <= px) & (px <= np.maximum(x1, x2) + 1e-9)
    within &= (np.minimum(y1, y2) - 1e-9 <= py) & (py <= np.maximum(y1, y2) + 1e-9)
    return np.any((np.abs(cross) < 1e-6) & within, axis=1)


def in_seat_zones(points: np.ndarray, zones: list[SeatZone]) -> np.ndarray:
    """Which points lie in any of the zones."""
    inside = np.zeros(len(points), bool)
    for zone in zones:
        inside |= points_in_polygon(points, np.asarray(zone.polygon, np.float64))
    return inside


@dataclass(frozen=True)
class RegistrySnapshot:
    """What a run needs from the consent registry for its course, read once where the registry lives (the CLI)
    and handed to the run as data: a run on another machine never opens the registry."""

    consented: frozenset[str]
    status_counts: dict[str, int] = field(default_factory=dict)
    form_versions: tuple[str, ...] = ()
    retention_days: int | None = None
    seat_plan: "SeatPlan | None" = None  # the room's plan, with ``consent.room``
    roster_seats: tuple[tuple[str, str], ...] = ()  # (seat, student) from the course's consent records

    @classmethod
    def read(cls, config: ConsentConfig, registry: "Registry | None" = None) -> "RegistrySnapshot":
        """The course's consent facts, after the registry-mode checks (unknown course, no current approval or
        unsafe settings: refused)."""
        if registry is None:
            from engagement.consent.registry import Registry

            with Registry.open(config.registry, create=False) as opened:  # a course lives in a registry that exists
                return cls.read(config, opened)
        from engagement.consent.checks import require_registry_mode

        require_registry_mode(config, registry)
        records = registry.consent(config.course)
        counts: dict[str, int] = {}
        for entry in records:
            counts[entry.status] = counts.get(entry.status, 0) + 1
        return cls(
            consented=frozenset(entry.student for entry in records if entry.status == "consented"),
            status_counts=counts,
            form_versions=tuple(sorted({entry.form_version for entry in records if entry.form_version})),
            retention_days=registry.course(config.course).get("retention_days"),
            seat_plan=registry.seat_plan(config.room) if config.room else None,
            roster_seats=tuple(sorted((entry.seat, entry.student) for entry in records if entry.seat)),
        )


class ConsentStage:
    """Marks rows opted out / to blur from seat zones, the track->student mapping and the registry.

    With a course set, the consent facts come from ``snapshot`` (read earlier, e.g. by the CLI before it hands
    videos to other machines) or else from ``registry``, opened here when not given; either way the registry is
    read once, before the first frame, and session.json's consent facts come from the same snapshot."""

    def __init__(self, config: ConsentConfig, registry: "Registry | None" = None, snapshot: RegistrySnapshot | None = None) -> None:
        self.config = config
        self.track_students = {int(t): s for t, s in config.track_students.items()}
        self.uses_registry = config.course is not None
        self.snapshot: RegistrySnapshot | None = None
        if self.uses_registry:
            self.snapshot = snapshot if snapshot is not None else RegistrySnapshot.read(config, registry)
        self.consented: frozenset[str] = self.snapshot.consented if self.snapshot is not None else frozenset()
        self.seat_plan = self.snapshot.seat_plan if self.snapshot is not None else None
        self.pending = self.seat_plan is not None  # until ``place``: who is who is known after the whole recording
        self.seat_excluded: set[int] = set()  # tracks in a non-participating, empty or contested seat
        self.seats: dict[int, str] = {}  # track id -> seat, with a seat plan
        self._placed_plan: "SeatPlan | None" = None  # the plan in the video's pixels, once ``place`` ran
        self._excluded: dict[int, str] = {}  # track id -> reason it was first opted out

    @property
    def excluded_track_ids(self) -> set[int]:
        """Tracks opted out at any time in this session (their count goes into the outputs)."""
        return set(self._excluded)

    def __call__(self, detections: Detections) -> Detections:
        n = len(detections)
        track_ids = detections.track_id
        tracked = track_ids != UNTRACKED
        confirmed = np.asarray(detections.data.get("confirmed", np.ones(n, bool)), bool) & tracked
        student_ids = [self.track_students.get(int(t)) if t != UNTRACKED else None for t in track_ids]
        mapped = np.array([s is not None for s in student_ids], bool)

        if self.pending:
            return self._pending(detections, confirmed)
        seat = in_seat_zones(detections.anchor, self.config.opted_out_seats) | np.isin(track_ids, list(self.seat_excluded))
        elsewhere = np.zeros(n, bool)
        if self._placed_plan is not None:
            hits = seat_hits(detections.anchor, self._placed_plan)
            seat |= self._in_non_participating_seat(hits)
            elsewhere = self._outside_own_seat(detections.track_id, hits)
        if self.uses_registry:
            student_out = mapped & np.array([s not in self.consented for s in student_ids], bool)
            unplaced = confirmed & ~mapped
        else:
            student_out = np.zeros(n, bool)
            unplaced = np.zeros(n, bool)
        # Only a consent record shows a face: a confirmed track mapped to a student who consented in the registry.
        shown_by_consent = confirmed & mapped & ~student_out if self.uses_registry else np.zeros(n, bool)
        unknown = ~confirmed | unplaced
        unknown_blocks = self.config.unknown == "blur"

        reasons = np.full(n, "analyzed", dtype=object)
        reasons[unknown & unknown_blocks] = "unknown"
        reasons[student_out] = "student"
        reasons[seat] = "seat"
        definite = seat | student_out | (unplaced & unknown_blocks)
        for row in np.flatnonzero(definite & tracked):
            self._excluded.setdefault(int(track_ids[row]), str(reasons[row]))
        for row in np.flatnonzero(tracked):
            reasons[row] = self._excluded.get(int(track_ids[row]), reasons[row])
        reasons[elsewhere] = "seat"  # this frame only: a person away from the track's seat may not be who it says
        opted_out = reasons != "analyzed"

        blur = {
            "unconsented": ~(shown_by_consent & ~opted_out),
            "opted_out": opted_out,
            "all": np.ones(n, bool),
            "none": np.zeros(n, bool),
        }[self.config.blur]
        data = {**detections.data, "opted_out": opted_out, "blur": blur, "student_id": student_ids, "consent": list(reasons)}
        return Detections(detections.xyxy, detections.confidence, detections.track_id, detections.keypoints, data)

    @staticmethod
    def _pending(detections: Detections, confirmed: np.ndarray) -> Detections:
        """Pass 1 with a seat plan: every face blurred; confirmed tracks are analysed in memory (features, states)
        until ``place`` decides who they are; nothing is written before that."""
        n = len(detections)
        reasons = np.where(confirmed, "pending", "unknown").astype(object)
        data = {**detections.data, "opted_out": ~confirmed, "blur": np.ones(n, bool), "student_id": [None] * n,
                "consent": list(reasons)}
        return Detections(detections.xyxy, detections.confidence, detections.track_id, detections.keypoints, data)

    def place(self, frames: list[tuple[float, Detections]], width: int, height: int) -> dict[int, "SeatDecision"]:
        """A seat-plan run, after pass 1 (and stitching): give each track its seat and student from the room's plan
        and the roster, then decide every row of ``frames`` (``(frame index, detections)`` in order, from a
        ``width`` x ``height`` video) again, in place, as if the track map had been written by hand. Returns each
        track's seat decision."""
        from engagement.consent.seatplan import SEAT_OUT_REASONS, decide_seats, occupied_seats

        assert self.snapshot is not None and self.seat_plan is not None
        plan = self.seat_plan.for_frame(width, height)
        decisions = decide_seats(occupied_seats(frames, plan), plan, self.snapshot.roster_seats)
        self.track_students = {t: d.student for t, d in decisions.items() if d.student is not None}
        self._placed_plan = plan
        self.seat_excluded = {t for t, d in decisions.items() if d.outcome in SEAT_OUT_REASONS}
        for _, detections in frames:  # once in a non-participating seat, the whole track, earlier frames included
            inside = self._in_non_participating_seat(seat_hits(detections.anchor, plan))
            self.seat_excluded.update(detections.track_id[inside & (detections.track_id >= 0)].tolist())
        self.seats = {t: d.seat for t, d in decisions.items() if d.seat is not None}
        self.pending = False
        self._excluded.clear()
        for _, detections in frames:
            detections.data.update(self(detections).data)
        return decisions

    def exclude_whole_tracks(self, frames: list[Detections], mapping: dict[int, int]) -> None:
        """A recording, between the passes: every row of each track opted out at any time (``excluded_track_ids``,
        renamed by the stitching ``mapping``, which they keep from then on) is opted out and hidden, in place, its
        frames before that included; pass 1 could only decide forward in time."""
        reasons = {mapping.get(track, track): reason for track, reason in self._excluded.items()}
        self._excluded = reasons  # one person's fragments, joined, are one person excluded (the count in the outputs)
        hide = self.config.blur != "none"
        for detections in frames:
            rows = [row for row, track in enumerate(detections.track_id.tolist()) if track in reasons]
            if not rows:
                continue
            opted_out = np.array(detections.data["opted_out"], bool)
            blur = np.array(detections.data["blur"], bool)
            consent = list(detections.data["consent"])
            opted_out[rows] = True
            blur[rows] |= hide
            for row in rows:
                consent[row] = reasons[int(detections.track_id[row])]
            detections.data.update(opted_out=opted_out, blur=blur, consent=consent)

    def keep_seats_apart(self, tracklets: "Tracklets", frames: list[tuple[float, Detections]], width: int, height: int) -> None:
        """Before a seat-plan run's tracklets are stitched: each tracklet's consent key becomes the seat it sat in,
        so stitching joins only tracklets of one seat, never a neighbour to a student, and none seated nowhere or
        in several seats (pass 1 gives everyone the same ``pending`` outcome, which would keep nobody apart)."""
        from engagement.consent.seatplan import occupied_seats

        assert self.seat_plan is not None
        occupied = occupied_seats(frames, self.seat_plan.for_frame(width, height))
        for track_id, tracklet in tracklets.by_id.items():
            place = occupied.get(track_id)
            alone = place is None or place.seat is None or place.mixed
            tracklet.consent = {("seat", f"unplaced:{track_id}" if alone else place.seat)}

    def _in_non_participating_seat(self, hits: np.ndarray) -> np.ndarray:
        """Rows whose anchor lies in a non-participating seat, from their ``seat_hits``."""
        return hits[:, [not seat.participating for seat in self._placed_plan.seats]].any(axis=1)

    def _outside_own_seat(self, track_ids: np.ndarray, hits: np.ndarray) -> np.ndarray:
        """Rows away from their track's seat, from their ``seat_hits``: in another seat (a seated person the tracker
        swapped with a neighbour, or a student visiting another seat), or a seated track's row in no seat (an ID
        switch onto someone walking past, or the student standing away from their seat): excluded for that frame,
        since who it is is in doubt."""
        column = {seat.name: index for index, seat in enumerate(self._placed_plan.seats)}
        own = [self.seats.get(int(t)) for t in track_ids]
        in_own = np.array([seat is not None and bool(row[column[seat]]) for seat, row in zip(own, hits)], bool)
        has_seat = np.array([seat is not None for seat in own], bool)
        return (hits.any(axis=1) | has_seat) & ~in_own


def analysable(detections: Detections) -> np.ndarray:
    """Rows that may enter analytics: confirmed tracks of students (not the instructor) who are not opted out."""
    students = np.array([role != "instructor" for role in detections.data.get("role", ["student"] * len(detections))], bool)
    return (detections.track_id >= 0) & ~np.asarray(detections.data["opted_out"], bool) & students
