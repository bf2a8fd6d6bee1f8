"""CLI commands of `engagement.generative`: ``generate train`` and ``generate sample``."""

from __future__ import annotations

import argparse
import inspect
import time
from pathlib import Path
from typing import BinaryIO

import numpy as np

from engagement.arguments import not_negative
from engagement.errors import UserError
from engagement.files import output_file, write_atomic

GRID_COLUMNS = 10
GRID_PIXEL_SIZE = 4  # screen pixels per image pixel: 8x8 digits are unreadable at 1:1
SAMPLE_FORMATS = (".npz", ".npy", ".csv", ".png")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this module's commands to the `engagement` parser."""
    from engagement.generative import MODEL_MODULES

    generate = subparsers.add_parser("generate", help="train generative models and sample synthetic data")
    commands = generate.add_subparsers(dest="generate_command", metavar="COMMAND", required=True)

    train = commands.add_parser("train", help="train a generative model and save it to a directory")
    train.add_argument("model", help=f"one of: {', '.join(MODEL_MODULES)}")
    train.add_argument("--data", required=True, help="'digits' or a feature .npz with X (n, d), y (n,) and optional classes")
    train.add_argument("--out", required=True, type=Path, help="model directory (config.json + model.safetensors)")
    train.add_argument("--steps", type=int, help="training steps (default: the model's)")
    train.add_argument("--seed", type=int, default=0)
    train.set_defaults(handler=run_train)

    sample = commands.add_parser("sample", help="sample synthetic rows from a trained model")
    sample.add_argument("model_dir", type=Path, metavar="DIR")
    sample.add_argument("--class", dest="class_name", help="class name or index (default: all classes in turn)")
    sample.add_argument("-n", type=int, default=100, help="number of samples")
    sample.add_argument("--out", required=True, type=Path,
                        help="written in the format its suffix names: .npz (X, y, classes), .npy (X only), .csv (a label column "
                             "then the features), .png (a grid of the samples, image data only)")
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--sampler", help="ddpm or ddim (DDPM models)")
    sample.add_argument("--steps", type=int, help="sampling steps (DDIM/DDPM/latent diffusion) or Langevin steps per level (score)")
    sample.add_argument("--eta", type=not_negative, help="DDIM eta (0 = deterministic)")
    sample.set_defaults(handler=run_sample)


def run_train(args: argparse.Namespace) -> int:
    from engagement.generative import model_module
    from engagement.generative.data import load_data
    from engagement.generative.training import TrainingData, check_model_dir, save_model

    module = model_module(args.model)
    steps = module.DEFAULT_STEPS if args.steps is None else args.steps
    if steps < 1:
        raise UserError(f"--steps must be positive, got {steps}")
    check_model_dir(args.out)
    X, y, space = load_data(args.data)
    data = TrainingData.from_arrays(space.normalize(X), y, space.num_classes, space.image_shape)
    start = time.perf_counter()
    model = module.train(data, steps=steps, seed=args.seed, progress=args.progress)
    training = {"data": args.data, "rows": len(X), "steps": steps, "seed": args.seed, "seconds": round(time.perf_counter() - start, 1)}
    save_model(args.out, args.model, model, {"data": space.to_json(), "training": training})
    print(f"saved {args.model} to {args.out}")
    return 0


def run_sample(args: argparse.Namespace) -> int:
    import torch

    from engagement.generative import model_module
    from engagement.generative.data import DataSpace
    from engagement.generative.training import load_model

    if args.n < 1:
        raise UserError(f"-n must be positive, got {args.n}")
    suffix = args.out.suffix.lower()
    if suffix not in SAMPLE_FORMATS:
        raise UserError(f"--out {args.out}: unknown format {suffix or '(no suffix)'}; use one of {', '.join(SAMPLE_FORMATS)}")
    output_file(args.out, make_folders=True)
    name, model, config = load_model(args.model_dir)
    module = model_module(name)
    space = DataSpace.from_json(config["data"])
    if args.class_name is None:
        labels = torch.arange(args.n) % space.num_classes
    else:
        labels = torch.full((args.n,), space.class_index(args.class_name), dtype=torch.long)
    options = {key: value for key, value in (("sampler", args.sampler), ("steps", args.steps), ("eta", args.eta)) if value is not None}
    accepted = inspect.signature(module.sample).parameters
    for key in options:
        if key not in accepted:
            raise UserError(f"model {name!r} does not take --{key}")
    samples = space.denormalize(module.sample(model, labels, seed=args.seed, progress=args.progress, **options).numpy())
    labels_array = labels.numpy()
    if suffix == ".png" and not space.image_shape:
        raise UserError(f"--out {args.out}: a .png grid needs image data; {name} was trained on feature rows (use .npz, .npy or .csv)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    classes = np.asarray(space.classes)
    writers = {
        ".npz": lambda handle: np.savez(handle, X=samples, y=labels_array, classes=classes),
        ".npy": lambda handle: np.save(handle, samples),
        ".csv": lambda handle: _save_csv(handle, samples, classes[labels_array]),
        ".png": lambda handle: _save_png(handle, image_grid(samples, labels_array, space.image_shape), space.value_range),
    }
    write_atomic(args.out, writers[suffix])
    print(f"wrote {len(samples)} samples to {args.out}")
    return 0


def _save_csv(stream: BinaryIO, samples: np.ndarray, labels: np.ndarray) -> None:
    import pandas as pd

    flat = samples.reshape(len(samples), -1)
    table = pd.DataFrame(flat, columns=[f"x{i}" for i in range(flat.shape[1])])
    table.insert(0, "label", labels)
    stream.write(table.to_csv(index=False).encode())


def image_grid(samples: np.ndarray, labels: np.ndarray, image_shape: tuple[int, int]) -> np.ndarray:
    """One row per sampled class, up to ``GRID_COLUMNS`` images each, separated by one blank pixel."""
    height, width = image_shape
    classes = np.unique(labels)
    grid = np.full((len(classes) * (height + 1), GRID_COLUMNS * (width + 1)), np.nan, dtype=np.float32)
    for row, label in enumerate(classes):
        for column, image in enumerate(samples[labels == label][:GRID_COLUMNS]):
            top, left = row * (height + 1), column * (width + 1)
            grid[top:top + height, left:left + width] = image.reshape(height, width)
    return grid


def _save_png(stream: BinaryIO, grid: np.ndarray, value_range: tuple[float, float] | None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    low, high = value_range or (float(np.nanmin(grid)), float(np.nanmax(grid)))
    enlarged = np.repeat(np.repeat(np.nan_to_num(grid, nan=low), GRID_PIXEL_SIZE, axis=0), GRID_PIXEL_SIZE, axis=1)
    plt.imsave(stream, enlarged, cmap="gray_r", vmin=low, vmax=high, format="png")
