"""Stills for the report's top moments, read from the run's ``annotated.mp4``.

Only the annotated video is ever opened here: the pipeline has already blurred every face the session's
policy blurs in it, so a still cannot show more than the anonymized video does. The original input is never read.
"""

from __future__ import annotations

from pathlib import Path

import cv2

from engagement.errors import UserError
from engagement.sources import read_frame_at

MAX_WIDTH = 640


def read_still(annotated_video: Path, time_s: float) -> bytes | None:
    """A JPEG of the annotated frame nearest ``time_s`` (clamped to the video), or None if it cannot be read."""
    try:
        frame, _, frames = read_frame_at(annotated_video, time_s, last_if_past_end=True)
    except UserError:
        return None
    if frame is None or frames <= 0:
        return None
    if frame.shape[1] > MAX_WIDTH:
        scale = MAX_WIDTH / frame.shape[1]
        frame = cv2.resize(frame, (MAX_WIDTH, round(frame.shape[0] * scale)), interpolation=cv2.INTER_AREA)
    ok, encoded = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 85])
    return encoded.tobytes() if ok else None
