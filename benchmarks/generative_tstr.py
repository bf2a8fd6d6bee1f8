"""Train on synthetic, test on real: each class-conditional generator is trained on the 70% split of scikit-learn's
digits (random_state 0), samples 100 rows per class, a logistic regression is fit on those samples only and scored
on the real 30% split. Prints a table (accuracy, training time, sampling time per 1000 samples, nearest-neighbour
distances to the training rows as a memorisation/diversity check) and writes JSON.

    python benchmarks/generative_tstr.py --json /tmp/generative/tstr.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.neighbors import NearestNeighbors

from engagement.generative import model_module
from engagement.generative.data import load_digits
from engagement.generative.training import TrainingData
from engagement.errors import run_reporting_errors

SAMPLES_PER_CLASS = 100
# (row name, model, sampling options): each model trains with its default steps once; the DDIM row reuses the DDPM.
RUNS = [
    ("cVAE", "cvae", {}),
    ("DDPM (UNet2DModel, 1000 steps)", "ddpm", {"sampler": "ddpm"}),
    ("DDIM (same model, 50 steps, eta 0)", "ddpm", {"sampler": "ddim", "steps": 50, "eta": 0.0}),
    ("score network + annealed Langevin", "score", {}),
    ("latent diffusion (VAE z=16, DDIM 50)", "latent-diffusion", {}),
]


def logistic_accuracy(X_train: np.ndarray, y_train: np.ndarray, X_test: np.ndarray, y_test: np.ndarray) -> float:
    classifier = LogisticRegression(max_iter=5000).fit(X_train / 16.0, y_train)
    return float(classifier.score(X_test / 16.0, y_test))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, default=Path("generative_tstr.json"))
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on shared cores)")
    parser.add_argument("--models", nargs="*", help="only rows whose model is in this list")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    X, y, space = load_digits()
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=0)
    data = TrainingData.from_arrays(space.normalize(X_train), y_train, space.num_classes, space.image_shape)
    neighbours = NearestNeighbors(n_neighbors=1).fit(X_train)
    real_distance = float(neighbours.kneighbors(X_test)[0].mean())
    labels = torch.arange(space.num_classes).repeat_interleave(SAMPLES_PER_CLASS)

    rows = [{"model": "real data (ceiling)", "accuracy": logistic_accuracy(X_train, y_train, X_test, y_test),
             "train_s": None, "sample_s_per_1000": None, "nn_distance": real_distance}]
    print(f"{'model':40s} {'TSTR acc':>8s} {'train s':>8s} {'sample s/1000':>13s} {'NN dist':>8s}", flush=True)
    trained: dict[str, tuple[torch.nn.Module, float]] = {}
    for name, model_name, options in RUNS:
        if args.models and model_name not in args.models:
            continue
        module = model_module(model_name)
        steps = module.DEFAULT_STEPS
        if model_name not in trained:
            start = time.perf_counter()
            trained[model_name] = (module.train(data, steps=steps, seed=0), time.perf_counter() - start)
        model, train_seconds = trained[model_name]
        start = time.perf_counter()
        synthetic = space.denormalize(module.sample(model, labels, seed=1, **options).numpy())
        sample_seconds = (time.perf_counter() - start) * 1000 / len(labels)
        rows.append({
            "model": name, "steps": steps, "sampling": options,
            "accuracy": logistic_accuracy(synthetic, labels.numpy(), X_test, y_test),
            "train_s": train_seconds, "sample_s_per_1000": sample_seconds,
            "nn_distance": float(neighbours.kneighbors(synthetic)[0].mean()),
        })
        row = rows[-1]
        print(f"{name:40s} {row['accuracy']:8.3f} {train_seconds:8.1f} {sample_seconds:13.1f} {row['nn_distance']:8.2f}", flush=True)
    print(f"{rows[0]['model']:40s} {rows[0]['accuracy']:8.3f} {'':8s} {'':13s} {real_distance:8.2f}  (NN dist: real test rows)")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"threads": args.threads, "samples_per_class": SAMPLES_PER_CLASS, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    raise SystemExit(run_reporting_errors(main, "generative_tstr"))
