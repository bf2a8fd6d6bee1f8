"""The upper-body crop model on a classroom it never saw: one-room-out on clabehavior, alone and mixed with the
feature network at several ``classifier.crop_weight`` values.

For each fold (room A fits and room B is scored, then B -> A): the crop model (``train_crop_model``, one network
per seed, averaged, from the COCO-trained YOLOv8n in ``--pretrained``) is fitted on the fitting room's matched
crops, and the feature network with the shipped recipe (``fit_on``: cctv train, webcam persons 0, 3, 4, the
engagement_levels faces the card does not hold out, and the fitting room) on the same room. The scored room is
evaluated as ``engagement classifier evaluate`` does (macro-F1 over its four states, unmatched boxes wrong, all
labels, ``--uncertain-below 0``) at every ``--crop-weights`` value: 0 is the feature network alone, 1 the crop
model alone. The rooms are validation: the crop square and the pipeline's weight were chosen on them.

    python benchmarks/crop_validation.py --device cuda --json crops.json   # minutes on a GPU; 2 CPU cores: 15 minutes
    python benchmarks/crop_validation.py --device cuda --seeds 0 1 2       # three networks averaged per fold
"""

from __future__ import annotations

import argparse
import json
import time

from engagement.classifier.cli import DEFAULT_CACHE
from engagement.classifier.crops import EPOCHS, train_crop_model
from engagement.classifier.data import DatasetFeaturizer
from engagement.classifier.train import (
    LEVEL_TEST_PERSONS, evaluate, fit_on, level_training_rows, split_persons,
)
from engagement.detector import select_device
from engagement.errors import run_reporting_errors
from engagement.models import resolve_model

WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clabehavior", default="../shared/datasets/clabehavior")
    parser.add_argument("--cctv", default="../shared/datasets/cctv_headstate")
    parser.add_argument("--webcam", default="../shared/datasets/webcam_behaviour")
    parser.add_argument("--levels", default="../shared/datasets/engagement_levels")
    parser.add_argument("--pretrained", default="yolov8n.pt", help="YOLOv8n .pt, a path or a name in the models folder")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="crop networks averaged per fold "
                        "(default 0: one, as the packaged model)")
    parser.add_argument("--mlp-seed", type=int, default=0, help="seed of the feature network's fit")
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--crop-weights", type=float, nargs="+", default=list(WEIGHTS))
    parser.add_argument("--fit-rooms", nargs="+", choices=["A", "B"], default=["A", "B"],
                        help="the folds to run, by the room fitted (default both: A -> B, then B -> A)")
    parser.add_argument("--cache-dir", default=str(DEFAULT_CACHE))
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    device = select_device(args.device)
    pretrained = resolve_model(args.pretrained)
    featurizer = DatasetFeaturizer(cache_dir=args.cache_dir)
    cctv_train = featurizer.featurize(args.cctv, split="train")
    webcam_train, _ = split_persons(featurizer.featurize(args.webcam), ["1", "2"])
    levels = level_training_rows(split_persons(featurizer.featurize(args.levels), LEVEL_TEST_PERSONS)[0])
    rooms = featurizer.featurize(args.clabehavior)
    labelled = featurizer.classroom_crops(args.clabehavior)
    results = []
    for fit_room in args.fit_rooms:
        scored_room = "B" if fit_room == "A" else "A"
        started = time.perf_counter()
        fitting = (labelled.groups == fit_room) & labelled.covered & (labelled.y >= 0)
        crops = train_crop_model(labelled.crops[fitting], labelled.y[fitting], pretrained, tuple(args.seeds),
                                 args.epochs, device)
        crop_s = time.perf_counter() - started
        network, _ = fit_on([cctv_train, webcam_train, rooms.subset((rooms.groups == fit_room) & (rooms.y >= 0)), levels],
                            "class_weight", args.mlp_seed)
        scored = rooms.subset(rooms.groups == scored_room)
        scored.crop_probs = crops.predict_crops(labelled.crops[labelled.groups == scored_room])
        figures = {}
        for weight in args.crop_weights:
            report = evaluate(network, scored, crop_weight=weight)["model"]
            figures[str(weight)] = {"macro_f1": round(report["macro_f1"], 4),
                                    "per_state_f1": {state: round(c["f1"], 3) for state, c in report["per_class"].items()}}
        row = {"fold": f"{fit_room}->{scored_room}", "crop_fit_s": round(crop_s, 1), "seeds": args.seeds,
               "epochs": args.epochs, "device": device, "by_crop_weight": figures}
        results.append(row)
        print(json.dumps({"fold": row["fold"], "crop_fit_s": row["crop_fit_s"],
                          **{w: f["macro_f1"] for w, f in figures.items()}}), flush=True)
        if args.json:
            with open(args.json, "w") as handle:
                json.dump(results, handle, indent=2)


if __name__ == "__main__":
    raise SystemExit(run_reporting_errors(main, "crop_validation"))
