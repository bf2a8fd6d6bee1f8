"""Wrists from the hand models (``hands.enabled``), chosen on validation persons, not on the held-out ones.

Each webcam training person (all but ``--test-persons``) is left out in turn, as in the validation folds of
``augmentation_ablation.py``; the shipped recipe (``fit_on`` with the warm-up model, clabehavior and the
engagement_levels training people beside the cctv and webcam rows) fits on the rest. The left-out person's original
frames and their close-up copies (made by ``benchmarks/close_up.py``, whose crops cut the arms off) are scored as the
webcam pipeline reads them (webcam view and labels, warm-up model for young baselines), with the running and the
session baseline. Compared: the pose model's wrists alone, and wrists filled from palms whose hand-presence is at
least each ``--presence`` (0: every palm the detector finds), with the weights fitted on pose wrists (the hand models
used at inference only) and, with ``--refit``, fitted on the filled wrists too. Reported: argmax macro-F1 (webcam
labels), mean over folds and seeds, and the per-fold differences against pose wrists alone; first, the share of
the training people's rows (all of them) that have a wrist, and of their raised hands.

    python benchmarks/close_up.py ../shared/datasets/webcam_behaviour /tmp/close_up/webcam_behaviour
    python benchmarks/hands_validation.py --close-up /tmp/close_up/webcam_behaviour --presence 0 0.5 0.9 --refit
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import numpy as np

from augmentation_ablation import validation_folds
from engagement.classifier.cli import DEFAULT_CACHE
from engagement.classifier.data import WEBCAM, DatasetFeaturizer, FeatureSet
from engagement.classifier.train import (
    LEVEL_TEST_PERSONS, dataset_states, fit_on, level_training_rows, metrics, split_persons, with_settled_baselines,
)
from engagement.config import HandsConfig, load_pipeline
from engagement.errors import run_reporting_errors
from engagement.features import FRAME_FEATURES, warming_up

POSE_ONLY = "pose wrists"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cctv", default="../shared/datasets/cctv_headstate")
    parser.add_argument("--webcam", default="../shared/datasets/webcam_behaviour")
    parser.add_argument("--close-up", required=True, help="close-up copies of --webcam (benchmarks/close_up.py)")
    parser.add_argument("--clabehavior", default="../shared/datasets/clabehavior")
    parser.add_argument("--levels", default="../shared/datasets/engagement_levels")
    parser.add_argument("--test-persons", default="1,2", help="held-out persons, never used here")
    parser.add_argument("--presence", nargs="+", type=float, default=[0.5], help="hands.min_presence values")
    parser.add_argument("--refit", action="store_true", help="also fit on the filled wrists")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--cache-dir", default=str(DEFAULT_CACHE))
    args = parser.parse_args()

    held_out = args.test_persons.split(",")
    warmup_frames = load_pipeline("webcam").classifier.warmup_frames
    plain = DatasetFeaturizer(cache_dir=args.cache_dir)
    cctv_train = plain.featurize(args.cctv, split="train")
    classroom = plain.featurize(args.clabehavior)
    extra = [classroom.subset(classroom.y >= 0),
             level_training_rows(split_persons(plain.featurize(args.levels), LEVEL_TEST_PERSONS)[0])]
    variants = {POSE_ONLY: None} | {f"presence >= {p:g}": HandsConfig(enabled=True, min_presence=p) for p in args.presence}
    frames: dict[tuple[str, str], FeatureSet] = {}
    for variant, hands in variants.items():
        featurizer = DatasetFeaturizer(cache_dir=args.cache_dir, hands=hands)
        for framing, path in (("original", args.webcam), ("close-up", args.close_up)):
            frames[variant, framing] = split_persons(featurizer.featurize(path), held_out)[0]
    print("| wrists | framing | rows with a wrist | raised hands with a wrist |\n|---|---|---|---|")
    wrist_columns = [FRAME_FEATURES.index("has_left_wrist"), FRAME_FEATURES.index("has_right_wrist")]
    for (variant, framing), rows in frames.items():
        has_wrist = (rows.X[:, wrist_columns] == 1).any(axis=1)
        print(f"| {variant} | {framing} | {has_wrist.mean():.3f} | {has_wrist[rows.labels == 'raisehand'].mean():.3f} |")
    labels = dataset_states(WEBCAM)
    scores: dict[tuple[str, str, str, str], list[float]] = defaultdict(list)
    fits = [(POSE_ONLY, variant) for variant in variants] + ([(v, v) for v in variants if v != POSE_ONLY] if args.refit else [])
    for seed in args.seeds:
        for fitted_on in dict.fromkeys(fitted for fitted, _ in fits):
            for fit_sets, eval_sets in validation_folds(cctv_train, frames[fitted_on, "original"]):
                person = str(eval_sets[1].groups[0])
                model, _ = fit_on(fit_sets + extra, "class_weight", seed, warmup=True)
                webcam_model = model.only_labels_of(WEBCAM).for_view("webcam")
                for scored in (scored for fitted, scored in fits if fitted == fitted_on):
                    for framing in ("original", "close-up"):
                        rows = frames[scored, framing]
                        rows = rows.subset((rows.groups == person) & rows.covered)
                        for baseline, features in (("running", rows), ("session", with_settled_baselines(rows))):
                            warming = warming_up(features.X[:, :len(FRAME_FEATURES)], features.baseline_frames, warmup_frames)
                            states = webcam_model.predict_proba(features.X, warming).argmax(axis=1)
                            scores[fitted_on, scored, framing, baseline].append(metrics(features.y, states, labels)["macro_f1"])
                print(f"seed {seed}, fitted on {fitted_on}, {person}: done", flush=True)
    print("| fitted on | scored with | framing | baseline | macro-F1 | per fold minus pose wrists |\n|---|---|---|---|---|---|")
    for (fitted_on, scored, framing, baseline), values in scores.items():
        reference = np.array(scores[POSE_ONLY, POSE_ONLY, framing, baseline])
        differences = " / ".join(f"{d:+.3f}" for d in np.array(values) - reference)
        print(f"| {fitted_on} | {scored} | {framing} | {baseline} | {np.mean(values):.3f} | {differences} |")


if __name__ == "__main__":
    raise SystemExit(run_reporting_errors(main, "hands_validation"))
