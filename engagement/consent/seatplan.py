"""Seat plans: consent by seat, with no hand-written track map.

A room's seat plan names seat polygons in the pixels of a reference frame from its camera and marks the seats whose
occupants do not take part. The course roster (``consent_records.seat``) says which student sits where. After pass 1
of a recorded video (``engagement.pipeline.decide``) each track gets the seat its anchor occupies most of the time
while seated, and through the roster a student; consent, blurring and exclusion then follow as for a mapped track.

Fail closed: a track whose seat is non-participating, has no roster student (empty), or is contested (two tracks
in it at once, or two roster students given it) is opted out with reason ``seat``; a track that never sits in a
seat is unplaced, handled by ``consent.unknown`` (blurred and not analysed by default).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from engagement.detections import Detections
from engagement.errors import UserError

SEATED_SHARE = 0.5  # a track's seat must hold its anchor on at least this share of its seated analysis frames
OTHER_SEAT_SHARE = 0.2  # ...and no other seat more than this share, else the seat is contested
ASPECT_TOLERANCE = 0.02  # a video whose aspect ratio differs more from the plan's reference is another camera
SEAT_OUT_REASONS = ("non_participating", "empty", "contested")


@dataclass(frozen=True)
class Seat:
    """One seat: a polygon in the reference frame's pixels; ``participating: false`` excludes whoever sits in it."""

    name: str
    polygon: tuple[tuple[float, float], ...]
    participating: bool = True


@dataclass(frozen=True)
class SeatPlan:
    """A room's seats, drawn on a ``width`` x ``height`` reference frame from its camera."""

    room: str
    width: int
    height: int
    seats: tuple[Seat, ...] = ()

    @classmethod
    def from_dict(cls, data: Any, where: str = "seat plan") -> "SeatPlan":
        """A validated plan; anything malformed is a UserError naming the field."""
        if not isinstance(data, dict):
            raise UserError(f"{where}: expected a mapping with room, width, height and seats")
        _only_known_keys(data, PLAN_KEYS, where)
        room = checked_room(data.get("room"), where)
        width, height = data.get("width"), data.get("height")
        if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (width, height)):
            raise UserError(f"{where}: width and height must be positive whole numbers of pixels (the reference frame)")
        items = data.get("seats")
        if not isinstance(items, list):
            raise UserError(f"{where}: seats must be a list")
        seats = tuple(_seat(item, f"{where}: seats[{i}]", width, height) for i, item in enumerate(items))
        names = Counter(seat.name for seat in seats)
        repeated = sorted(name for name, count in names.items() if count > 1)
        if repeated:
            raise UserError(f"{where}: seat names must be unique, repeated: {', '.join(repeated)}")
        return cls(room, width, height, seats)

    def to_dict(self) -> dict[str, Any]:
        return {"room": self.room, "width": self.width, "height": self.height,
                "seats": [{"name": s.name, "polygon": [[float(x), float(y)] for x, y in s.polygon], "participating": s.participating}
                          for s in self.seats]}

    @classmethod
    def read(cls, path: str | Path) -> "SeatPlan":
        """A plan from a YAML file (``engagement seats export`` writes them)."""
        import yaml

        try:
            data = yaml.safe_load(Path(path).read_text())
        except OSError as error:
            raise UserError(f"cannot read the seat plan {path}: {error.strerror}") from None
        except UnicodeDecodeError:
            raise UserError(f"{path}: not a seat plan (not UTF-8 text)") from None
        except yaml.YAMLError as error:
            raise UserError(f"{path}: not valid YAML ({str(error).splitlines()[0]})") from None
        return cls.from_dict(data, str(path))

    def to_yaml(self) -> str:
        """The plan as YAML text, each corner on one line (``read`` and ``engagement seats import`` take it)."""
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)

    def write(self, path: str | Path) -> Path:
        """Write the plan as YAML, atomically."""
        from engagement.files import write_atomic

        text = self.to_yaml()
        return write_atomic(Path(path), lambda stream: stream.write(text.encode()))

    def for_frame(self, width: int, height: int) -> "SeatPlan":
        """The plan in the pixels of a ``width`` x ``height`` video from the same camera (scaled); a video of
        another shape is another camera, and a UserError."""
        if (width, height) == (self.width, self.height):
            return self
        if abs(width / height - self.width / self.height) > ASPECT_TOLERANCE * self.width / self.height:
            raise UserError(f"the seat plan of room {self.room} was drawn on a {self.width}x{self.height} frame; this video is "
                            f"{width}x{height}, another camera or framing: draw a plan on a frame of this video")
        sx, sy = width / self.width, height / self.height
        seats = tuple(Seat(s.name, tuple((x * sx, y * sy) for x, y in s.polygon), s.participating) for s in self.seats)
        return SeatPlan(self.room, width, height, seats)


def checked_room(room: Any, where: str) -> str:
    """``room`` stripped, when it is a room name a plan can carry (1 to 64 characters); else a UserError."""
    if not isinstance(room, str) or not room.strip() or len(room) > 64:
        raise UserError(f"{where}: room must be a name of 1 to 64 characters")
    return room.strip()


def _seat(item: Any, where: str, width: int, height: int) -> Seat:
    if not isinstance(item, dict):
        raise UserError(f"{where}: expected a mapping with name, polygon and participating")
    _only_known_keys(item, SEAT_KEYS, where)
    name = item.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 64:
        raise UserError(f"{where}: name must be a seat name of 1 to 64 characters (A1, B2, ...)")
    polygon = item.get("polygon")
    points = []
    if isinstance(polygon, list):
        for point in polygon:
            if not (isinstance(point, (list, tuple)) and len(point) == 2
                    and all(isinstance(v, (int, float)) and not isinstance(v, bool) and _finite(v) for v in point)):
                points = []
                break
            points.append((float(point[0]), float(point[1])))
    if len(points) < 3:
        raise UserError(f"{where} ({name}): polygon must be at least 3 points [x, y] in pixels")
    if not all(-1 <= x <= width + 1 and -1 <= y <= height + 1 for x, y in points):
        raise UserError(f"{where} ({name}): a corner lies outside the {width}x{height} reference frame")
    if _edges_cross(points):
        raise UserError(f"{where} ({name}): the polygon's edges cross; give its corners in order around the seat")
    if _area(points) < 1.0:
        raise UserError(f"{where} ({name}): the polygon has no area (its corners lie on one line)")
    participating = item.get("participating")
    if not isinstance(participating, bool):  # missing too: a seat is not taken to participate unless it says so
        raise UserError(f"{where} ({name}): participating must be true or false")
    return Seat(name.strip(), tuple(points), participating)


PLAN_KEYS = ("room", "width", "height", "seats")
SEAT_KEYS = ("name", "polygon", "participating")


def _only_known_keys(data: dict, known: tuple[str, ...], where: str) -> None:
    """Refuse a key the plan does not know: a misspelt ``participating`` must not leave a seat participating."""
    unknown = sorted(str(key) for key in data if key not in known)
    if unknown:
        raise UserError(f"{where}: unknown key {', '.join(unknown)} (valid keys: {', '.join(known)})")


def _finite(value: float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer too large for a float
        return False


def _edges_cross(points: list[tuple[float, float]]) -> bool:
    """Whether two edges of the closed polygon that share no corner cross each other (a bow tie): whether a person
    is inside such a shape is not what the drawing meant."""
    def turn(a: tuple[float, float], b: tuple[float, float], c: tuple[float, float]) -> float:
        return (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])

    edges = list(zip(points, points[1:] + points[:1]))
    for i, (a, b) in enumerate(edges):
        for j in range(i + 2, len(edges) - (1 if i == 0 else 0)):
            c, d = edges[j]
            if turn(a, b, c) * turn(a, b, d) < 0 and turn(c, d, a) * turn(c, d, b) < 0:
                return True
    return False


def _area(points: list[tuple[float, float]]) -> float:
    xs, ys = np.array(points).T
    return abs(float(np.dot(xs, np.roll(ys, -1)) - np.dot(ys, np.roll(xs, -1)))) / 2


@dataclass(frozen=True)
class SeatDecision:
    """Where a track sat and what follows: ``student`` (mapped), or one of ``SEAT_OUT_REASONS`` (opted out), or
    ``no_seat`` (unplaced)."""

    seat: str | None
    outcome: str
    student: str | None = None


@dataclass(frozen=True)
class Occupancy:
    """A track's seat (None: seated in no seat most of the time), the span of positions it sat in it, and whether
    it also sat in another seat for more than ``OTHER_SEAT_SHARE`` of its seated frames (an ID switch between
    neighbours, or seats drawn overlapping: contested)."""

    seat: str | None
    first: float = 0.0
    last: float = 0.0
    mixed: bool = False


@dataclass
class _Occupancy:
    seats: Counter = field(default_factory=Counter)  # seat -> seated frames in it
    spans: dict = field(default_factory=dict)  # seat -> [first, last] position seated in it
    seated: int = 0


def seat_hits(points: np.ndarray, plan: SeatPlan) -> np.ndarray:
    """(N, seats) bool: which seats' polygons hold each point (several where polygons overlap)."""
    from engagement.consent.stage import points_in_polygon

    if not plan.seats:
        return np.zeros((len(points), 0), bool)
    return np.stack([points_in_polygon(points, np.asarray(seat.polygon, np.float64)) for seat in plan.seats], axis=1)


def occupied_seats(frames: Iterable[tuple[float, Detections]], plan: SeatPlan) -> dict[int, Occupancy]:
    """Per track over ``(position, detections)`` analysis frames (position: a frame index or a time): the seat its
    anchor is in on at least ``SEATED_SHARE`` of the frames where it is seated, counting every seat a point lies in."""
    from engagement.roles import standing

    seen: dict[int, _Occupancy] = defaultdict(_Occupancy)
    for position, detections in frames:
        tracked = detections[detections.track_id >= 0]
        if not len(tracked):
            continue
        seated = ~standing(tracked)
        for track_id, is_seated, hits in zip(tracked.track_id.tolist(), seated, seat_hits(tracked.anchor, plan)):
            if not is_seated:
                continue
            entry = seen[track_id]
            entry.seated += 1
            for index in np.flatnonzero(hits):
                seat = plan.seats[int(index)].name
                entry.seats[seat] += 1
                span = entry.spans.setdefault(seat, [position, position])
                span[0], span[1] = min(span[0], position), max(span[1], position)
    found: dict[int, Occupancy] = {}
    for track_id, entry in seen.items():
        ranked = entry.seats.most_common(2)
        seat, count = ranked[0] if ranked else (None, 0)
        if seat is None or count < SEATED_SHARE * entry.seated:
            found[track_id] = Occupancy(None)
            continue
        mixed = len(ranked) > 1 and ranked[1][1] > OTHER_SEAT_SHARE * entry.seated
        found[track_id] = Occupancy(seat, *entry.spans[seat], mixed=mixed)
    return found


def decide_seats(occupied: dict[int, Occupancy], plan: SeatPlan, roster: Iterable[tuple[str, str]]) -> dict[int, SeatDecision]:
    """Each track's outcome from the seat it occupied (``occupied_seats``) and the roster's ``(seat, student)`` pairs."""
    students_of: dict[str, set[str]] = defaultdict(set)
    for seat, student in roster:
        students_of[seat].add(student)
    participating = {seat.name: seat.participating for seat in plan.seats}
    by_seat: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for place in occupied.values():
        if place.seat is not None:
            by_seat[place.seat].append((place.first, place.last))
    decisions = {}
    for track_id, place in occupied.items():
        seat = place.seat
        if seat is None:
            decisions[track_id] = SeatDecision(None, "no_seat")
        elif not participating[seat]:
            decisions[track_id] = SeatDecision(seat, "non_participating")
        elif place.mixed or _overlaps((place.first, place.last), by_seat[seat]) or len(students_of[seat]) > 1:
            decisions[track_id] = SeatDecision(seat, "contested")
        elif not students_of[seat]:
            decisions[track_id] = SeatDecision(seat, "empty")
        else:
            decisions[track_id] = SeatDecision(seat, "student", next(iter(students_of[seat])))
    return decisions


def _overlaps(span: tuple[float, float], spans: list[tuple[float, float]]) -> bool:
    """Whether ``span`` overlaps any other span in ``spans`` (which holds ``span`` itself once)."""
    return sum(first <= span[1] and span[0] <= last for first, last in spans) > 1


def propose_seats(frames: Iterable[Detections], width: int, height: int, room: str, min_share: float = 0.5) -> SeatPlan:
    """A first plan from where people sit: one seat per track seated on at least ``min_share`` of the analysis
    frames, a box around its anchors (half the person's box wide and a third high), named by row (A at the front,
    the bottom of the frame) and column (1 at the left). Overlapping proposals are merged; the instructor edits the
    rest in the web app or the YAML."""
    from engagement.roles import standing

    anchors: dict[int, list[np.ndarray]] = defaultdict(list)
    sizes: dict[int, list[tuple[float, float]]] = defaultdict(list)
    frame_count = 0
    for detections in frames:
        frame_count += 1
        tracked = detections[detections.track_id >= 0]
        seated = ~standing(tracked)
        for track_id, anchor, box in zip(tracked.track_id[seated], tracked.anchor[seated], tracked.xyxy[seated]):
            anchors[int(track_id)].append(anchor)
            sizes[int(track_id)].append((float(box[2] - box[0]), float(box[3] - box[1])))
    boxes = []
    for track_id, points in anchors.items():
        if len(points) < min_share * frame_count:
            continue
        cx, cy = np.median(np.asarray(points), axis=0)
        w, h = np.median(np.asarray(sizes[track_id]), axis=0)
        boxes.append([max(cx - w / 4, 0), max(cy - h / 6, 0), min(cx + w / 4, width), min(cy + h / 6, height)])
    boxes = _merge_overlapping(boxes)
    return SeatPlan(room, width, height, _named(boxes))


def _merge_overlapping(boxes: list[list[float]]) -> list[list[float]]:
    merged = True
    while merged:
        merged = False
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                a, b = boxes[i], boxes[j]
                if a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]:
                    boxes[i] = [min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])]
                    del boxes[j]
                    merged = True
                    break
            if merged:
                break
    return boxes


def _named(boxes: list[list[float]]) -> tuple[Seat, ...]:
    """Seats named row by row from the bottom of the frame (the front of the room): a new row starts where the
    next anchor is higher than the row's first by more than half that seat's height."""
    seats: list[Seat] = []
    rows: list[list[list[float]]] = []
    for box in sorted(boxes, key=lambda b: -(b[1] + b[3])):
        if rows and (rows[-1][0][1] + rows[-1][0][3]) / 2 - (box[1] + box[3]) / 2 < (rows[-1][0][3] - rows[-1][0][1]) / 2:
            rows[-1].append(box)
        else:
            rows.append([box])
    for row_index, row in enumerate(rows):
        letter = _row_letter(row_index)
        for column, (x1, y1, x2, y2) in enumerate(sorted(row, key=lambda b: b[0]), start=1):
            polygon = tuple((round(float(x), 1), round(float(y), 1)) for x, y in ((x1, y1), (x2, y1), (x2, y2), (x1, y2)))
            seats.append(Seat(f"{letter}{column}", polygon))
    return tuple(seats)


def _row_letter(index: int) -> str:
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(ord("A") + rest) + letters
    return letters
