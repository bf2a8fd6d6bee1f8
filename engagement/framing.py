"""How close the camera frames the students: the number behind the report's close-framing notice.

On unseen people the webcam states were measured to hold with the face up to about half the frame's height and to
fail closer, raised hands first, as they leave the picture (MODEL_CARD.md, "How close is too close"). A run cannot
tell that from its states, so it measures the framing itself: the median height of the analysed students' head
boxes (``engagement.features.head_boxes``, from the pose keypoints, the boxes the classifier reads) as a share of
the frame's height. On those measurements (``webcam_session_p2.mp4`` cropped to face shares 0.5-0.9) a head box was
1.29-1.40 times the face detector's box, and a face half the frame's height gave a head box of 0.69 of it: hence 0.7.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from engagement.detections import COCO_KEYPOINTS, KEYPOINT_INDEX, Detections
from engagement.features import head_boxes
from engagement.files import TRACKS_PARQUET

# Head box height / frame height above which the states are outside the framings they were measured to hold in.
CLOSE_HEAD_SHARE = 0.7
_FACE_KEYPOINTS = ("nose", "left_eye", "right_eye", "left_ear", "right_ear")  # all that head_boxes reads
# The columns of tracks.parquet that the head boxes need.
TRACK_COLUMNS = ["frame", "track_id", "x1", "y1", "x2", "y2",
                 *(f"{name}_{axis}" for name in _FACE_KEYPOINTS for axis in ("x", "y", "score"))]


def head_share(tracks: pd.DataFrame, states: pd.DataFrame, frame_height: int) -> float | None:
    """Median head-box height over frame height of the rows in ``states`` (the analysed students' frames), read from
    their rows in ``tracks`` (``TRACK_COLUMNS`` of ``tracks.parquet``); None when there are none."""
    if states.empty or tracks.empty or frame_height <= 0:
        return None
    rows = tracks.merge(states[["frame", "track_id"]].drop_duplicates(), on=["frame", "track_id"])
    if rows.empty:
        return None
    keypoints = np.zeros((len(rows), len(COCO_KEYPOINTS), 3), np.float32)
    for name in _FACE_KEYPOINTS:
        keypoints[:, KEYPOINT_INDEX[name]] = rows[[f"{name}_{axis}" for axis in ("x", "y", "score")]].to_numpy(np.float32)
    return median_head_share(keypoints, rows[["x1", "y1", "x2", "y2"]].to_numpy(np.float32), frame_height)


def median_head_share(keypoints: np.ndarray, xyxy: np.ndarray, frame_height: int) -> float | None:
    """Median head-box height over frame height of people given as keypoints (N, 17, 3) and boxes (N, 4); None for
    nobody."""
    if not len(xyxy) or frame_height <= 0:
        return None
    heads = head_boxes(keypoints, xyxy)
    return float(np.median(heads[:, 3] - heads[:, 1])) / frame_height


def too_close(detections: Detections, frame_height: int) -> bool:
    """Whether the students in one analysed frame (``analysable`` rows) are framed closer than ``CLOSE_HEAD_SHARE``:
    the live view's version of summary.json's ``framing.close``."""
    from engagement.consent.stage import analysable

    students = detections[analysable(detections)] if len(detections) else detections
    share = median_head_share(students.keypoints, students.xyxy, frame_height)
    return share is not None and share > CLOSE_HEAD_SHARE


def framing_summary(tracks: pd.DataFrame, states: pd.DataFrame, frame_height: int) -> dict[str, float | bool | None]:
    """``summary.json``'s ``framing``: the median head share and whether it is closer than ``CLOSE_HEAD_SHARE``."""
    share = head_share(tracks, states, frame_height)
    return {"head_share": None if share is None else round(share, 3),
            "close": share is not None and share > CLOSE_HEAD_SHARE}


def run_framing(directory: Path, states: pd.DataFrame, frame_height: int) -> dict[str, float | bool | None]:
    """``framing_summary`` of a run folder's states, reading only the analysed frames' ``TRACK_COLUMNS`` of its
    ``tracks.parquet`` (a long lecture's table is too big to read whole)."""
    analysed = pd.read_parquet(directory / TRACKS_PARQUET, columns=TRACK_COLUMNS,
                               filters=[("frame", "in", sorted(set(states["frame"].tolist())))]) if len(states) else pd.DataFrame()
    return framing_summary(analysed, states, frame_height)
