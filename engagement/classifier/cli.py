"""``engagement classifier train|evaluate``: train the state classifier and score it on labelled data."""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

DEFAULT_CACHE = Path(tempfile.gettempdir()) / "engagement-classifier-cache"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this module's commands to the `engagement` parser."""
    from engagement.classifier.train import AUGMENTATIONS

    parser = subparsers.add_parser("classifier", help="train and evaluate the engagement-state classifier")
    commands = parser.add_subparsers(dest="classifier_command", metavar="COMMAND", required=True)

    train = commands.add_parser("train", help="train on the classroom and webcam datasets, write weights")
    train.add_argument("--cctv", required=True, help="cctv_headstate folder (train/ is fitted, val/ is held out)")
    train.add_argument("--webcam", required=True, help="webcam_behaviour folder (labels.csv)")
    train.add_argument("--test-persons", default="1,2", help="webcam persons held out (default 1,2)")
    train.add_argument("--augment", choices=AUGMENTATIONS, default="class_weight",
                       help="balancing of under-represented states (default: class_weight, tied best on validation)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--out", required=True, help="weights file to write (.npz)")
    train.add_argument("--export-features", help="also write the real training rows as X/y/classes .npz, standardised "
                       "as the model sees them (missing values 0), for `engagement generate train --data`")
    train.add_argument("--cache-dir", default=str(DEFAULT_CACHE), help="detections cache")
    train.set_defaults(handler=_train)

    evaluate = commands.add_parser("evaluate", help="accuracy, macro-F1, per-class figures as JSON")
    evaluate.add_argument("dataset", help="a cctv_headstate folder (or one split of it) or a webcam_behaviour folder")
    evaluate.add_argument("--weights", help="weights file (default: the packaged weights)")
    evaluate.add_argument("--split", help="cctv split to use (default: every split found)")
    evaluate.add_argument("--persons", help="webcam persons to keep, e.g. 1,2 (default: all)")
    evaluate.add_argument("--limit", type=int, help="only the first N images (quick checks)")
    evaluate.add_argument("--baseline", choices=["running", "session"],
                          help="webcam rows: relative features against each person's frames so far (as live video) or "
                               "whole session (as the webcam pipeline does for a recording); default: as the webcam "
                               "pipeline does for a recording (classroom rows: running, they are single frames)")
    evaluate.add_argument("--cache-dir", default=str(DEFAULT_CACHE), help="detections cache")
    evaluate.set_defaults(handler=_evaluate)


def _persons(text: str) -> list[str]:
    return [p.strip() for p in text.split(",") if p.strip()]


def _train(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from engagement.classifier.data import WEBCAM, DatasetFeaturizer
    from engagement.classifier.train import default_baseline, export_training_rows, fit_on, split_webcam

    featurizer = DatasetFeaturizer(cache_dir=args.cache_dir)
    cctv_train = featurizer.featurize(args.cctv, split="train")
    cctv_test = featurizer.featurize(args.cctv, split="val")
    webcam_train, webcam_test = split_webcam(featurizer.featurize(args.webcam), _persons(args.test_persons))
    model, counts = fit_on([cctv_train, webcam_train], args.augment, args.seed)
    model.card = replace(
        model.card, augment=args.augment, seed=args.seed, rows=counts,
        splits={"cctv_headstate": "train split -> fit, val split -> held out (by frame)",
                "webcam_behaviour": f"persons {args.test_persons} held out, the others fit (by person)"},
        held_out={fs.dataset: _scored(model, fs, default_baseline(fs.dataset)) for fs in (cctv_test, webcam_test)},
        held_out_running_baseline={WEBCAM: _scored(model, webcam_test, "running")},
    )
    model.save(args.out)
    if args.export_features:
        export_training_rows(args.export_features, [cctv_train, webcam_train], model)
    reports = {**model.card.held_out, f"{WEBCAM} (running baseline)": model.card.held_out_running_baseline[WEBCAM]}
    print(json.dumps({name: {"coverage": r["coverage"], "macro_f1": r["model"]["macro_f1"],
                             "macro_f1_own_labels": r["model_own_labels"]["macro_f1"]}
                      for name, r in reports.items()}, indent=2))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    import numpy as np

    from engagement.classifier.data import WEBCAM, DatasetFeaturizer
    from engagement.classifier.model import StateClassifier
    from engagement.classifier.train import default_baseline
    from engagement.errors import UserError

    model = StateClassifier.load(args.weights)
    features = DatasetFeaturizer(cache_dir=args.cache_dir).featurize(args.dataset, split=args.split, limit=args.limit)
    if args.persons:
        if features.dataset != WEBCAM:
            raise UserError("--persons applies to the webcam dataset only")
        features = features.subset(np.isin(features.groups, [f"person{p}" for p in _persons(args.persons)]))
    print(json.dumps(_scored(model, features, args.baseline or default_baseline(features.dataset)), indent=2))
    return 0


def _scored(model: Any, features: Any, baseline: str) -> dict[str, Any]:
    """``evaluate`` on the rows with relative features against the given ``baseline``, which it records."""
    from engagement.classifier.train import evaluate, with_baseline

    return {"baseline": baseline, **evaluate(model, with_baseline(features, baseline))}
