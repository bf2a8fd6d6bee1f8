"""The engagement-state classifier: standardisation + a small MLP, stored as plain numpy arrays.

The network's outputs are the datasets' own labels ("webcam_behaviour:tilt", "cctv_headstate:up", ...), not
the six states: a state that several labels map to (bored = yawning or a head resting on a hand) is not one
compact region of feature space, so the network learns each label and a label's probability is added to its
state's. Weights live in one ``.npz`` file (no pickle, so loading a file cannot run code): the feature means
and scales, one weight matrix and bias per layer, the output labels and their states, the feature names the
model was trained on, and a JSON model card with the held-out figures. Inference is a few numpy matrix products.

The camera view (``engagement.config.CAMERA_VIEWS``) is an input too: one one-hot column per view seen in training,
after the features. A pipeline knows its view, so ``for_view`` folds those constant inputs into the first layer's
bias and gives a model of the features alone.

A file may hold a second network of the same shape, the **warm-up model**, fitted on the same rows without the
track-relative features: ``predict_proba(features, warming)`` sends the ``warming`` rows (a face whose track's
baseline is still young, ``engagement.features.warming_up``) to it, because a baseline of a person's first few
behaviours misleads the main network (MODEL_CARD.md).
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from engagement.classifier.card import ModelCard
from engagement.config import CAMERA_VIEWS, CameraView, ClassifierConfig
from engagement.errors import UserError
from engagement.files import write_atomic
from engagement.features import FEATURE_NAMES
from engagement.states import STATE_INDEX, STATES

log = logging.getLogger(__name__)

PACKAGED_WEIGHTS = Path(__file__).with_name("weights.npz")
FORMAT_VERSION = 4  # 4: an optional warm-up model (``warmup_*`` arrays); 3: camera-view inputs; 2: neither
READABLE_VERSIONS = (2, 3, 4)
WARMUP_PREFIX = "warmup_"
CLIP_Z = 8.0  # standardised values beyond this are clipped: one wild feature must not dominate


def standardize(X: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """(X - mean) / scale with missing values set to the mean (0): what every model and generator sees."""
    Z = (np.asarray(X, np.float64) - mean) / scale
    return np.clip(np.nan_to_num(Z, nan=0.0), -CLIP_Z, CLIP_Z).astype(np.float32)


def fit_standardizer(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and scale over the non-missing values (scale 1 for constant columns)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-missing columns: handled below
        mean = np.nanmean(X, axis=0)
        scale = np.nanstd(X, axis=0)
    observed = np.isfinite(mean)
    mean = np.where(observed, mean, 0.0)
    scale = np.where(np.isfinite(scale) & (scale > 1e-6), scale, 1.0)
    # A feature never seen in training (motion, on single labelled frames) had no say in the fit: an
    # infinite scale standardises it to 0 at inference too, so untrained weights never see real values.
    scale = np.where(observed, scale, np.inf)
    return mean.astype(np.float32), scale.astype(np.float32)


class StateClassifier:
    """Six-state probabilities from feature rows; ``load()`` gives the packaged model."""

    def __init__(self, mean: np.ndarray, scale: np.ndarray, weights: list[np.ndarray], biases: list[np.ndarray],
                 output_labels: list[str], output_states: np.ndarray, card: ModelCard | None = None,
                 feature_names: tuple[str, ...] = FEATURE_NAMES, views: tuple[str, ...] = (),
                 warmup: "StateClassifier | None" = None) -> None:
        if len(weights) != len(biases) or not weights:
            raise ValueError("need one bias per weight matrix and at least one layer")
        output_states = np.asarray(output_states, np.int64)
        if not weights[-1].shape[1] == len(output_labels) == len(output_states) > 0:
            raise ValueError("the last layer needs one output per label, and each label one state")
        if output_states.min() < 0 or output_states.max() >= len(STATES):
            raise ValueError(f"output states must be indices into the {len(STATES)} states")
        self.mean, self.scale = np.asarray(mean, np.float32), np.asarray(scale, np.float32)
        self.weights = [np.asarray(w, np.float32) for w in weights]
        self.biases = [np.asarray(b, np.float32) for b in biases]
        self.output_labels = [str(label) for label in output_labels]
        self.output_states = output_states
        self._label_to_state = np.eye(len(STATES), dtype=np.float32)[output_states]  # (labels, states)
        self.card = card or ModelCard()
        self.feature_names = tuple(feature_names)
        self.views = tuple(views)
        if not set(self.views) <= set(CAMERA_VIEWS):
            raise ValueError(f"views must be among {CAMERA_VIEWS}, got {self.views}")
        inputs = len(self.feature_names) + len(self.views)
        if not len(self.mean) == len(self.scale) == self.weights[0].shape[0] == inputs:
            raise ValueError(f"need {inputs} inputs (features, then views) in the means, scales and first layer")
        if warmup is not None and (warmup.warmup is not None or warmup.views != self.views
                                   or warmup.output_labels != self.output_labels or warmup.feature_names != self.feature_names):
            raise ValueError("the warm-up model needs the same features, views and outputs, and no warm-up model of its own")
        self.warmup = warmup

    @classmethod
    def load(cls, path: str | Path | None = None) -> "StateClassifier":
        """Load weights saved by ``save``; ``None`` loads the weights shipped in the package."""
        path = Path(path) if path else PACKAGED_WEIGHTS
        if not path.is_file():
            raise UserError(f"classifier weights not found: {path}")
        try:
            with np.load(path, allow_pickle=False) as data:
                version = int(data["format_version"])
                if version not in READABLE_VERSIONS:
                    raise UserError(f"{path}: weights format {version}, this version reads "
                                    f"{', '.join(map(str, READABLE_VERSIONS))}")
                shared = dict(output_labels=list(data["output_labels"]), output_states=data["output_states"],
                              feature_names=tuple(str(n) for n in data["feature_names"]),
                              views=tuple(str(v) for v in data["views"]) if "views" in data.files else ())
                warmup = cls(**_network(data, WARMUP_PREFIX), **shared) if f"{WARMUP_PREFIX}n_layers" in data.files else None
                model = cls(**_network(data), **shared, card=ModelCard.from_json(json.loads(str(data["card"]))),
                            warmup=warmup)
        except (OSError, KeyError, ValueError) as error:
            raise UserError(f"{path}: not a classifier weights file ({error})") from None
        if model.feature_names != FEATURE_NAMES:
            raise UserError(f"{path}: trained on different features than this version extracts; retrain it")
        return model

    def only_labels_of(self, dataset: str) -> "StateClassifier":
        """The model with its outputs restricted to one training dataset's labels (``dataset:label``), e.g. the
        webcam labels for a person at a webcam: a webcam view is never a ceiling camera's view, and the other
        dataset's labels only add confusions (``engagement.config.ClassifierConfig.labels_of``)."""
        keep = np.array([label.split(":", 1)[0] == dataset for label in self.output_labels])
        if not keep.any():
            datasets = sorted({label.split(":", 1)[0] for label in self.output_labels})
            raise UserError(f"classifier has no labels of {dataset!r}; it was trained on: {', '.join(datasets)}")
        return StateClassifier(self.mean, self.scale, [*self.weights[:-1], self.weights[-1][:, keep]],
                               [*self.biases[:-1], self.biases[-1][keep]],
                               [label for label, kept in zip(self.output_labels, keep) if kept],
                               self.output_states[keep], card=self.card, feature_names=self.feature_names,
                               views=self.views, warmup=self.warmup.only_labels_of(dataset) if self.warmup else None)

    def for_view(self, view: CameraView) -> "StateClassifier":
        """The model for one camera view, as a model of the features alone: the view's one-hot inputs are constant,
        so they fold into the first layer's bias (exact). A model without view inputs comes back as it is; a view
        it never saw in training gets its view inputs at their training means, i.e. no view information (logged)."""
        if view not in CAMERA_VIEWS:
            raise UserError(f"unknown camera view {view!r}; valid: {', '.join(CAMERA_VIEWS)}")
        if not self.views:
            return self
        if view not in self.views:
            log.warning("classifier was trained on %s views only, not %s: the view is not used",
                        "/".join(self.views), view)
        return self._folded(view)

    def _folded(self, view: CameraView) -> "StateClassifier":
        n = len(self.feature_names)
        inputs = np.zeros(len(self.views), np.float32)
        if view in self.views:
            one_hot = np.array([[float(v == view) for v in self.views]], np.float32)
            inputs = standardize(one_hot, self.mean[n:], self.scale[n:])[0]
        first_bias = self.biases[0] + inputs @ self.weights[0][n:]
        return StateClassifier(self.mean[:n], self.scale[:n], [self.weights[0][:n], *self.weights[1:]],
                               [first_bias, *self.biases[1:]], self.output_labels, self.output_states, card=self.card,
                               feature_names=self.feature_names,
                               warmup=self.warmup._folded(view) if self.warmup else None)

    def save(self, path: str | Path) -> None:
        """Write the ``.npz`` atomically (temp file in the same folder, then rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = self._arrays() | (self.warmup._arrays(WARMUP_PREFIX) if self.warmup else {})
        write_atomic(path, lambda stream: np.savez_compressed(
            stream, format_version=FORMAT_VERSION, feature_names=np.array(self.feature_names),
            views=np.array(self.views, dtype=str), output_labels=np.array(self.output_labels),
            output_states=self.output_states, card=json.dumps(self.card.to_json()), **arrays,
        ))

    def _arrays(self, prefix: str = "") -> dict[str, np.ndarray]:
        """The network's arrays under ``prefix``: what ``_network`` reads back."""
        layers = {f"W{i}": w for i, w in enumerate(self.weights)} | {f"b{i}": b for i, b in enumerate(self.biases)}
        named = {"n_layers": np.array(len(self.weights)), "mean": self.mean, "scale": self.scale, **layers}
        return {prefix + name: value for name, value in named.items()}

    def predict_proba(self, features: np.ndarray, warming: np.ndarray | None = None) -> np.ndarray:
        """(N, 6) probabilities in ``STATES`` order for (N, F) raw feature rows (NaN = missing); the ``warming`` rows
        (a boolean mask) go to the warm-up model when the file has one."""
        if self.views:
            raise ValueError("this model takes the camera view as an input: predict with model.for_view(view)")
        features = np.asarray(features, np.float32).reshape(-1, len(self.mean))
        if self.warmup is None or warming is None or not np.any(warming):
            return self._network_proba(features)
        warming = np.asarray(warming, bool)
        probs = np.empty((len(features), len(STATES)), np.float32)
        probs[warming] = self.warmup._network_proba(features[warming])
        probs[~warming] = self._network_proba(features[~warming])
        return probs

    def _network_proba(self, features: np.ndarray) -> np.ndarray:
        hidden = standardize(features, self.mean, self.scale)
        for i, (weight, bias) in enumerate(zip(self.weights, self.biases)):
            hidden = hidden @ weight + bias
            if i < len(self.weights) - 1:
                hidden = np.maximum(hidden, 0.0)
        hidden = hidden - hidden.max(axis=1, keepdims=True)
        exp = np.exp(hidden)
        label_probs = exp / exp.sum(axis=1, keepdims=True)
        return (label_probs @ self._label_to_state).astype(np.float32)

    def model_card(self) -> ModelCard:
        """Training data, splits and held-out figures recorded when the weights were trained."""
        return self.card


def _network(data: Any, prefix: str = "") -> dict[str, Any]:
    """Means, scales, weights and biases of the network saved under ``prefix`` (``StateClassifier._arrays``)."""
    n_layers = int(data[f"{prefix}n_layers"])
    return {"mean": data[f"{prefix}mean"], "scale": data[f"{prefix}scale"],
            "weights": [data[f"{prefix}W{i}"] for i in range(n_layers)],
            "biases": [data[f"{prefix}b{i}"] for i in range(n_layers)]}


def load_classifier(config: ClassifierConfig) -> StateClassifier:
    """The classifier a pipeline runs: ``config.weights`` (or the packaged ones) for ``config.view``, restricted to
    the labels of ``config.labels_of`` when set."""
    model = StateClassifier.load(config.weights).for_view(config.view)
    if config.warmup_frames and model.warmup is None:
        log.warning("classifier weights without a warm-up model: classifier.warmup_frames %d is not used",
                    config.warmup_frames)
    return model.only_labels_of(config.labels_of) if config.labels_of else model


class RuleBasedClassifier:
    """Hand-written rules on the same features: the baseline the learned model has to beat.

    With a visible face (webcam view): hand above the shoulder -> discussing; wide-open jaw -> bored (yawn);
    hand at the face -> bored (head on hand); lowered brows -> confused; looking away -> distracted.
    Without a face (classroom view): head down below the shoulder line -> taking notes; head turned -> distracted.
    Otherwise attentive.
    """

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        column = {name: features[:, i] for i, name in enumerate(FEATURE_NAMES)}
        n = len(features)
        with np.errstate(invalid="ignore"):
            has_face = column["has_face"] > 0.5
            brow_down = (column["browDownLeft"] + column["browDownRight"]) / 2
            looking_away = np.abs(column["head_yaw"]) > 0.6
            rules = [
                (has_face & (column["wrist_above_shoulder"] > 0.1), "engaged_in_discussion"),
                (has_face & (column["jawOpen"] > 0.4), "bored"),
                (has_face & (column["wrist_near_face"] < 0.6), "bored"),
                (has_face & (brow_down > 0.3), "confused"),
                (looking_away, "distracted"),
                (~has_face & ((column["head_below_shoulders"] > 0.5) | (column["head_pitch"] > 0.8)), "taking_notes"),
            ]
        chosen = np.full(n, STATE_INDEX["attentive"])
        decided = np.zeros(n, bool)
        for mask, state in rules:
            take = mask & ~decided
            chosen[take] = STATE_INDEX[state]
            decided |= take
        return np.eye(len(STATES), dtype=np.float32)[chosen]


class MajorityClassifier:
    """Always the most frequent training state of each dataset (chosen by the caller)."""

    def __init__(self, state: int) -> None:
        self.state = state

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        return np.tile(np.eye(len(STATES), dtype=np.float32)[self.state], (len(features), 1))
