"""``engagement classifier predict``: the state of every person in a still, a folder of stills or a video's
sampled frames, as one table (never an image).

Each frame is scored on its own, as the evaluate readers score a single classroom frame: no tracking, so no
smoothing and no track-relative features. When the detector finds nobody, the whole frame is tried as one
person's face (``DatasetFeaturizer.image_people``): a face crop still gets a state; a frame with neither a
person nor a face gets one row saying so, with no state.
"""

from __future__ import annotations

import math

from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

from engagement.config import CameraView, ClassifierConfig, HandsConfig
from engagement.errors import UserError
from engagement.features import FRAME_FEATURES
from engagement.scoring import PROBABILITY_COLUMNS, engagement_score
from engagement.states import mixed, named_state

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
COLUMNS = ("source", "frame", "time_s", "person", "person_found", "face_found", "x0", "y0", "x1", "y1",
           *PROBABILITY_COLUMNS, "state", "score")


def frames_of(path: Path, every_s: float) -> Iterator[tuple[str, int, float, np.ndarray]]:
    """(source, frame index, time s, BGR frame) for an image, every image in a folder (sorted, recursive), or a
    video's frames every ``every_s`` seconds."""
    import cv2

    if not path.exists():
        raise UserError(f"not found: {path}")
    if path.is_dir() or path.suffix.lower() in IMAGE_SUFFIXES:
        images = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES) if path.is_dir() else [path]
        if not images:
            raise UserError(f"{path}: folder holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        for image in images:
            frame = cv2.imread(str(image))
            if frame is None:
                raise UserError(f"cannot read image {image}")
            yield str(image), 0, 0.0, frame
        return
    if not 0 < every_s < math.inf:
        raise UserError(f"--every-s must be a positive number of seconds, got {every_s}")
    from engagement.sources import FrameSource

    source = FrameSource(str(path))
    step = max(1, round(every_s * source.info.fps))
    for index, frame in source:
        if index % step == 0:
            yield str(path), index, index / source.info.fps, frame


def predict_table(path: str | Path, every_s: float = 1.0, weights: str | None = None,
                  tiles: tuple[int, int] = (1, 1), uncertain_below: float = 0.0,
                  view: CameraView = ClassifierConfig.view, hands: HandsConfig | None = None,
                  crop_weight: float = 0.0, crop_weights: str | None = None) -> pd.DataFrame:
    """One row per detected person (``COLUMNS``): box, six state probabilities, state (``uncertain`` below
    ``uncertain_below``), engagement score, and whether a person and a face were found; one row without a state
    for a frame with neither. The classifier is told the camera ``view`` (``classifier.view``); with ``hands``
    enabled, wrists the pose model misses come from the hand models (untiled frames), as in the webcam pipeline.
    A front view mixes in the upper-body crop model of each detected person by ``crop_weight``, as the lecture
    pipeline does."""
    from engagement.classifier.crops import crop_model_for
    from engagement.classifier.data import DatasetFeaturizer
    from engagement.classifier.model import StateClassifier
    from engagement.features import head_boxes

    model = StateClassifier.load(weights).for_view(view)
    crops = crop_model_for(ClassifierConfig(view=view, crop_weight=crop_weight, crop_weights=crop_weights))
    featurizer = DatasetFeaturizer(tile_grid=tiles, hands=hands)
    has_face = FRAME_FEATURES.index("has_face")
    rows = []
    try:
        for source, index, time_s, frame in frames_of(Path(path), every_s):
            features, found, person_found = featurizer.image_people(Path(source), frame, tiles)
            face_found = features[:, has_face] == 1.0
            probs = model.predict_proba(features)
            if crops is not None and person_found:
                probs = mixed(probs, crops.predict_proba(frame, head_boxes(found.keypoints, found.xyxy)), crop_weight)
            scores = engagement_score(probs)
            for i in range(len(features)):
                row = {"source": source, "frame": index, "time_s": round(time_s, 3),
                       "person_found": person_found, "face_found": bool(face_found[i])}
                if person_found or face_found[i]:  # the whole frame is the box of a face found without a person
                    row |= {"person": i, **dict(zip(("x0", "y0", "x1", "y1"), found.xyxy[i].round(1))),
                            **dict(zip(PROBABILITY_COLUMNS, probs[i].round(4))),
                            "state": named_state(probs[i], uncertain_below), "score": round(float(scores[i]), 2)}
                rows.append(row)
    finally:
        featurizer.extractor.close()
    return pd.DataFrame(rows, columns=list(COLUMNS))
