"""Retraining on the classroom sets: every setting chosen on validation split by room and by person.

Folds (nothing the model card holds out is fitted or scored: no cctv val frame, no webcam person 1 or 2, no
crop of the held-out engagement_levels people):
- ``room``: clabehavior room A fits and room B is scored, then B -> A; the cctv train split and webcam persons
  0, 3, 4 fit in both. Scored: clabehavior macro-F1 over its four states with all labels (the lecture
  pipeline) and with the clabehavior labels only (``labels_of: clabehavior``).
- ``person``: the three folds of ``augmentation_ablation.py --split validation`` (a third of the cctv train
  frames and one of webcam persons 0, 3, 4 held out each), with both clabehavior rooms fitting. Scored: the
  cctv fold (all labels) and the webcam person (webcam labels, running and session baseline).
- ``levels`` (with ``--levels``): the 12 engagement_levels people the card does not hold out (it holds out
  ``LEVEL_TEST_PERSONS``) in three folds of four (people sorted, every third); the other eight fit when
  ``--fit-levels`` is given, and the four are scored: ``level_auc`` of the engagement score, engaged against
  disengaged. With ``--fit-levels`` the set's crops fit as the label map says (``level_training_rows``:
  engaged as attentive, disengaged as distracted, each its own output; only crops with a face), in every fold
  (the room and person folds score no level crop; the card's four test people never fit here).
Variants (``--variants``): ``without`` (no clabehavior rows: the recipe before 4 Dec's second version),
``labels`` (clabehavior rows, its labels as outputs: the shipped recipe), ``states`` (clabehavior rows, its
labels merged by state: read + write one output, raise_hand + discuss one), and ``alpha=A`` / ``units=N`` on top
of ``labels``. Each fold's figures
are also given with rows below a probability threshold called uncertain (wrong), for ``--thresholds``
(the ``without`` person folds chose ``classifier.uncertain_below``). Each dataset's camera view is an input
(``fit_on``) unless ``--no-view-inputs`` (the recipe without views: the card's "without" and "no view input"
rows). Seed 0 by default; a fit takes seconds on an idle 2-core CPU and minutes on a loaded one.

    python benchmarks/retrain_validation.py --variants without labels states [--folds room person] --json out.json
    python benchmarks/retrain_validation.py --variants without --folds room person levels \
        --levels ../shared/datasets/engagement_levels [--fit-levels] --json levels.json
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
from engagement.classifier.data import WEBCAM, DatasetFeaturizer, FeatureSet, view_of
from engagement.classifier.model import StateClassifier
from engagement.classifier.train import (
    ENSEMBLE_SIZE, HIDDEN_UNITS, L2_ALPHA, LEVEL_TEST_PERSONS, evaluate, fit_on, level_report, level_training_rows,
    split_persons, with_baseline,
)
from engagement.states import STATES
from engagement.errors import run_reporting_errors

CLA = "clabehavior"
THRESHOLDS = (0.0, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.7)

Fold = tuple[str, list[FeatureSet], list[tuple[str, FeatureSet, str | None]]]  # name, fit sets, (scored name, rows, labels_of)


def merged_by_state(features: FeatureSet) -> FeatureSet:
    """The rows with each label replaced by its state's name: one network output per state for this dataset
    (clabehavior's discuss occurs once in room A, raise_hand 28 times in room B)."""
    return replace(features, labels=np.array(STATES)[features.y])


def level_folds(levels: FeatureSet, fitted: FeatureSet | None, base: list[FeatureSet]) -> list[Fold]:
    """Three folds of the engagement_levels people not held out for the card (``LEVEL_TEST_PERSONS``): the
    others fit, these are scored; without ``fitted``, one model scores all twelve."""
    validation = ~np.isin(levels.groups, [f"person{p}" for p in LEVEL_TEST_PERSONS])
    if fitted is None:
        return [("levels: all unseen", base, [("levels", levels.subset(validation), "levels")])]
    people = sorted(np.unique(levels.groups[validation]), key=lambda name: int(name.removeprefix("person")))
    result: list[Fold] = []
    for k in range(3):
        held = np.isin(levels.groups, people[k::3])
        fit = base + [fitted.subset(np.isin(fitted.groups, people) & ~np.isin(fitted.groups, people[k::3]))]
        result.append((f"levels: fold {k} ({', '.join(people[k::3])})", fit, [("levels", levels.subset(held), "levels")]))
    return result


def folds(cctv_train: FeatureSet, webcam_train: FeatureSet, cla: FeatureSet | None,
          cla_scored: FeatureSet, levels: FeatureSet | None = None) -> list[Fold]:
    """Room folds, then person folds; ``cla`` (possibly relabelled, or None) is what fits, ``cla_scored`` what
    is scored; ``levels``, when given, fits in every room and person fold."""
    result: list[Fold] = []
    extra = [levels] if levels is not None else []
    if cla is None:  # one model, fitted without either room, scores both
        result.append(("room: both unseen", [cctv_train, webcam_train, *extra],
                       [(f"{CLA} room {room}", cla_scored.subset(cla_scored.groups == room), None) for room in "AB"]))
    for fit_room, scored_room in (("A", "B"), ("B", "A")) if cla is not None else ():
        scored = cla_scored.subset(cla_scored.groups == scored_room)
        result.append((f"room: {fit_room}->{scored_room}", [cctv_train, webcam_train, cla.subset(cla.groups == fit_room), *extra],
                       [(f"{CLA} room {scored_room}", scored, None), (f"{CLA} room {scored_room}, own labels", scored, CLA)]))
    for k, (fit, scored) in enumerate(validation_folds(cctv_train, webcam_train)):
        person = scored[1].groups[0]
        result.append((f"person: fold {k} ({person})", fit + ([cla] if cla is not None else []) + extra,
                       [("cctv val-fold", scored[0], None),
                        ("webcam val-person, running", scored[1], WEBCAM),
                        ("webcam val-person, session", with_baseline(scored[1], "session"), WEBCAM)]))
    return result


def scored(model: StateClassifier, features: FeatureSet, labels_of: str | None,
           thresholds: tuple[float, ...]) -> dict[str, Any] | None:
    """Macro-F1 and accuracy (uncertain = wrong) and uncertain share at each threshold; None when the model has
    no labels of ``labels_of``. Engagement-level crops (``labels_of`` "levels") get ``level_report`` instead."""
    if labels_of == "levels":
        return level_report(model.for_view(view_of(features)), features)
    if labels_of and not any(label.startswith(f"{labels_of}:") for label in model.output_labels):
        return None
    restricted = model.only_labels_of(labels_of) if labels_of else model
    reports = {t: evaluate(restricted, features, uncertain_below=t)["model"] for t in thresholds}
    return {"macro_f1": {str(t): r["macro_f1"] for t, r in reports.items()},
            "accuracy": {str(t): r["accuracy"] for t, r in reports.items()},
            "uncertain_share": {str(t): r["uncertain_share"] for t, r in reports.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cctv", default="../shared/datasets/cctv_headstate")
    parser.add_argument("--webcam", default="../shared/datasets/webcam_behaviour")
    parser.add_argument("--clabehavior", default="../shared/datasets/clabehavior")
    parser.add_argument("--variants", nargs="+", default=["without", "labels", "states"])
    parser.add_argument("--levels", help="engagement_levels folder (the levels folds; --fit-levels)")
    parser.add_argument("--fit-levels", action="store_true", help="fit engagement_levels' engaged and disengaged "
                        "faces (as the label map says)")
    parser.add_argument("--folds", nargs="+", choices=["room", "person", "levels"], default=["room", "person"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-view-inputs", action="store_true", help="fit without the camera-view inputs (the "
                        "recipe before them)")
    parser.add_argument("--ensemble-size", type=int, default=ENSEMBLE_SIZE,
                        help=f"MLPs averaged per fit (default {ENSEMBLE_SIZE}; 1: the one-MLP rows of the card)")
    parser.add_argument("--thresholds", nargs="+", type=float, default=list(THRESHOLDS))
    parser.add_argument("--cache-dir", default=str(DEFAULT_CACHE))
    parser.add_argument("--json", help="also write the raw results here")
    args = parser.parse_args()
    if (args.fit_levels or "levels" in args.folds) and not args.levels:
        parser.error("--fit-levels and --folds levels need --levels FOLDER")

    featurizer = DatasetFeaturizer(cache_dir=args.cache_dir)
    cctv_train = featurizer.featurize(args.cctv, split="train")
    webcam_train, _ = split_persons(featurizer.featurize(args.webcam), ["1", "2"])
    cla = featurizer.featurize(args.clabehavior)
    cla = cla.subset(cla.y >= 0)
    levels = featurizer.featurize(args.levels) if args.levels else None
    if levels is not None and args.fit_levels:
        levels_fit = level_training_rows(split_persons(levels, LEVEL_TEST_PERSONS)[0])
    else:
        levels_fit = None
    results = []
    for variant in args.variants:
        name, _, value = variant.partition("=")
        fitted = None if name == "without" else merged_by_state(cla) if name == "states" else cla
        units = int(value) if name == "units" else HIDDEN_UNITS
        alpha = float(value) if name == "alpha" else L2_ALPHA
        all_folds = folds(cctv_train, webcam_train, fitted, cla, levels_fit)
        if levels is not None:
            all_folds += level_folds(levels, levels_fit, [cctv_train, webcam_train] + ([fitted] if fitted is not None else []))
        for fold, fit_sets, scored_sets in all_folds:
            if fold.split(":")[0] not in args.folds:
                continue
            started = time.perf_counter()
            model, _ = fit_on(fit_sets, "class_weight", args.seed, hidden_units=units, alpha=alpha,
                              ensemble_size=args.ensemble_size, view_inputs=not args.no_view_inputs)
            row = {"variant": variant, "fold": fold, "fit_s": round(time.perf_counter() - started, 1),
                   "scores": {label: scored(model, rows, labels_of, tuple(args.thresholds))
                              for label, rows, labels_of in scored_sets}}
            results.append(row)
            print(json.dumps({"variant": variant, "fold": fold, "fit_s": row["fit_s"],
                              **{label: round(s["level_auc"] if "level_auc" in s else s["macro_f1"]["0.0"], 3)
                                 for label, s in row["scores"].items() if s}}), flush=True)
            if args.json:  # after every fold: a fit takes minutes on a shared CPU
                with open(args.json, "w") as handle:
                    json.dump(results, handle, indent=2)


if __name__ == "__main__":
    raise SystemExit(run_reporting_errors(main, "retrain_validation"))
