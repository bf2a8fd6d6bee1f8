"""Annotators: ``annotate(frame, detections) -> frame``, each drawing one thing, composable.

Boxes, skeletons and labels are coloured by engagement state (``STATE_COLORS``): a reader matches a box to
the legend without knowing track IDs. Labels are placed so that they never cover one another where the frame
has room (``place_labels``). Opted-out people are never drawn; annotation runs after the anonymizer.
"""

from __future__ import annotations

from typing import Iterable, Protocol

import cv2
import numpy as np

from engagement.config import SeatZone
from engagement.detections import COCO_SKELETON, KEYPOINT_DRAW_MIN_SCORE, Detections
from engagement.states import DISPLAY_NAMES, INSTRUCTOR_COLOUR, STATE_COLOURS, STATES, UNCERTAIN

Color = tuple[int, int, int]  # BGR


def bgr(hex_colour: str) -> Color:
    """An RGB hex colour (``#RRGGBB``) as OpenCV's BGR tuple."""
    red, green, blue = (int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
    return blue, green, red


# The states' shared colours (``engagement.states.STATE_COLOURS``, as the report and the web app draw them), as BGR.
STATE_COLORS: dict[str, Color] = {state: bgr(colour) for state, colour in STATE_COLOURS.items()}
NO_STATE_COLOR: Color = STATE_COLORS[UNCERTAIN]  # grey: not classified (yet), uncertain, or an unknown state
INSTRUCTOR_COLOR: Color = bgr(INSTRUCTOR_COLOUR)
ZONE_COLOR: Color = (255, 0, 255)  # magenta: drawn outlines, never a person's colour
FONT = cv2.FONT_HERSHEY_SIMPLEX
SCORE_MEANING = "number: engagement score 0-100"


class Annotator(Protocol):
    """Anything that draws one thing on a frame from its detections."""

    def annotate(self, frame: np.ndarray, detections: Detections) -> np.ndarray: ...


def person_colors(detections: Detections) -> list[Color]:
    """One colour per row: the instructor's if ``data["role"]`` says so, else its state's, else grey."""
    states = detections.data.get("state", [""] * len(detections))
    roles = detections.data.get("role", [""] * len(detections))
    return [INSTRUCTOR_COLOR if role == "instructor" else STATE_COLORS.get(str(state), NO_STATE_COLOR)
            for state, role in zip(states, roles)]


def _drawn(detections: Detections) -> Detections:
    """Rows to draw: confirmed tracks that are not opted out (opted-out people get no box, ID or label)."""
    keep = detections.track_id >= 0
    if "opted_out" in detections.data:
        keep &= ~np.asarray(detections.data["opted_out"], bool)
    return detections[keep]


def _thickness(frame: np.ndarray) -> int:
    return max(1, round(min(frame.shape[:2]) / 360))


def _text_scale(frame: np.ndarray) -> float:
    return max(0.4, min(frame.shape[:2]) / 1200)


def _text_thickness(frame: np.ndarray) -> int:
    return max(1, _thickness(frame) - 1)


def _ink(background: Color) -> Color:
    """Black or white text, whichever reads better on ``background``."""
    b, g, r = background
    return (0, 0, 0) if 0.114 * b + 0.587 * g + 0.299 * r >= 110 else (255, 255, 255)


def _label_size(frame: np.ndarray, text: str) -> tuple[int, int]:
    """Width and height in pixels of ``text`` drawn by ``_text_box``."""
    (w, h), baseline = cv2.getTextSize(text, FONT, _text_scale(frame), _text_thickness(frame))
    return w + 4, h + baseline + 3


def _text_box(frame: np.ndarray, text: str, origin: tuple[int, int], background: Color) -> None:
    """``text`` on a filled rectangle of ``_label_size`` whose top-left corner is ``origin``."""
    scale, thickness = _text_scale(frame), _text_thickness(frame)
    w, h = _label_size(frame, text)
    x, y = origin
    (_, text_h), _ = cv2.getTextSize(text, FONT, scale, thickness)
    cv2.rectangle(frame, (x, y), (x + w - 1, y + h - 1), background, -1)
    cv2.putText(frame, text, (x + 2, y + text_h + 1), FONT, scale, _ink(background), thickness, cv2.LINE_AA)


def _shade(frame: np.ndarray, x0: int, y0: int, x1: int, y1: int) -> None:
    """Darken a panel's background so its text reads on any picture."""
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, frame.shape[1]), min(y1, frame.shape[0])
    frame[y0:y1, x0:x1] = (frame[y0:y1, x0:x1] * 0.35).astype(frame.dtype)


def _corner_text(frame: np.ndarray, text: str, right: bool) -> None:
    """White ``text`` on a darkened panel in the top-left or top-right corner; both fit on one row at any size."""
    scale, thickness = _text_scale(frame), _text_thickness(frame)
    (w, h), baseline = cv2.getTextSize(text, FONT, scale, thickness)
    x, y = (frame.shape[1] - w - 12 if right else 8), 8
    _shade(frame, x - 4, y - 4, x + w + 8, y + h + baseline + 6)
    cv2.putText(frame, text, (x + 2, y + h + 1), FONT, scale, (255, 255, 255), thickness, cv2.LINE_AA)


class BoxAnnotator:
    """Person boxes in their state colour, thinner when the box was predicted from the track rather than detected."""

    def annotate(self, frame: np.ndarray, detections: Detections) -> np.ndarray:
        thickness = _thickness(frame)
        drawn = _drawn(detections)
        detected = drawn.data.get("detected", np.ones(len(drawn), bool))
        for (x1, y1, x2, y2), color, is_detected in zip(drawn.xyxy.astype(int), person_colors(drawn), detected):
            cv2.rectangle(frame, (x1, y1), (x2, y2), color, thickness if is_detected else max(1, thickness - 1))
        return frame


class SkeletonAnnotator:
    """COCO skeleton lines between keypoints whose score passes ``min_score``, in the person's colour."""

    def __init__(self, min_score: float = KEYPOINT_DRAW_MIN_SCORE) -> None:
        self.min_score = min_score

    def annotate(self, frame: np.ndarray, detections: Detections) -> np.ndarray:
        thickness = _thickness(frame)
        drawn = _drawn(detections)
        for keypoints, color in zip(drawn.keypoints, person_colors(drawn)):
            visible = keypoints[:, 2] >= self.min_score
            points = keypoints[:, :2].astype(int)
            for a, b in COCO_SKELETON:
                if visible[a] and visible[b]:
                    cv2.line(frame, tuple(points[a]), tuple(points[b]), color, thickness, cv2.LINE_AA)
        return frame


def place_labels(boxes: np.ndarray, sizes: list[tuple[int, int]], width: int, height: int, gap: int = 2) -> np.ndarray:
    """Top-left corners (N, 2) for label rectangles of ``sizes`` (w, h), one per box (N, 4) xyxy.

    Greedy, in the given order: each label takes the first spot, among above its box, below it, inside its top
    and inside its bottom edge, that stays in the frame and comes no closer than ``gap`` pixels to a label placed
    before it; when all four are taken it moves up or down from its box in label-height steps, nearest spot first.
    Only a frame with no free spot in that column leaves a label overlapping (above its box).
    """
    placed = np.empty((0, 4), np.int64)
    corners = np.zeros((len(sizes), 2), np.int64)
    for row, ((x1, y1, _, y2), (w, h)) in enumerate(zip(np.asarray(boxes, int).reshape(-1, 4), sizes)):
        x = int(np.clip(x1, 0, max(width - w, 0)))
        above, below = y1 - h, y2
        step = h + gap
        further = np.arange(1, height // step + 1) * step
        tops = np.concatenate([[above, below, y1, y2 - h], np.stack([above - further, below + further], axis=1).ravel()])
        fits = tops[(tops >= 0) & (tops <= height - h)]
        # Every candidate spot against every placed label at once, each spot grown by ``gap`` on all sides.
        same_column = (placed[:, 0] < x + w + gap) & (x - gap < placed[:, 2])
        taken = (same_column & (placed[None, :, 1] < fits[:, None] + h + gap) & (fits[:, None] - gap < placed[None, :, 3])).any(axis=1)
        free = fits[~taken]
        y = int(free[0]) if len(free) else int(np.clip(above, 0, max(height - h, 0)))
        corners[row] = (x, y)
        placed = np.vstack([placed, [x, y, x + w, y + h]])
    return corners


def label_text(track_id: int, state: str, score: float, role: str) -> str:
    """``ID n``, ``instructor`` for the instructor, the state's display name and the engagement score."""
    text = f"ID {track_id}"
    if role == "instructor":
        text += " instructor"
    if state:
        text += f" {DISPLAY_NAMES.get(state, state.replace('_', ' '))}"
    if np.isfinite(score):
        text += f" {score:.0f}"
    return text


class LabelAnnotator:
    """``ID n``, plus the engagement state and the engagement score (0-100) when the classifier has set them,
    on the person's colour, placed by ``place_labels`` so that labels do not cover each other."""

    def annotate(self, frame: np.ndarray, detections: Detections) -> np.ndarray:
        drawn = _drawn(detections)
        n = len(drawn)
        states = drawn.data.get("state", [""] * n)
        scores = drawn.data.get("score", np.full(n, np.nan))
        roles = drawn.data.get("role", [""] * n)
        texts = [label_text(int(t), str(s), float(v), str(r)) for t, s, v, r in zip(drawn.track_id, states, scores, roles)]
        sizes = [_label_size(frame, text) for text in texts]
        corners = place_labels(drawn.xyxy, sizes, frame.shape[1], frame.shape[0])
        for text, corner, color in zip(texts, corners, person_colors(drawn)):
            _text_box(frame, text, (int(corner[0]), int(corner[1])), color)
        return frame


def class_score(detections: Detections) -> tuple[float, int] | None:
    """The class engagement score of one frame: the mean engagement score of the analysed people in it (those
    with a score; unclassified people have none), and how many they are. None when nobody is."""
    drawn = _drawn(detections)
    scores = np.asarray(drawn.data.get("score", []), np.float64)
    scores = scores[np.isfinite(scores)]
    return (float(scores.mean()), len(scores)) if len(scores) else None


class ClassScoreAnnotator:
    """The frame's class engagement score (``class_score``) in the top-right corner."""

    def annotate(self, frame: np.ndarray, detections: Detections) -> np.ndarray:
        found = class_score(detections)
        if found is not None:
            score, people = found
            _corner_text(frame, f"class engagement {score:.0f}/100 ({people} {'person' if people == 1 else 'people'})", right=True)
        return frame


class LegendAnnotator:
    """A legend in the bottom-left corner: a swatch per state colour, grey for no state, the instructor's colour,
    and what the number in a label means (the engagement score, not a probability). The instructor's colour is
    listed when the detections carry a ``role`` column."""

    ENTRIES: tuple[tuple[str, Color], ...] = (*((DISPLAY_NAMES[s], STATE_COLORS[s]) for s in STATES), ("no state / uncertain", NO_STATE_COLOR))

    def annotate(self, frame: np.ndarray, detections: Detections) -> np.ndarray:
        entries = [*self.ENTRIES, ("instructor", INSTRUCTOR_COLOR)] if "role" in detections.data else list(self.ENTRIES)
        scale, thickness = _text_scale(frame), _text_thickness(frame)
        (_, h), baseline = cv2.getTextSize("Ag", FONT, scale, thickness)
        line = h + baseline + 4
        width = max(cv2.getTextSize(text, FONT, scale, thickness)[0][0] for text in [SCORE_MEANING, *(n for n, _ in entries)])
        x, top = 8, frame.shape[0] - 8 - line * (len(entries) + 1)
        _shade(frame, x - 4, top - 4, x + h + 12 + width, frame.shape[0] - 4)
        for i, (name, color) in enumerate(entries):
            y = top + i * line
            cv2.rectangle(frame, (x, y), (x + h, y + h), color, -1)
            cv2.putText(frame, name, (x + h + 6, y + h), FONT, scale, (255, 255, 255), thickness, cv2.LINE_AA)
        y = top + len(entries) * line
        cv2.putText(frame, SCORE_MEANING, (x, y + h), FONT, scale, (255, 255, 255), thickness, cv2.LINE_AA)
        return frame


class SeatZoneAnnotator:
    """Outlines of seat zones (``consent.opted_out_seats``) with their names, so a viewer sees where they lie."""

    def __init__(self, zones: Iterable[SeatZone]) -> None:
        self.zones = [(zone.name, np.round(np.asarray(zone.polygon, np.float64)).astype(np.int32)) for zone in zones]

    def annotate(self, frame: np.ndarray, detections: Detections) -> np.ndarray:
        thickness = _thickness(frame)
        for name, polygon in self.zones:
            cv2.polylines(frame, [polygon.reshape(-1, 1, 2)], True, ZONE_COLOR, thickness)
            x, y = polygon[np.argmin(polygon[:, 1])]  # the name sits above the topmost corner
            w, h = _label_size(frame, name)
            corner = (int(np.clip(x, 0, max(frame.shape[1] - w, 0))), int(np.clip(y - h, 0, max(frame.shape[0] - h, 0))))
            _text_box(frame, name, corner, ZONE_COLOR)
        return frame


class TextAnnotator:
    """A line of text in the top-left corner (measured rates in the live view)."""

    def annotate(self, frame: np.ndarray, text: str) -> np.ndarray:
        _corner_text(frame, text, right=False)
        return frame


DEFAULT_ANNOTATORS = (BoxAnnotator(), SkeletonAnnotator(), LabelAnnotator())


def annotate(frame: np.ndarray, detections: Detections, annotators: Iterable[Annotator] = DEFAULT_ANNOTATORS) -> np.ndarray:
    """Apply ``annotators`` in order (later ones draw on top)."""
    for annotator in annotators:
        frame = annotator.annotate(frame, detections)
    return frame
