"""``engagement classifier train|evaluate|predict``: train the state classifier, score it on labelled data in any
format the readers know, and give the states of the people in stills or a video."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engagement.arguments import at_least_one, positive, share
from engagement.files import out_path, write_atomic

if TYPE_CHECKING:
    from engagement.config import HandsConfig

DEFAULT_CACHE = Path(tempfile.gettempdir()) / "engagement-classifier-cache"
MAX_TILES = 8  # per side: 8x8 tiles of a 4K frame are already smaller than the detector's input


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this module's commands to the `engagement` parser."""
    from engagement.classifier.train import AUGMENTATIONS, LEVEL_TEST_PERSONS
    from engagement.config import CAMERA_VIEWS, UNCERTAIN_BELOW, ClassifierConfig

    parser = subparsers.add_parser("classifier", help="train and evaluate the engagement-state classifier")
    commands = parser.add_subparsers(dest="classifier_command", metavar="COMMAND", required=True)

    train = commands.add_parser("train", help="train on the classroom and webcam datasets, write weights")
    train.add_argument("--cctv", required=True, help="cctv_headstate folder (train/ is fitted, val/ is held out)")
    train.add_argument("--webcam", required=True, help="webcam_behaviour folder (labels.csv)")
    train.add_argument("--clabehavior", help="clabehavior folder (COCO classroom set, front view): both rooms fit too, "
                       "as in the shipped weights (one-room-out validation: benchmarks/retrain_validation.py)")
    train.add_argument("--levels", help="engagement_levels folder: its engaged and disengaged faces fit, except the "
                       "--levels-test-persons, whose crops are scored into the card (level_auc)")
    train.add_argument("--levels-test-persons", default=",".join(LEVEL_TEST_PERSONS),
                       help=f"engagement_levels persons held out (default {','.join(LEVEL_TEST_PERSONS)})")
    train.add_argument("--test-persons", default="1,2", help="webcam persons held out (default 1,2)")
    train.add_argument("--augment", choices=AUGMENTATIONS, default="class_weight",
                       help="balancing of under-represented states (default: class_weight, tied best on validation)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--out", required=True, help="weights file to write (.npz)")
    train.add_argument("--export-features", help="also write the real training rows as X/y/classes .npz, standardised "
                       "as the model sees them (missing values 0), for `engagement generate train --data`")
    train.add_argument("--cache-dir", default=str(DEFAULT_CACHE), help="detections cache")
    train.set_defaults(handler=_train)

    train_crops = commands.add_parser("train-crops", help="fine-tune the upper-body crop model (front view) on a COCO "
                                      "classroom set, write its weights")
    train_crops.add_argument("dataset", help="COCO classroom set (annotations.json + images), e.g. clabehavior")
    train_crops.add_argument("--out", required=True, help="crop model file to write (.safetensors)")
    train_crops.add_argument("--pretrained", default="yolov8n.pt", help="COCO-trained YOLOv8n detection weights the "
                             "backbone starts from: a path, or a name in the models folder (default yolov8n.pt)")
    train_crops.add_argument("--label-map", help="flat YAML 'label: state' map (default: the packaged map)")
    train_crops.add_argument("--seeds", type=int, nargs="+", default=[0], help="one network per seed, averaged "
                             "(default 0: one network, as the packaged model)")
    train_crops.add_argument("--epochs", type=at_least_one, default=None, help="passes over the crops (default: the "
                             "packaged model's)")
    train_crops.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default auto; a fit "
                             "takes minutes on a GPU, half an hour on a 2-core CPU)")
    train_crops.add_argument("--models-dir", help="folder to look for --pretrained in")
    train_crops.add_argument("--cache-dir", default=str(DEFAULT_CACHE), help="detections cache")
    train_crops.set_defaults(handler=_train_crops)

    evaluate = commands.add_parser("evaluate", help="accuracy, macro-F1, per-class figures as JSON")
    evaluate.add_argument("dataset", help="a labelled folder: COCO (annotations.json), labels.csv (states, webcam "
                          "frames or engagement levels) or YOLO images/ + labels/ (cctv_headstate, or one split of it)")
    evaluate.add_argument("--label-map", help="flat YAML 'label: state' map for the dataset's labels (null leaves a "
                          "label out); default: the packaged map for the format")
    evaluate.add_argument("--weights", help="weights file (default: the packaged weights)")
    evaluate.add_argument("--split", help="cctv split to use (default: every split found)")
    evaluate.add_argument("--persons", help="persons to keep, e.g. 1,2 or person1 (default: all)")
    evaluate.add_argument("--rooms", help="rooms to keep (COCO images' room), e.g. A (default: all)")
    evaluate.add_argument("--limit", type=at_least_one, help="only the first N images (quick checks)")
    evaluate.add_argument("--baseline", choices=["running", "session"],
                          help="webcam rows: relative features against each person's frames so far (as live video) or "
                               "whole session (as the webcam pipeline does for a recording); default: as the webcam "
                               "pipeline does for a recording (classroom rows: running, they are single frames)")
    evaluate.add_argument("--warmup-frames", type=int, metavar="N", help="rows of a csv format whose baseline (running or "
                          "session) holds fewer than N face frames go to the warm-up model (classifier.warmup_frames; 0: "
                          "never); default: the webcam pipeline's for webcam data, else 0")
    evaluate.add_argument("--view", choices=CAMERA_VIEWS, help="camera view the model is told (classifier.view); "
                          "default: the format's (COCO front, YOLO heads ceiling, csv formats webcam)")
    evaluate.add_argument("--uncertain-below", type=float, help="call a row uncertain (scored as wrong) when its top "
                          f"state probability is below this (default: {UNCERTAIN_BELOW}, the threshold chosen for single frames; "
                          "the lecture pipeline's with the crop model mixed in)")
    evaluate.add_argument("--hands", action="store_true", help="fill the wrists the pose model misses from MediaPipe's "
                          "hand models with the webcam pipeline's hands settings (csv formats, whose images are not "
                          "tiled; `engagement models hands` installs them)")
    evaluate.add_argument("--crop-weight", type=share, help="share of the upper-body crop model in the state "
                          "probabilities (classifier.crop_weight; 0 leaves it out); default: the lecture pipeline's for a "
                          "COCO classroom set seen from the front, else 0")
    evaluate.add_argument("--crop-weights", help="crop model file (classifier.crop_weights; default: the packaged one)")
    evaluate.add_argument("--cache-dir", default=str(DEFAULT_CACHE), help="detections cache")
    evaluate.set_defaults(handler=_evaluate)

    predict = commands.add_parser("predict", help="states of every person in an image, a folder of images or a "
                                  "video's sampled frames, as a CSV table (never images)")
    predict.add_argument("path", help="an image, a folder of images, or a video")
    predict.add_argument("--out", required=True, help="CSV file to write")
    predict.add_argument("--every-s", type=positive, default=1.0, help="video: seconds between scored frames (default 1)")
    predict.add_argument("--tiles", default="1x1", help="detect on ROWSxCOLS overlapping tiles, e.g. 3x3 for small "
                         "people in a wide classroom still, as evaluate does for classroom sets (default 1x1)")
    predict.add_argument("--weights", help="weights file (default: the packaged weights)")
    predict.add_argument("--view", choices=CAMERA_VIEWS, default=ClassifierConfig.view,
                         help="camera view (classifier.view): front (a class filmed from the front or back), "
                         f"ceiling or webcam (one person at a laptop); default {ClassifierConfig.view}, as the lecture "
                         "pipeline")
    predict.add_argument("--uncertain-below", type=float, help="state 'uncertain' when the top state probability is "
                         f"below this (default: {UNCERTAIN_BELOW}, the threshold chosen for single frames; the lecture "
                         "pipeline's with the crop model mixed in)")
    predict.add_argument("--hands", action="store_true", help="fill the wrists the pose model misses from MediaPipe's "
                         "hand models with the webcam pipeline's hands settings (--tiles 1x1 only; `engagement models hands`)")
    predict.add_argument("--crop-weight", type=share, help="share of the upper-body crop model in the state probabilities "
                         "(classifier.crop_weight, front view only; 0 leaves it out); default: the lecture pipeline's for "
                         "the front view, else 0")
    predict.add_argument("--crop-weights", help="crop model file (classifier.crop_weights; default: the packaged one)")
    predict.set_defaults(handler=_predict)


def _names(text: str) -> list[str]:
    """A comma-separated list of names (persons, rooms)."""
    return [p.strip() for p in text.split(",") if p.strip()]


def _train(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from engagement.classifier.data import WEBCAM, DatasetFeaturizer
    from engagement.classifier.train import (
        NOT_KEPT, data_card, default_baseline, export_training_rows, fit_on, level_training_rows, one_room_out,
        split_persons,
    )

    out = out_path(args.out, ".npz", (".npz",), make_folders=True)  # before the featurizing and fitting
    export = (out_path(args.export_features, ".npz", (".npz",), "--export-features", {"--out": out})
              if args.export_features else None)
    featurizer = DatasetFeaturizer(cache_dir=args.cache_dir)
    cctv_train = featurizer.featurize(args.cctv, split="train")
    cctv_test = featurizer.featurize(args.cctv, split="val")
    webcam_train, webcam_test = split_persons(featurizer.featurize(args.webcam), _names(args.test_persons))
    fitted = [cctv_train, webcam_train] + ([featurizer.featurize(args.clabehavior)] if args.clabehavior else [])
    held_out = [cctv_test, webcam_test]
    if args.levels:
        levels_train, levels_test = split_persons(featurizer.featurize(args.levels), _names(args.levels_test_persons))
        fitted.append(level_training_rows(levels_train))
        held_out.append(levels_test)
    model, counts = fit_on(fitted, args.augment, args.seed, warmup=True)
    threshold = _threshold(None)
    unseen_rooms = one_room_out(fitted, args.augment, args.seed)
    model.card = replace(
        model.card, augment=args.augment, seed=args.seed, rows=counts, uncertain_below=threshold, not_kept=NOT_KEPT,
        data=data_card([fs.dataset for fs in fitted]),
        splits={"cctv_headstate": "val split held out (by frame)",
                "webcam_behaviour": f"persons {args.test_persons} held out (by person)",
                **{fs.dataset: "both rooms fit; each refitted without the other for the unseen-room figures"
                   for fs in fitted[2:] if fs.dataset == "clabehavior"},
                **({"engagement_levels": f"persons {args.levels_test_persons} held out (by person); the others' "
                    "engaged and disengaged faces fit"} if args.levels else {})},
        held_out={fs.dataset: _scored(model, fs, default_baseline(fs.dataset), 0.0) for fs in held_out},
        held_out_running_baseline={WEBCAM: _scored(model, webcam_test, "running", 0.0)},
        held_out_with_uncertain={fs.dataset: _scored(model, fs, default_baseline(fs.dataset), threshold) for fs in held_out[:2]},
        unseen_rooms=unseen_rooms,
    )
    model.save(out)
    if export:
        export_training_rows(export, fitted, model)
    reports = {**model.card.held_out, **unseen_rooms,
               f"{WEBCAM} (running baseline)": model.card.held_out_running_baseline[WEBCAM],
               **{f"{name} (uncertain below {threshold})": r for name, r in model.card.held_out_with_uncertain.items()}}
    print(json.dumps({name: {"coverage": r["coverage"], **{key: r[key] for key in ("level_auc",) if key in r},
                             **({"macro_f1": r["model"]["macro_f1"], "uncertain_share": r["model"]["uncertain_share"],
                                 "macro_f1_own_labels": r["model_own_labels"]["macro_f1"]} if "model" in r else {})}
                      for name, r in reports.items()}, indent=2))
    return 0


def _train_crops(args: argparse.Namespace) -> int:
    from engagement.classifier.crops import EPOCHS, train_crop_model, yolo_backbone
    from engagement.classifier.data import DatasetFeaturizer
    from engagement.detector import select_device
    from engagement.models import resolve_model

    out = out_path(args.out, ".safetensors", (".safetensors",))
    pretrained = Path(args.pretrained) if Path(args.pretrained).is_file() else resolve_model(args.pretrained, args.models_dir)
    yolo_backbone(pretrained)  # a file that is no YOLOv8n is refused now, not after the crops are cut
    featurizer = DatasetFeaturizer(cache_dir=args.cache_dir, models_dir=args.models_dir)
    labelled = featurizer.classroom_crops(args.dataset, args.label_map)
    fitted = labelled.covered & (labelled.y >= 0)
    model = train_crop_model(labelled.crops[fitted], labelled.y[fitted], pretrained, tuple(args.seeds),
                             args.epochs or EPOCHS, select_device(args.device))
    model.save(out)
    print(f"engagement: crop model of {len(args.seeds)} networks fitted on {int(fitted.sum())} crops -> {out}",
          file=sys.stderr)
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from engagement.classifier.data import COCO, CROWD_FORMATS, FORMAT_VIEWS, DatasetFeaturizer
    from engagement.classifier.model import StateClassifier
    from engagement.classifier.train import default_baseline
    from engagement.config import check_warmup_frames

    if args.warmup_frames is not None:
        check_warmup_frames(args.warmup_frames, "--warmup-frames")
    model = StateClassifier.load(args.weights)
    featurizer = DatasetFeaturizer(cache_dir=args.cache_dir, hands=_webcam_hands(args.hands))
    features = featurizer.featurize(args.dataset, label_map=args.label_map, split=args.split, limit=args.limit)
    view = args.view or FORMAT_VIEWS[features.format]
    crop_weight = _crop_weight(args.crop_weight, features.format == COCO and view == "front",
                               f"{features.format} seen from the {view} view")
    if crop_weight > 0:
        from engagement.classifier.crops import CropStateModel

        crops = CropStateModel.load(args.crop_weights)
        features.crop_probs = crops.predict_crops(featurizer.classroom_crops(args.dataset, args.label_map, args.limit).crops)
    per_image = features.format not in CROWD_FORMATS
    for option, wanted, applies in (("--persons", args.persons, per_image), ("--rooms", args.rooms, not per_image)):
        if wanted:
            features = _kept(features, option, _names(wanted), applies)
    report = _scored(model, features, args.baseline or default_baseline(features.dataset),
                     _threshold(args.uncertain_below, crop_weight), args.view, args.warmup_frames, crop_weight)
    print(f"engagement: {args.dataset}: format {features.format} ({features.dataset}), {report['view']} view, "
          f"{len(features.y)} labelled rows, coverage {report['coverage']:.3f}", file=sys.stderr)
    print(json.dumps(report, indent=2))
    return 0


def _crop_weight(given: float | None, front: bool, what: str) -> float:
    """``--crop-weight``: by default the lecture pipeline's where the crop model applies (a front view of a classroom),
    else 0; a positive share elsewhere is refused."""
    from engagement.config import load_pipeline
    from engagement.errors import UserError

    if given is None:
        return load_pipeline("lecture").classifier.crop_weight if front else 0.0
    if given > 0 and not front:
        raise UserError(f"--crop-weight: the crop model scores classrooms seen from the front; this is {what}: "
                        "give 0 or leave it out")
    return given


def _kept(features: Any, option: str, wanted: list[str], applies: bool) -> Any:
    """The rows of the wanted groups (persons, or COCO rooms): ``1`` also names ``person1``."""
    import numpy as np

    from engagement.errors import UserError

    if not applies:
        raise UserError(f"{option} does not apply to the {features.format} format "
                        "(--persons: csv formats, --rooms: COCO classroom sets)")
    keep = np.isin(features.groups, [*wanted, *(f"person{w}" for w in wanted)])
    if not keep.any():
        found = ", ".join(sorted(set(features.groups.tolist()))[:20])
        raise UserError(f"{option} {','.join(wanted)}: no such rows; found: {found}")
    return features.subset(keep)


def _predict(args: argparse.Namespace) -> int:
    from engagement.classifier.predict import predict_table
    from engagement.errors import UserError

    try:
        tiles = tuple(int(n) for n in args.tiles.lower().split("x"))
    except ValueError:
        tiles = ()
    if len(tiles) != 2 or not 1 <= min(tiles) <= max(tiles) <= MAX_TILES:
        raise UserError(f"--tiles must be ROWSxCOLS of 1 to {MAX_TILES} each, e.g. 3x3, got {args.tiles!r}")
    if args.hands and tiles != (1, 1):
        raise UserError("--hands runs on whole frames: leave out --tiles (or give 1x1)")
    out = out_path(args.out, ".csv", (".csv",), others={"the input": args.path, "--weights": args.weights,
                                                        "--crop-weights": args.crop_weights})
    crop_weight = _crop_weight(args.crop_weight, args.view == "front", f"the {args.view} view")
    table = predict_table(args.path, args.every_s, args.weights, tiles, _threshold(args.uncertain_below, crop_weight),
                          args.view, _webcam_hands(args.hands), crop_weight, args.crop_weights)
    write_atomic(out, lambda stream: stream.write(table.to_csv(index=False).encode()))
    people = int(table["person_found"].sum())
    print(f"engagement: {len(table)} rows ({people} detected people) -> {out}", file=sys.stderr)
    return 0


def _webcam_hands(wanted: bool) -> "HandsConfig | None":
    """``--hands``: the webcam pipeline's ``hands`` settings (the one pipeline that runs the hand models), or None."""
    from engagement.config import load_pipeline

    return load_pipeline("webcam").hands if wanted else None


def _threshold(value: float | None, crop_weight: float = 0.0) -> float:
    """``--uncertain-below``, by default the single-frame threshold (evaluate and predict score unsmoothed frames), or
    the lecture pipeline's when the crop model is mixed in (chosen on the mixed rows); a probability."""
    from engagement.config import UNCERTAIN_BELOW, load_pipeline
    from engagement.errors import UserError

    if value is None:
        return load_pipeline("lecture").classifier.uncertain_below if crop_weight > 0 else UNCERTAIN_BELOW
    if not 0.0 <= value <= 1.0:
        raise UserError(f"--uncertain-below must be a probability from 0 to 1, got {value}")
    return value


def _scored(model: Any, features: Any, baseline: str, uncertain_below: float,
            view: str | None = None, warmup_frames: int | None = None, crop_weight: float = 0.0) -> dict[str, Any]:
    """``evaluate`` on the rows with relative features against the given ``baseline``, which it records, with
    rows below ``uncertain_below`` called uncertain (wrong), seen from ``view`` (default: the format's), rows
    of a young baseline sent to the warm-up model (``warmup_frames``, default: ``default_warmup``) and the crop
    model mixed in by ``crop_weight``."""
    from engagement.classifier.train import default_warmup, evaluate, with_baseline

    warmup_frames = default_warmup(features.dataset) if warmup_frames is None else warmup_frames
    report = evaluate(model, with_baseline(features, baseline), uncertain_below=uncertain_below, view=view,
                      warmup_frames=warmup_frames, crop_weight=crop_weight)
    routed = model.warmup is not None and features.baseline_frames is not None
    return {"baseline": baseline, "warmup_frames": warmup_frames if routed else 0, **report}
