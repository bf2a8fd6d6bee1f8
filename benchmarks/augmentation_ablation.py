"""Augmentation ablation: macro-F1 and minority-state F1 over several seeds, on validation or held-out data.

Every method fits on the same real rows; synthetic rows only ever join the training side.
- ``--split validation`` (how defaults are chosen): carved from the training data only. Three folds: the
  cctv train frames in three groups by frame, and the webcam training persons (all but the held-out
  ones) one each; each fold fits on the other two groups and persons. Figures are means over folds.
- ``--split held-out`` (how they are reported): fit on all training data; cctv val split, webcam
  persons 1 and 2.
- ``--split persons`` (for the report only): leave one webcam person out, each of the five in turn (the
  other four and the cctv train split fit; the left-out person and cctv val are scored). Persons 0, 3, 4 were
  used for choices, so only the folds of persons 1 and 2 are clean held-out figures.
``--no-relative`` drops the track-relative features (``RELATIVE_FEATURES``) to measure what they add;
``--baseline session`` scores the webcam rows against each person's whole-session baseline (what
``classifier.baseline: session`` does for a recorded video) instead of the running one.

    python benchmarks/augmentation_ablation.py --cctv ../shared/datasets/cctv_headstate \
        --webcam ../shared/datasets/webcam_behaviour --split validation --seeds 0 1 2 \
        [--methods none class_weight smote cvae ddpm] [--no-relative] [--baseline running|session]
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace

import numpy as np

from engagement.classifier.cli import DEFAULT_CACHE
from engagement.classifier.data import WEBCAM, DatasetFeaturizer, FeatureSet
from engagement.classifier.train import ENSEMBLE_SIZE, evaluate, fit_on, minority_f1, split_persons, with_baseline
from engagement.errors import run_reporting_errors
from engagement.features import without_relative

COLUMNS = ["cctv_headstate_macro_f1", "cctv_headstate_minority_f1",
           "webcam_behaviour_macro_f1", "webcam_behaviour_minority_f1"]


def validation_folds(cctv_train: FeatureSet, webcam_train: FeatureSet) -> list[tuple[list[FeatureSet], list[FeatureSet]]]:
    """(fit sets, validation sets) per fold, from the training data only; no frame or person on both sides."""
    persons = sorted(set(webcam_train.groups.tolist()))
    frames = np.array(sorted(set(cctv_train.groups.tolist())))
    frame_fold = dict(zip(frames, np.arange(len(frames)) % len(persons)))
    cctv_fold = np.array([frame_fold[g] for g in cctv_train.groups])
    folds = []
    for k, person in enumerate(persons):
        held_cctv, held_webcam = cctv_fold == k, webcam_train.groups == person
        folds.append(([cctv_train.subset(~held_cctv), webcam_train.subset(~held_webcam)],
                      [cctv_train.subset(held_cctv), webcam_train.subset(held_webcam)]))
    return folds


def person_folds(cctv_train: FeatureSet, cctv_test: FeatureSet, webcam: FeatureSet) -> list[tuple[list[FeatureSet], list[FeatureSet]]]:
    """(fit sets, scored sets) leaving out one webcam person at a time."""
    folds = []
    for person in sorted(set(webcam.groups.tolist())):
        held = webcam.groups == person
        folds.append(([cctv_train, webcam.subset(~held)], [cctv_test, webcam.subset(held)]))
    return folds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cctv", default="../shared/datasets/cctv_headstate")
    parser.add_argument("--webcam", default="../shared/datasets/webcam_behaviour")
    parser.add_argument("--test-persons", default="1,2")
    parser.add_argument("--split", choices=["validation", "held-out", "persons"], default="validation")
    parser.add_argument("--methods", nargs="+", default=["none", "class_weight", "smote", "cvae", "ddpm"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--ensemble-size", type=int, default=ENSEMBLE_SIZE, help="MLPs averaged per fit (the card's "
                        "augmentation tables: 1)")
    parser.add_argument("--no-relative", action="store_true", help="drop the track-relative features")
    parser.add_argument("--baseline", choices=["running", "session"], default="running",
                        help="baseline of the scored webcam rows' relative features")
    parser.add_argument("--cache-dir", default=str(DEFAULT_CACHE))
    parser.add_argument("--json", help="also write the raw results here")
    args = parser.parse_args()

    featurizer = DatasetFeaturizer(cache_dir=args.cache_dir)
    cctv_train = featurizer.featurize(args.cctv, split="train")
    cctv_test = featurizer.featurize(args.cctv, split="val")
    webcam = featurizer.featurize(args.webcam)
    if args.no_relative:
        cctv_train, cctv_test, webcam = (replace(fs, X=without_relative(fs.X)) for fs in (cctv_train, cctv_test, webcam))
    webcam_train, webcam_test = split_persons(webcam, args.test_persons.split(","))
    if args.split == "validation":
        folds = validation_folds(cctv_train, webcam_train)
    elif args.split == "persons":
        folds = person_folds(cctv_train, cctv_test, webcam)
    else:
        folds = [([cctv_train, webcam_train], [cctv_test, webcam_test])]
    results = []
    for method in args.methods:
        for seed in args.seeds:
            started = time.perf_counter()
            try:
                fold_rows = [fold_result(fit_sets, scored_as(eval_sets, args.baseline), method, seed, not args.no_relative,
                                         args.ensemble_size)
                             for fit_sets, eval_sets in folds]
            except Exception as error:  # a generator that fails is reported, not hidden
                results.append({"method": method, "seed": seed, "error": f"{type(error).__name__}: {error}"})
                print(json.dumps(results[-1]), flush=True)
                continue
            row = {"method": method, "seed": seed, "synthetic_rows": fold_rows[0].pop("synthetic_rows"),
                   "fit_s": round(time.perf_counter() - started, 1),
                   **{c: float(np.mean([r[c] for r in fold_rows])) for c in COLUMNS},
                   "per_fold": fold_rows}
            results.append(row)
            print(json.dumps(row), flush=True)
    print(summary_table(results))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)


def scored_as(eval_sets: list[FeatureSet], baseline: str) -> list[FeatureSet]:
    """The scored sets, webcam rows against each person's whole session when ``baseline`` is "session"."""
    return [with_baseline(fs, baseline) if fs.dataset == WEBCAM else fs for fs in eval_sets]


def fold_result(fit_sets: list[FeatureSet], eval_sets: list[FeatureSet], method: str, seed: int,
                settled_baselines: bool, ensemble_size: int) -> dict:
    """Fit on ``fit_sets``; macro-F1 and minority F1 on each of ``eval_sets``."""
    model, counts = fit_on(fit_sets, method, seed, settled_baselines=settled_baselines, ensemble_size=ensemble_size)
    row = {"synthetic_rows": counts["synthetic"]}
    for features in eval_sets:
        report = evaluate(model, features)
        row[f"{features.dataset}_macro_f1"] = report["model"]["macro_f1"]
        row[f"{features.dataset}_minority_f1"] = minority_f1(report)
    return row


def summary_table(results: list[dict]) -> str:
    """Mean +- std over seeds per method, as a markdown table."""
    lines = ["| method | seeds | " + " | ".join(COLUMNS) + " |", "|" + "---|" * (len(COLUMNS) + 2)]
    for method in dict.fromkeys(r["method"] for r in results):
        rows = [r for r in results if r["method"] == method and "error" not in r]
        if not rows:
            error = next(r["error"] for r in results if r["method"] == method)
            lines.append(f"| {method} | 0 | failed: {error} |" + " |" * (len(COLUMNS) - 1))
            continue
        cells = [f"{np.mean([r[c] for r in rows]):.3f} ± {np.std([r[c] for r in rows]):.3f}" for c in COLUMNS]
        lines.append(f"| {method} | {len(rows)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(run_reporting_errors(main, "augmentation_ablation"))
