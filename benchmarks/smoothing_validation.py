"""How long to smooth states over in a webcam session: chosen on validation persons, not on the session check.

Each webcam training person (all but the held-out ones) is left out in turn, exactly as the validation folds of
``augmentation_ablation.py`` do; the model fits on the rest. The left-out person's labelled frames are played as
one session, in the order the calibration stream uses (``person_streams``: clip after clip, frames in recorded
order), at ``--fps`` frames per second, through ``StateSmoother`` with each time constant. The model is read
as the webcam pipeline reads it (webcam view, webcam labels only), with the person's relative features against
the running baseline (live) and against the whole session (a recording, ``classifier.baseline: session``).
The fit follows the shipped recipe (``engagement classifier train``): clabehavior and the engagement_levels
training people fit beside the cctv and webcam rows unless ``--clabehavior ''`` / ``--levels ''``. Reported per
baseline and time constant, as mean over folds and seeds: the per-frame macro-F1 of the smoothed state, and the
share of clips (one behaviour each, 1-7 s) whose most frequent smoothed state is the clip's state, which is what
``webcam_segments.py`` checks per segment. Rows whose baseline is younger than ``--warmup-frames`` face frames go
to the warm-up model, as in the pipeline (0: one network, fitted without a warm-up model).

With ``--thresholds`` it also gives, at the pipeline's time constant (``--threshold-tau``), the per-frame macro-F1
with a smoothed row below each threshold called uncertain and counted as wrong, and the share called uncertain:
the pipeline shows ``uncertain`` after smoothing, where an averaged, changing state is less sure than one frame.

    python benchmarks/smoothing_validation.py --taus 0 0.5 1 2 3 --seeds 0 1
    python benchmarks/smoothing_validation.py --taus 1 --thresholds 0 0.3 0.35 0.4 0.45 --seeds 0 1 2
"""

from __future__ import annotations

import argparse

import numpy as np

from augmentation_ablation import validation_folds
from engagement.classifier.cli import DEFAULT_CACHE
from engagement.classifier.data import STREAM_SEED, WEBCAM, DatasetFeaturizer, FeatureSet, person_streams
from engagement.classifier.train import (
    ENSEMBLE_SIZE, LEVEL_TEST_PERSONS, UNSURE, dataset_states, fit_on, level_training_rows, metrics, split_persons,
    with_settled_baselines,
)
from engagement.config import load_pipeline
from engagement.features import FRAME_FEATURES, warming_up
from engagement.states import StateSmoother
from engagement.errors import run_reporting_errors


def smoothed(probs: np.ndarray, window_s: float, fps: float) -> np.ndarray:
    """The rows' probabilities after smoothing them as one track's frames at ``fps``."""
    smoother = StateSmoother(window_s)
    track = np.array([0])
    return np.array([smoother.update(track, row[None], i / fps)[0] for i, row in enumerate(probs)])


def shown_states(probs: np.ndarray, uncertain_below: float = 0.0) -> np.ndarray:
    """Argmax state per row, ``UNSURE`` where its probability is below ``uncertain_below``."""
    return np.where(probs.max(axis=1) < uncertain_below, UNSURE, probs.argmax(axis=1))


def clip_match_share(states: np.ndarray, truth: np.ndarray, clips: np.ndarray) -> float:
    """Share of clips whose most frequent predicted state is the clip's (single) true state."""
    matches = [np.bincount(states[clips == clip]).argmax() == truth[clips == clip][0] for clip in np.unique(clips)]
    return float(np.mean(matches))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cctv", default="../shared/datasets/cctv_headstate")
    parser.add_argument("--webcam", default="../shared/datasets/webcam_behaviour")
    parser.add_argument("--clabehavior", default="../shared/datasets/clabehavior", help="'' to fit without it")
    parser.add_argument("--levels", default="../shared/datasets/engagement_levels", help="'' to fit without it")
    parser.add_argument("--test-persons", default="1,2", help="held-out persons, never used here")
    parser.add_argument("--taus", nargs="+", type=float, default=[0.0, 0.5, 1.0, 2.0, 3.0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--ensemble-size", type=int, default=ENSEMBLE_SIZE, help="MLPs averaged per fit (the card's "
                        "smoothing table: 1)")
    parser.add_argument("--fps", type=float, default=10.0, help="frame rate of the played session")
    webcam_pipeline = load_pipeline("webcam").classifier
    parser.add_argument("--warmup-frames", type=int, default=webcam_pipeline.warmup_frames,
                        help="default: the webcam pipeline's classifier.warmup_frames")
    parser.add_argument("--thresholds", nargs="*", type=float, default=[], help="uncertainty thresholds to sweep")
    parser.add_argument("--threshold-tau", type=float, default=webcam_pipeline.smoothing_s,
                        help="time constant of the threshold sweep (default: the webcam pipeline's smoothing_s)")
    parser.add_argument("--cache-dir", default=str(DEFAULT_CACHE))
    args = parser.parse_args()

    featurizer = DatasetFeaturizer(cache_dir=args.cache_dir)
    cctv_train = featurizer.featurize(args.cctv, split="train")
    webcam = featurizer.featurize(args.webcam)
    streams = person_streams(webcam.groups, webcam.clips, STREAM_SEED)  # the order the relative features saw
    webcam_train, _ = split_persons(webcam, args.test_persons.split(","))
    extra: list[FeatureSet] = []
    if args.clabehavior:
        classroom = featurizer.featurize(args.clabehavior)
        extra.append(classroom.subset(classroom.y >= 0))
    if args.levels:
        extra.append(level_training_rows(split_persons(featurizer.featurize(args.levels), LEVEL_TEST_PERSONS)[0]))
    labels = dataset_states(webcam.dataset)
    baselines = ("running", "session")
    scores: dict[tuple[str, float], list[tuple[float, float]]] = {(b, tau): [] for b in baselines for tau in args.taus}
    swept: dict[tuple[str, float], list[tuple[float, float]]] = {(b, t): [] for b in baselines for t in args.thresholds}
    for seed in args.seeds:
        for fit_sets, eval_sets in validation_folds(cctv_train, webcam_train):
            model, _ = fit_on(fit_sets + extra, "class_weight", seed, ensemble_size=args.ensemble_size,
                              warmup=args.warmup_frames > 0)
            webcam_model = model.only_labels_of(WEBCAM).for_view("webcam")
            person = str(eval_sets[1].groups[0])
            rows = streams[person][webcam.covered[streams[person]]]  # every webcam frame has a person so far
            played = webcam.subset(rows)
            for baseline, features in zip(baselines, (played, with_settled_baselines(played))):
                warming = warming_up(features.X[:, :len(FRAME_FEATURES)], features.baseline_frames, args.warmup_frames)
                probs = webcam_model.predict_proba(features.X, warming)
                for tau in args.taus:
                    states = shown_states(smoothed(probs, tau, args.fps))
                    scores[baseline, tau].append((metrics(played.y, states, labels)["macro_f1"],
                                                  clip_match_share(states, played.y, played.clips)))
                at_tau = smoothed(probs, args.threshold_tau, args.fps)
                for threshold in args.thresholds:
                    report = metrics(played.y, shown_states(at_tau, threshold), labels)
                    swept[baseline, threshold].append((report["macro_f1"], report["uncertain_share"]))
            print(f"seed {seed}, {person}: done", flush=True)
    print("| baseline | smoothing_s | frame macro-F1 | clips matched | runs |\n|---|---|---|---|---|")
    for (baseline, tau), values in scores.items():
        f1, matched = np.array(values).T
        print(f"| {baseline} | {tau:g} | {f1.mean():.3f} ± {f1.std():.3f} | {matched.mean():.3f} ± {matched.std():.3f} "
              f"| {len(values)} |")
    if args.thresholds:
        print(f"\nsmoothing_s {args.threshold_tau:g}, uncertain counted as wrong\n"
              "| baseline | uncertain_below | frame macro-F1 | share uncertain | runs |\n|---|---|---|---|---|")
        for (baseline, threshold), values in swept.items():
            f1, unsure = np.array(values).T
            print(f"| {baseline} | {threshold:g} | {f1.mean():.3f} ± {f1.std():.3f} | {unsure.mean():.3f} | {len(values)} |")


if __name__ == "__main__":
    raise SystemExit(run_reporting_errors(main, "smoothing_validation"))
