"""Annotators: ``annotate(frame, detections) -> frame``, each drawing one thing, composable."""

from __future__ import annotations

import colorsys

import cv2
import numpy as np

from engagement.detections import COCO_SKELETON, Detections


def track_color(track_id: int) -> tuple[int, int, int]:
    """A stable, distinct BGR colour per track ID (golden-ratio hue steps)."""
    hue = (int(track_id) * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.75, 1.0)
    return int(b * 255), int(g * 255), int(r * 255)


def _drawn(detections: Detections) -> Detections:
    """Rows to draw: confirmed tracks that are not opted out (opted-out people get no box, ID or label)."""
    keep = detections.track_id >= 0
    if "opted_out" in detections.data:
        keep &= ~np.asarray(detections.data["opted_out"], bool)
    return detections[keep]


def _thickness(frame: np.ndarray) -> int:
    return max(1, round(min(frame.shape[:2]) / 360))


class BoxAnnotator:
    """Track boxes, dashed when the box was predicted from the track rather than detected."""

    def annotate(self, frame: np.ndarray, detections: Detections) -> np.ndarray:
        thickness = _thickness(frame)
        drawn = _drawn(detections)
        detected = drawn.data.get("detected", np.ones(len(drawn), bool))
        for (x1, y1, x2, y2), track_id, is_detected in zip(drawn.xyxy.astype(int), drawn.track_id, detected):
            color = track_color(track_id)
            cv2.rectangle(frame, (x1, y1), (x2, y2), color, thickness if is_detected else max(1, thickness - 1))
        return frame


class SkeletonAnnotator:
    """COCO skeleton lines between keypoints whose score passes ``min_score``."""

    def __init__(self, min_score: float = 0.5) -> None:
        self.min_score = min_score

    def annotate(self, frame: np.ndarray, detections: Detections) -> np.ndarray:
        thickness = _thickness(frame)
        drawn = _drawn(detections)
        for keypoints, track_id in zip(drawn.keypoints, drawn.track_id):
            color = track_color(track_id)
            visible = keypoints[:, 2] >= self.min_score
            points = keypoints[:, :2].astype(int)
            for a, b in COCO_SKELETON:
                if visible[a] and visible[b]:
                    cv2.line(frame, tuple(points[a]), tuple(points[b]), color, thickness, cv2.LINE_AA)
        return frame


class LabelAnnotator:
    """``ID n``, plus the engagement state and score when the classifier has set them."""

    def annotate(self, frame: np.ndarray, detections: Detections) -> np.ndarray:
        scale = max(0.4, min(frame.shape[:2]) / 1200)
        thickness = max(1, _thickness(frame) - 1)
        drawn = _drawn(detections)
        states = drawn.data.get("state")
        scores = drawn.data.get("score")
        for i, ((x1, y1, _, _), track_id) in enumerate(zip(drawn.xyxy.astype(int), drawn.track_id)):
            text = f"ID {track_id}"
            if states is not None and states[i]:
                text += f" {str(states[i]).replace('_', ' ')}"
            if scores is not None and np.isfinite(scores[i]):
                text += f" {scores[i]:.0f}"
            (w, h), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
            top = max(y1 - h - baseline - 2, 0)
            cv2.rectangle(frame, (x1, top), (x1 + w + 4, top + h + baseline + 2), track_color(track_id), -1)
            cv2.putText(frame, text, (x1 + 2, top + h + 1), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thickness, cv2.LINE_AA)
        return frame


class TextAnnotator:
    """A line of text in the top-left corner (measured FPS in the live view)."""

    def annotate(self, frame: np.ndarray, text: str) -> np.ndarray:
        cv2.putText(frame, text, (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (0, 0, 0), 4, cv2.LINE_AA)
        cv2.putText(frame, text, (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (255, 255, 255), 2, cv2.LINE_AA)
        return frame


DEFAULT_ANNOTATORS = (BoxAnnotator(), SkeletonAnnotator(), LabelAnnotator())


def annotate(frame: np.ndarray, detections: Detections, annotators=DEFAULT_ANNOTATORS) -> np.ndarray:
    for annotator in annotators:
        frame = annotator.annotate(frame, detections)
    return frame
