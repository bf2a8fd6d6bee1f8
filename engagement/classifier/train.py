"""Training with optional class-balancing augmentation, and evaluation against the baselines.

Synthetic rows (``--augment cvae|ddpm|smote|oversample``) are made in the standardised feature space by
``engagement.generative.augment.synthesize`` for the under-represented states only; they are flagged,
used for fitting only, and never reach an evaluation. Webcam training rows are fitted twice: with the
relative features of the online calibration stream, and against each person's settled whole-session
baseline (``engagement.features.session_relative``), so the model knows both early and settled baselines.
The network learns the datasets' own labels (``dataset:label``) and adds them up into states (see
``engagement.classifier.model``); class balancing and synthetic rows work per label.
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Any

import numpy as np

from engagement.classifier.data import (
    CCTV, COCO, ENGAGEMENT_LEVELS, LEVELS, NO_STATE, WEBCAM, FeatureSet, load_label_map, view_of,
)
from engagement.classifier.model import (
    MajorityClassifier, RuleBasedClassifier, StateClassifier, fit_standardizer, standardize,
)
from engagement.config import CAMERA_VIEWS, CameraView
from engagement.errors import UserError
from engagement.files import write_atomic
from engagement.features import FRAME_FEATURES, face_rows, session_relative, warming_up, without_relative
from engagement.generative.augment import METHODS as SYNTHESIS_METHODS
from engagement.states import STATE_INDEX, STATES, UNCERTAIN, mixed

AUGMENTATIONS = ("none", "class_weight", *SYNTHESIS_METHODS)  # the last ones add synthetic rows
HIDDEN_UNITS = 128
L2_ALPHA = 0.3
# MLPs fitted with seeds seed, seed + 1, ... and averaged (their logits): on validation the average of three beat
# the mean single fit on every figure and narrowed the seed-to-seed spread (MODEL_CARD.md).
ENSEMBLE_SIZE = 3
# engagement_levels people never fitted, for the card's level figures: every fourth of the 16, sorted by number
# (109 disengaged and 184 engaged crops); the other 12 fit and serve the validation folds.
LEVEL_TEST_PERSONS = ("1", "6", "12", "19")
# Tried on the room and person folds and rejected (MODEL_CARD.md has the figures), for the card the report shows.
NOT_KEPT = ("synthetic rows from the cVAE and DDPM, FER-2013 expression features, a track's recent frames as "
            "features, a model per camera view, 64 or 256 hidden units, L2 alpha 1.0 or 3.0, a population prior for "
            "the running baseline")
MISSED = -1  # prediction for a label whose person was not detected
UNSURE = -2  # prediction below the uncertainty threshold: shown as "uncertain", scored as wrong


# Licence and caveat of each packaged dataset (../shared/README.md), for the card the report shows (short: the
# report has three pages). A set without a licence is for tests and training only (``data_card`` says so once).
UNLICENSED = "no licence stated"
DATASET_NOTES = {
    CCTV: "CC BY 4.0, 'cctv-accurate dataset, Roboflow Universe'; one ceiling-camera lecture room",
    WEBCAM: f"{UNLICENSED}; identifiable people",
    "clabehavior": f"{UNLICENSED}; primary-school lessons (minors), two rooms filmed from the front",
    "engagement_levels": f"{UNLICENSED}; identifiable faces; also scored as a ranking (level_auc)",
}


def data_card(fitted: list[str]) -> str:
    """The report's one-paragraph account of the data: each set's licence, caveat and labels by state."""
    label_map = load_label_map()

    def described(dataset: str) -> str:
        by_state: dict[str, list[str]] = {}
        for label, state in label_map.get(dataset, {}).items():
            by_state.setdefault(state.replace("_", " ") if state else "left out", []).append(label)
        mapping = "; ".join(f"{state}: {', '.join(labels)}" for state, labels in by_state.items())
        return f"{dataset} ({DATASET_NOTES.get(dataset, 'licence not recorded')}{'. ' + mapping if mapping else ''})"

    unlicensed = ". Sets with no licence stated: tests and training only" if any(
        DATASET_NOTES.get(d, "").startswith(UNLICENSED) for d in fitted) else ""
    return f"fitted: {'; '.join(described(d) for d in fitted)}{unlicensed}"


def dataset_states(dataset: str) -> list[int]:
    """State indices a packaged dataset's labels map to (the classes its macro-F1 is taken over)."""
    mapping = load_label_map()[dataset]
    return sorted({STATE_INDEX[s] for s in mapping.values() if s is not None})


def balance_targets(y: np.ndarray) -> dict[int, int]:
    """Synthetic rows per class to bring every under-represented class up to the largest one."""
    counts = np.bincount(y)
    present = counts > 0
    return {int(c): int(counts.max() - counts[c]) for c in np.flatnonzero(present) if counts[c] < counts.max()}


def augment(
    Z: np.ndarray, y: np.ndarray, method: str, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Training rows after augmentation: (Z, y, sample_weight, is_synthetic)."""
    if method not in AUGMENTATIONS:
        raise UserError(f"unknown augmentation {method!r}; choose one of {', '.join(AUGMENTATIONS)}")
    weights = np.ones(len(y))
    synthetic = np.zeros(len(y), bool)
    if method == "none":
        return Z, y, weights, synthetic
    if method == "class_weight":
        counts = np.bincount(y).astype(float)
        weights = len(y) / (np.count_nonzero(counts) * counts[y])
        return Z, y, weights, synthetic
    from engagement.generative.augment import synthesize

    Z_syn, y_syn = synthesize(Z, y, method, balance_targets(y), seed=seed)
    Z_syn = np.clip(np.nan_to_num(np.asarray(Z_syn, np.float32)), -8.0, 8.0)
    return (np.concatenate([Z, Z_syn]), np.concatenate([y, np.asarray(y_syn, int)]),
            np.ones(len(y) + len(y_syn)), np.concatenate([synthetic, np.ones(len(y_syn), bool)]))


def train_classifier(X: np.ndarray, labels: np.ndarray, y: np.ndarray, augment_method: str = "none", seed: int = 0,
                     hidden_units: int = HIDDEN_UNITS, alpha: float = L2_ALPHA,
                     ensemble_size: int = ENSEMBLE_SIZE, views: np.ndarray | None = None,
                     warmup: bool = False) -> tuple[StateClassifier, dict[str, int]]:
    """Fit standardisation on the real rows, augment, fit ``ensemble_size`` MLPs (``hidden_units`` ReLU units, L2
    ``alpha``, seeds ``seed``, ``seed + 1``, ...) on the ``labels`` (each mapped to its state index in ``y``) and
    average their logits; returns the model and row counts. ``views``, each row's camera view, become one-hot
    inputs after the features (one per view present, none when the rows show one view only). With ``warmup`` the
    same is fitted again on the rows without their relative features: the warm-up model."""
    from sklearn.neural_network import MLPClassifier

    output_labels, targets = np.unique(labels, return_inverse=True)
    output_states = np.array([y[targets == k][0] for k in range(len(output_labels))])
    if any(np.any(y[targets == k] != state) for k, state in enumerate(output_states)):
        raise UserError("a label maps to more than one state in the training data")
    if sorted(set(output_states.tolist())) != list(range(len(STATES))):
        raise UserError("training data must contain every state at least once")
    seen = set() if views is None else set(np.asarray(views).tolist())
    if not seen <= set(CAMERA_VIEWS) or (views is not None and len(views) != len(X)):
        raise ValueError(f"views: one of {CAMERA_VIEWS} per row")
    present = tuple(view for view in CAMERA_VIEWS if view in seen) if len(seen) > 1 else ()  # one view: no information
    X = with_view_inputs(X, views, present)
    counts: dict[str, int] = {}

    def fitted(rows: np.ndarray, warmup_model: StateClassifier | None = None) -> StateClassifier:
        mean, scale = fit_standardizer(rows)
        Z, targets_fit, sample_weights, synthetic = augment(standardize(rows, mean, scale), targets, augment_method, seed)
        Z[:, ~np.isfinite(scale)] = 0.0  # synthetic rows too: a column never observed is 0 at inference
        counts.update(real=int((~synthetic).sum()), synthetic=int(synthetic.sum()))
        members = [MLPClassifier(hidden_layer_sizes=(hidden_units,), alpha=alpha, learning_rate_init=1e-3,
                                 max_iter=300, batch_size=128, random_state=seed + k)
                   .fit(Z, targets_fit, sample_weight=sample_weights) for k in range(ensemble_size)]
        layers, biases = averaged_logits([mlp.coefs_ for mlp in members], [mlp.intercepts_ for mlp in members])
        return StateClassifier(mean, scale, layers, biases, list(output_labels), output_states, views=present,
                               warmup=warmup_model)

    if not warmup:
        return fitted(X), counts
    return fitted(X, fitted(without_relative(X))), counts


def row_views(feature_sets: list[FeatureSet]) -> np.ndarray:
    """The camera view of every row of the sets, in order (``view_of`` each set)."""
    return np.concatenate([np.full(len(fs.y), view_of(fs)) for fs in feature_sets])


def with_view_inputs(X: np.ndarray, views: np.ndarray | None, model_views: tuple[str, ...]) -> np.ndarray:
    """The rows with a one-hot column per ``model_views`` entry appended (each row's camera view in ``views``)."""
    if not model_views:
        return X
    return np.concatenate([X, (np.asarray(views)[:, None] == np.array(model_views)[None]).astype(np.float32)], axis=1)


def averaged_logits(weights: list[list[np.ndarray]], biases: list[list[np.ndarray]]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Several one-hidden-layer MLPs as one: their hidden units side by side, the output the mean of their logits.
    Exact, so the ensemble keeps the single-MLP weights format."""
    if any(len(layers) != 2 for layers in weights):
        raise ValueError("averaging needs one-hidden-layer MLPs")
    hidden = np.concatenate([layers[0] for layers in weights], axis=1)
    output = np.concatenate([layers[1] for layers in weights], axis=0) / len(weights)
    return [hidden, output], [np.concatenate([b[0] for b in biases]), np.mean([b[1] for b in biases], axis=0)]


def metrics(y_true: np.ndarray, y_pred: np.ndarray, labels: list[int]) -> dict[str, Any]:
    """Accuracy, macro-F1 over ``labels``, per-class figures, the confusion matrix (uncertain and missed = own
    columns, both wrong) and the share of rows called uncertain."""
    from sklearn.metrics import f1_score, precision_recall_fscore_support

    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0)
    columns = [*range(len(STATES)), UNSURE, MISSED]
    confusion = [[int(np.sum((y_true == t) & (y_pred == p))) for p in columns] for t in labels]
    return {
        "n_samples": int(len(y_true)),
        "accuracy": float(np.mean(y_true == y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        "uncertain_share": float(np.mean(y_pred == UNSURE)) if len(y_pred) else 0.0,
        "per_class": {STATES[c]: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
                      for c, p, r, f, s in zip(labels, precision, recall, f1, support)},
        "confusion_matrix": {"rows": [STATES[c] for c in labels], "columns": [*STATES, UNCERTAIN, "missed"],
                             "counts": confusion},
    }


def predict_states(model: Any, features: FeatureSet, uncertain_below: float = 0.0,
                   warming: np.ndarray | None = None, crop_weight: float = 0.0) -> np.ndarray:
    """Argmax state per row; ``UNSURE`` where its probability is below ``uncertain_below`` and ``MISSED`` for
    rows without a detected person (both scored as wrong). ``warming`` rows go to the model's warm-up model; the
    rows' crop-model probabilities are mixed in by ``crop_weight``, as a front-view pipeline does."""
    predicted = np.full(len(features.y), MISSED)
    if features.covered.any():
        covered = features.X[features.covered]
        probs = (model.predict_proba(covered) if warming is None else
                 model.predict_proba(covered, warming[features.covered]))
        if crop_weight > 0:
            if features.crop_probs is None:
                raise ValueError("crop_weight needs the rows' crop_probs")
            probs = mixed(probs, features.crop_probs[features.covered], crop_weight)
        predicted[features.covered] = np.where(probs.max(axis=1) < uncertain_below, UNSURE, probs.argmax(axis=1))
    return predicted


def evaluate(model: StateClassifier, features: FeatureSet, majority_state: int | None = None,
             uncertain_below: float = 0.0, view: CameraView | None = None, warmup_frames: int = 0,
             crop_weight: float = 0.0) -> dict[str, Any]:
    """Model, majority-class and rule-based figures on one dataset, with detector coverage. The model is scored
    with all its labels, and, on a dataset it was trained on, with only that dataset's own (as a pipeline with
    ``labels_of`` runs it); a model row whose top probability is below ``uncertain_below`` is ``uncertain``,
    counted as wrong (the baselines are always sure). The majority baseline is the training majority when the
    model knows the dataset, else the most frequent state of the evaluated rows themselves (the strongest
    constant guess). An engagement-level set also gets ``level_figures``; rows whose label has no state stay out
    of the state part. The model sees the rows as from ``view``, by default the camera view of their format
    (``view_of``). Rows whose baseline holds fewer than ``warmup_frames`` face frames go to the warm-up model, as in
    a pipeline with that ``classifier.warmup_frames``. With ``crop_weight`` the model rows mix in the rows' crop-model
    probabilities (``features.crop_probs``), as a front-view pipeline with that ``classifier.crop_weight``."""
    view = view or view_of(features)
    model = model.for_view(view)
    report: dict[str, Any] = {"dataset": features.dataset, "format": features.format or None, "view": view,
                              "coverage": float(features.covered.mean())}
    if features.format == LEVELS:
        report |= level_report(model, features)
    stated = features.subset(features.y != NO_STATE)
    if not len(stated.y):
        return report
    labels = list(features.states) or dataset_states(features.dataset)
    # The model's own outputs for this dataset, and its training majority, describe these rows only when the rows'
    # labels mean the same states as in training (a user's --label-map on a folder of that name may not).
    trained_states = dict(zip(model.output_labels, model.output_states.tolist()))
    same_map = all(trained_states.get(f"{features.dataset}:{label}") == state
                   for label, state in set(zip(stated.labels.tolist(), stated.y.tolist())))
    if majority_state is None:
        row_majority = int(np.bincount(stated.y, minlength=len(STATES)).argmax())
        majority_state = model.card.majority_state.get(features.dataset, row_majority) if same_map else row_majority
    warming = None
    if warmup_frames and stated.baseline_frames is not None:
        warming = warming_up(stated.X[:, :len(FRAME_FEATURES)], stated.baseline_frames, warmup_frames)
    contenders = {"model": model, "majority": MajorityClassifier(int(majority_state)), "rules": RuleBasedClassifier()}
    if same_map:
        contenders["model_own_labels"] = model.only_labels_of(features.dataset)
    return report | {
        "state_coverage": float(stated.covered.mean()),
        "states": [STATES[c] for c in labels],
        "majority_state": STATES[int(majority_state)],
        "uncertain_below": float(uncertain_below),
        "warmup_rows": int(warming[stated.covered].sum()) if warming is not None and model.warmup is not None else 0,
        "crop_weight": float(crop_weight),
        **{name: metrics(stated.y, predict_states(clf, stated, uncertain_below, warming, crop_weight) if name.startswith("model")
                         else predict_states(clf, stated), labels) for name, clf in contenders.items()},
    }


def level_figures(scores: np.ndarray, levels: np.ndarray) -> dict[str, Any]:
    """How engagement scores rank engagement levels (``ENGAGEMENT_LEVELS`` names): ROC AUC of engaged against
    disengaged, Spearman correlation with the level (0, 1, 2), and the mean score and count per level."""
    from scipy.stats import spearmanr
    from sklearn.metrics import roc_auc_score

    rank = np.array([ENGAGEMENT_LEVELS.index(level) for level in levels])
    ends = rank != 1
    auc = roc_auc_score(rank[ends] == 2, scores[ends]) if len(set(rank[ends].tolist())) == 2 else None
    varied = len(set(rank.tolist())) > 1 and np.ptp(scores) > 0
    rho = float(spearmanr(scores, rank).correlation) if varied else None
    return {
        "level_auc": None if auc is None else float(auc),
        "level_spearman": rho,
        "level_mean_score": {level: float(scores[rank == i].mean()) if (rank == i).any() else None
                             for i, level in enumerate(ENGAGEMENT_LEVELS)},
        "level_counts": {level: int((rank == i).sum()) for i, level in enumerate(ENGAGEMENT_LEVELS)},
    }


def level_report(model: Any, features: FeatureSet) -> dict[str, Any]:
    """``level_figures`` of the engagement score of ``model`` (for one camera view, ``for_view``) on the covered rows
    of an engagement-level set (an image with neither a person nor a face has no score), and the same for the rules
    baseline."""
    from engagement.scoring import engagement_score

    rows = features.subset(features.covered & np.isin(features.labels, ENGAGEMENT_LEVELS))
    if not len(rows.y):
        raise UserError("no image of the engagement-level set showed a person or a face: nothing to score")
    score = {name: engagement_score(clf.predict_proba(rows.X)) for name, clf in
             (("model", model), ("rules", RuleBasedClassifier()))}
    return {"level_rows": int(len(rows.y)), **level_figures(score["model"], rows.labels),
            "level_rules": level_figures(score["rules"], rows.labels)}


def majority_states(train_sets: list[FeatureSet]) -> dict[str, int]:
    return {fs.dataset: int(np.bincount(fs.y, minlength=len(STATES)).argmax()) for fs in train_sets}


def minority_f1(report: dict[str, Any]) -> float:
    """F1 of the dataset's rarest state (by support): the figure augmentation is meant to move."""
    per_class = report["model"]["per_class"]
    rarest = min(per_class, key=lambda state: per_class[state]["support"])
    return per_class[rarest]["f1"]


def split_persons(features: FeatureSet, test_persons: list[str] | tuple[str, ...]) -> tuple[FeatureSet, FeatureSet]:
    """Train / held-out by person (a webcam or engagement-level set): no person appears on both sides. ``1`` also
    names ``person1``; a name that matches no row is an error (a typo must not put a test person into training)."""
    names = [name if str(name).startswith("person") else f"person{name}" for name in test_persons]
    present = set(features.groups.tolist())
    missing = [name for name in names if name not in present]
    if missing:
        raise UserError(f"test persons not in {features.dataset}: {', '.join(missing)}")
    test = np.isin(features.groups, names)
    if not test.any() or test.all():
        raise UserError(f"test persons {', '.join(names)} leave an empty side of the split")
    return features.subset(~test), features.subset(test)


def level_training_rows(features: FeatureSet) -> FeatureSet:
    """The engagement-level crops to fit on: those whose level has a state and whose face was analysed. Crops
    without face landmarks carry only the head-crop descriptor, which the ceiling-camera heads rely on; fitting
    them cost the classroom validation figure about 0.01 (MODEL_CARD.md)."""
    with_face = features.X[:, FRAME_FEATURES.index("has_face")] == 1.0
    return features.subset((features.y >= 0) & features.covered & with_face)


def with_settled_baselines(features: FeatureSet) -> FeatureSet:
    """The rows again, with relative features against each person's whole-session baseline."""
    X = features.X.copy()
    frames = np.zeros(len(X), int)
    for person in np.unique(features.groups):
        rows = features.groups == person
        X[rows, len(FRAME_FEATURES):] = session_relative(X[rows, :len(FRAME_FEATURES)])
        frames[rows] = face_rows(X[rows, :len(FRAME_FEATURES)]).sum()
    return replace(features, X=X, baseline_frames=frames)


def default_warmup(dataset: str) -> int:
    """The webcam pipeline's ``classifier.warmup_frames`` for webcam data, as ``default_baseline``; 0 for the rest
    (classroom rows are single frames; the warm-up model was chosen for the webcam pipeline only)."""
    if dataset != WEBCAM:
        return 0
    from engagement.config import load_pipeline

    return load_pipeline("webcam").classifier.warmup_frames


def default_baseline(dataset: str) -> str:
    """How the pipeline made for this kind of recording computes relative features: the webcam pipeline's
    ``classifier.baseline`` for webcam data; classroom rows are single frames of many people (no session)."""
    if dataset != WEBCAM:
        return "running"
    from engagement.config import load_pipeline

    return load_pipeline("webcam").classifier.baseline


def with_baseline(features: FeatureSet, baseline: str) -> FeatureSet:
    """The rows as a pipeline with ``classifier.baseline`` sees them: "running" as streamed (the stored rows),
    "session" against each person's whole session."""
    if baseline == "running":
        return features
    if features.dataset != WEBCAM:
        raise UserError("a session baseline applies to the webcam dataset only (classroom rows are single frames)")
    return with_settled_baselines(features)


def fit_on(train_sets: list[FeatureSet], augment_method: str, seed: int, settled_baselines: bool = True,
           hidden_units: int = HIDDEN_UNITS, alpha: float = L2_ALPHA, ensemble_size: int = ENSEMBLE_SIZE,
           view_inputs: bool = True, warmup: bool = False) -> tuple[StateClassifier, dict[str, int]]:
    """Train on the covered rows of several datasets (webcam rows also with settled baselines), with each set's
    camera view as an input unless ``view_inputs`` is false (the recipe before views, for validation), and with a
    warm-up model when ``warmup`` (``train_classifier``)."""
    covered = [fs.subset(fs.covered) for fs in train_sets]
    settled = [with_settled_baselines(fs) for fs in covered if fs.dataset == WEBCAM and settled_baselines]
    fitted = covered + settled
    X = np.concatenate([fs.X for fs in fitted])
    labels = np.concatenate([np.char.add(f"{fs.dataset}:", fs.labels.astype(str)) for fs in fitted])
    model, counts = train_classifier(X, labels, np.concatenate([fs.y for fs in fitted]), augment_method, seed,
                                     hidden_units=hidden_units, alpha=alpha, ensemble_size=ensemble_size,
                                     views=row_views(fitted) if view_inputs else None, warmup=warmup)
    model.card = replace(model.card, majority_state=majority_states(covered))
    copies = int(sum(len(fs.y) for fs in settled))
    return model, counts | {"real": counts["real"] - copies, "settled_baseline_copies": copies}



def one_room_out(fitted: list[FeatureSet], augment_method: str, seed: int) -> dict[str, dict[str, Any]]:
    """Figures on a classroom the recipe never saw: for each room of a fitted COCO classroom set with several rooms,
    ``fit_on`` the same sets without that room and ``evaluate`` on it."""
    figures = {}
    for index, features in enumerate(fitted):
        # a COCO image's group is its room when it has one, else the image itself (its clip)
        has_rooms = features.format == COCO and bool((features.groups != features.clips).any())
        rooms = sorted(set(features.groups.tolist())) if has_rooms else []
        for room in rooms if len(rooms) > 1 else []:
            others = [*fitted[:index], features.subset(features.groups != room), *fitted[index + 1:]]
            model, _ = fit_on(others, augment_method, seed)
            figures[f"{features.dataset} room {room}, unseen"] = evaluate(model, features.subset(features.groups == room))
    return figures


def export_training_rows(path: str | os.PathLike, train_sets: list[FeatureSet], model: StateClassifier) -> None:
    """Write the covered training rows as ``X``/``y``/``classes`` .npz in the model's standardised space (missing
    values 0, camera-view inputs included), the space its augmentation works in, so ``engagement generate train
    --data`` can learn from them."""
    covered = [fs.subset(fs.covered) for fs in train_sets]
    rows = standardize(with_view_inputs(np.concatenate([fs.X for fs in covered]), row_views(covered), model.views),
                       model.mean, model.scale)
    labels = np.concatenate([fs.y for fs in covered])
    write_atomic(path, lambda stream: np.savez_compressed(stream, X=rows, y=labels, classes=np.array(STATES)))
