"""Augmentation ablation: macro-F1 and minority-state F1 on held-out real data, over several seeds.

Every method fits on the same real training rows (cctv train split; webcam persons other than the
held-out ones); synthetic rows only ever join the training side. Held-out: cctv val split, webcam
persons 1 and 2.

    python benchmarks/augmentation_ablation.py --cctv ../shared/datasets/cctv_headstate \
        --webcam ../shared/datasets/webcam_behaviour --seeds 0 1 2 [--methods none class_weight smote cvae ddpm]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from engagement.classifier.cli import DEFAULT_CACHE
from engagement.classifier.data import DatasetFeaturizer
from engagement.classifier.train import evaluate, fit_on, minority_f1, split_webcam


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cctv", default="../shared/datasets/cctv_headstate")
    parser.add_argument("--webcam", default="../shared/datasets/webcam_behaviour")
    parser.add_argument("--test-persons", default="1,2")
    parser.add_argument("--methods", nargs="+", default=["none", "class_weight", "smote", "cvae", "ddpm"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--cache-dir", default=str(DEFAULT_CACHE))
    parser.add_argument("--json", help="also write the raw results here")
    args = parser.parse_args()

    featurizer = DatasetFeaturizer(cache_dir=args.cache_dir)
    cctv_train = featurizer.featurize(args.cctv, split="train")
    cctv_test = featurizer.featurize(args.cctv, split="val")
    webcam_train, webcam_test = split_webcam(featurizer.featurize(args.webcam), args.test_persons.split(","))
    results = []
    for method in args.methods:
        for seed in args.seeds:
            started = time.perf_counter()
            try:
                model, counts = fit_on([cctv_train, webcam_train], method, seed)
            except Exception as error:  # a generator that fails is reported, not hidden
                results.append({"method": method, "seed": seed, "error": f"{type(error).__name__}: {error}"})
                print(json.dumps(results[-1]), flush=True)
                continue
            row = {"method": method, "seed": seed, "synthetic_rows": counts["synthetic"],
                   "fit_s": round(time.perf_counter() - started, 1)}
            for features in (cctv_test, webcam_test):
                report = evaluate(model, features)
                row[f"{features.dataset}_macro_f1"] = report["model"]["macro_f1"]
                row[f"{features.dataset}_minority_f1"] = minority_f1(report)
            results.append(row)
            print(json.dumps(row), flush=True)
    print(summary_table(results))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)


def summary_table(results: list[dict]) -> str:
    """Mean +- std over seeds per method, as a markdown table."""
    columns = ["cctv_headstate_macro_f1", "cctv_headstate_minority_f1",
               "webcam_behaviour_macro_f1", "webcam_behaviour_minority_f1"]
    lines = ["| method | seeds | " + " | ".join(columns) + " |", "|" + "---|" * (len(columns) + 2)]
    for method in dict.fromkeys(r["method"] for r in results):
        rows = [r for r in results if r["method"] == method and "error" not in r]
        if not rows:
            error = next(r["error"] for r in results if r["method"] == method)
            lines.append(f"| {method} | 0 | failed: {error} |" + " |" * (len(columns) - 1))
            continue
        cells = [f"{np.mean([r[c] for r in rows]):.3f} ± {np.std([r[c] for r in rows]):.3f}" for c in columns]
        lines.append(f"| {method} | {len(rows)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
