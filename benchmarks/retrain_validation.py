"""Retraining on the classroom sets: every setting chosen on validation split by room and by person.

Folds (nothing the model card holds out is fitted or scored: no cctv val frame, no webcam person 1 or 2, no
engagement_levels crop):
- ``room``: clabehavior room A fits and room B is scored, then B -> A; the cctv train split and webcam persons
  0, 3, 4 fit in both. Scored: clabehavior macro-F1 over its four states with all labels (the lecture
  pipeline) and with the clabehavior labels only (``labels_of: clabehavior``).
- ``person``: the three folds of ``augmentation_ablation.py --split validation`` (a third of the cctv train
  frames and one of webcam persons 0, 3, 4 held out each), with both clabehavior rooms fitting. Scored: the
  cctv fold (all labels) and the webcam person (webcam labels, running and session baseline).
Variants (``--variants``): ``without`` (the shipped recipe: no clabehavior rows), ``labels`` (clabehavior
rows, its labels as outputs), ``states`` (clabehavior rows, its labels merged by state: read + write one
output, raise_hand + discuss one), and ``alpha=A`` / ``units=N`` on top of ``labels``. Each fold's figures
are also given with rows below a probability threshold called uncertain (wrong), for ``--thresholds``
(the ``without`` person folds chose ``classifier.uncertain_below``). Seed 0 by default; a fit takes one to
several minutes on a shared 2-core CPU.

    python benchmarks/retrain_validation.py --variants without labels states [--folds room person] --json out.json
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from typing import Any

import numpy as np

from augmentation_ablation import validation_folds
from engagement.classifier.cli import DEFAULT_CACHE
from engagement.classifier.data import WEBCAM, DatasetFeaturizer, FeatureSet
from engagement.classifier.model import StateClassifier
from engagement.classifier.train import HIDDEN_UNITS, L2_ALPHA, evaluate, fit_on, split_webcam, with_baseline
from engagement.states import STATES

CLA = "clabehavior"
THRESHOLDS = (0.0, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.7)

Fold = tuple[str, list[FeatureSet], list[tuple[str, FeatureSet, str | None]]]  # name, fit sets, (scored name, rows, labels_of)


def merged_by_state(features: FeatureSet) -> FeatureSet:
    """The rows with each label replaced by its state's name: one network output per state for this dataset
    (clabehavior's discuss occurs once in room A, raise_hand 28 times in room B)."""
    return replace(features, labels=np.array(STATES)[features.y])


def folds(cctv_train: FeatureSet, webcam_train: FeatureSet, cla: FeatureSet | None,
          cla_scored: FeatureSet) -> list[Fold]:
    """Room folds, then person folds; ``cla`` (possibly relabelled, or None) is what fits, ``cla_scored`` what
    is scored."""
    result: list[Fold] = []
    if cla is None:  # one model, fitted without either room, scores both
        result.append(("room: both unseen", [cctv_train, webcam_train],
                       [(f"{CLA} room {room}", cla_scored.subset(cla_scored.groups == room), None) for room in "AB"]))
    for fit_room, scored_room in (("A", "B"), ("B", "A")) if cla is not None else ():
        scored = cla_scored.subset(cla_scored.groups == scored_room)
        result.append((f"room: {fit_room}->{scored_room}", [cctv_train, webcam_train, cla.subset(cla.groups == fit_room)],
                       [(f"{CLA} room {scored_room}", scored, None), (f"{CLA} room {scored_room}, own labels", scored, CLA)]))
    for k, (fit, scored) in enumerate(validation_folds(cctv_train, webcam_train)):
        person = scored[1].groups[0]
        result.append((f"person: fold {k} ({person})", fit + ([cla] if cla is not None else []),
                       [("cctv val-fold", scored[0], None),
                        ("webcam val-person, running", scored[1], WEBCAM),
                        ("webcam val-person, session", with_baseline(scored[1], "session"), WEBCAM)]))
    return result


def scored(model: StateClassifier, features: FeatureSet, labels_of: str | None,
           thresholds: tuple[float, ...]) -> dict[str, Any] | None:
    """Macro-F1 and accuracy (uncertain = wrong) and uncertain share at each threshold; None when the model has
    no labels of ``labels_of``."""
    if labels_of and not any(label.startswith(f"{labels_of}:") for label in model.output_labels):
        return None
    view = model.only_labels_of(labels_of) if labels_of else model
    reports = {t: evaluate(view, features, uncertain_below=t)["model"] for t in thresholds}
    return {"macro_f1": {str(t): r["macro_f1"] for t, r in reports.items()},
            "accuracy": {str(t): r["accuracy"] for t, r in reports.items()},
            "uncertain_share": {str(t): r["uncertain_share"] for t, r in reports.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cctv", default="../shared/datasets/cctv_headstate")
    parser.add_argument("--webcam", default="../shared/datasets/webcam_behaviour")
    parser.add_argument("--clabehavior", default="../shared/datasets/clabehavior")
    parser.add_argument("--variants", nargs="+", default=["without", "labels", "states"])
    parser.add_argument("--folds", nargs="+", choices=["room", "person"], default=["room", "person"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--thresholds", nargs="+", type=float, default=list(THRESHOLDS))
    parser.add_argument("--cache-dir", default=str(DEFAULT_CACHE))
    parser.add_argument("--json", help="also write the raw results here")
    args = parser.parse_args()

    featurizer = DatasetFeaturizer(cache_dir=args.cache_dir)
    cctv_train = featurizer.featurize(args.cctv, split="train")
    webcam_train, _ = split_webcam(featurizer.featurize(args.webcam), ["1", "2"])
    cla = featurizer.featurize(args.clabehavior)
    cla = cla.subset(cla.y >= 0)
    results = []
    for variant in args.variants:
        name, _, value = variant.partition("=")
        fitted = None if name == "without" else merged_by_state(cla) if name == "states" else cla
        units = int(value) if name == "units" else HIDDEN_UNITS
        alpha = float(value) if name == "alpha" else L2_ALPHA
        for fold, fit_sets, scored_sets in folds(cctv_train, webcam_train, fitted, cla):
            if fold.split(":")[0] not in args.folds:
                continue
            started = time.perf_counter()
            model, _ = fit_on(fit_sets, "class_weight", args.seed, hidden_units=units, alpha=alpha)
            row = {"variant": variant, "fold": fold, "fit_s": round(time.perf_counter() - started, 1),
                   "scores": {label: scored(model, rows, labels_of, tuple(args.thresholds))
                              for label, rows, labels_of in scored_sets}}
            results.append(row)
            print(json.dumps({"variant": variant, "fold": fold, "fit_s": row["fit_s"],
                              **{label: round(s["macro_f1"]["0.0"], 3) for label, s in row["scores"].items() if s}}), flush=True)
            if args.json:  # after every fold: a fit takes minutes on a shared CPU
                with open(args.json, "w") as handle:
                    json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
