"""What every model file shares: the training batch source, the training loop and save/load of a model directory."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from engagement.errors import UserError, error_line
from engagement.files import write_atomic

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"

LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Generator], torch.Tensor]


@dataclass(frozen=True)
class TrainingData:
    """Normalized training rows (n, d), labels in 0..K-1, and the image shape when rows are flattened images."""

    x: torch.Tensor
    y: torch.Tensor
    num_classes: int
    image_shape: tuple[int, int] | None = None

    @classmethod
    def from_arrays(cls, x: np.ndarray, y: np.ndarray, num_classes: int, image_shape: tuple[int, int] | None = None) -> "TrainingData":
        return cls(torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.long), num_classes, image_shape)

    @property
    def dim(self) -> int:
        return int(self.x.shape[1])


@contextmanager
def single_threaded() -> Iterator[None]:
    """Run torch on one thread: these models are small, and two threads thrash badly when the cores are shared
    (measured 20x slower cVAE steps on this project's busy 2-core machine)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def fit(
    model: nn.Module,
    loss_fn: LossFn,
    data: TrainingData,
    *,
    steps: int,
    seed: int,
    batch_size: int = 128,
    learning_rate: float = 1e-3,
    parameters: list[nn.Parameter] | None = None,
    ema_decay: float | None = None,
    progress: bool = False,
    description: str = "training",
) -> float:
    """Minimise ``loss_fn(x_batch, y_batch, generator)`` with AdamW and cosine decay; returns the last loss.

    With ``ema_decay`` the trained parameters end as their exponential moving average over the steps
    (diffusers' ``EMAModel``), which gives diffusion models cleaner samples than the last iterate."""
    generator = torch.Generator().manual_seed(seed)
    parameters = parameters or list(model.parameters())
    optimizer = torch.optim.AdamW(parameters, lr=learning_rate, weight_decay=0.0)
    ema = None
    if ema_decay is not None:
        from diffusers.training_utils import EMAModel

        ema = EMAModel(parameters, decay=ema_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(steps, 1))
    model.train()
    loss = torch.tensor(float("nan"))
    with single_threaded():
        for _ in tqdm(range(steps), desc=description, disable=not progress, unit="step"):
            rows = torch.randint(len(data.x), (min(batch_size, len(data.x)),), generator=generator)
            loss = loss_fn(data.x[rows], data.y[rows], generator)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            if ema is not None:
                ema.step(parameters)
    if ema is not None:
        ema.copy_to(parameters)
    model.eval()
    return float(loss.detach())


def randn_like(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return torch.randn(x.shape, generator=generator, dtype=x.dtype)


def check_model_dir(directory: Path) -> None:
    """Refuse, before training, a ``--out`` that ``save_model`` must not write into: a file, or a folder holding
    anything but a generative model (retraining replaces one, and no file of someone else's is mixed with it)."""
    from engagement.generative import MODEL_MODULES

    if not directory.exists():
        return
    if not directory.is_dir():
        raise UserError(f"--out {directory}: a file, not a model folder")
    if not any(directory.iterdir()):
        return
    try:
        config = json.loads((directory / CONFIG_FILE).read_text())
    except (OSError, ValueError):  # none, unreadable, not UTF-8 or not JSON
        config = None
    if not (isinstance(config, dict) and config.get("model") in MODEL_MODULES):
        raise UserError(f"--out {directory}: a folder that is not empty and holds no generative model; give a new or "
                        "empty folder")


def save_model(directory: Path, model_name: str, model: nn.Module, metadata: dict) -> None:
    """Write ``model.safetensors`` then ``config.json`` (model name, constructor config, ``metadata``) atomically."""
    from safetensors.torch import save as serialize

    directory.mkdir(parents=True, exist_ok=True)
    weights = {key: tensor.contiguous() for key, tensor in model.state_dict().items()}
    write_atomic(directory / WEIGHTS_FILE, lambda stream: stream.write(serialize(weights)))
    config = {"model": model_name, "model_config": model.config, **metadata}
    write_atomic(directory / CONFIG_FILE, lambda stream: stream.write((json.dumps(config, indent=2) + "\n").encode()))


def load_model(directory: Path) -> tuple[str, nn.Module, dict]:
    """Rebuild a saved model from its directory; returns (model name, model in eval mode, full config)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_model as load_weights

    from engagement.generative import model_module

    config_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    if not config_path.is_file() or not weights_path.is_file():
        raise UserError(f"{directory} is not a trained generative model (needs {CONFIG_FILE} and {WEIGHTS_FILE})")
    try:
        config = json.loads(config_path.read_text())
        module = model_module(config["model"])
        model = module.MODEL_CLASS(**config["model_config"])
        load_weights(model, str(weights_path))
    except (json.JSONDecodeError, KeyError, TypeError, RuntimeError, SafetensorError) as error:
        # torch lists every mismatched tensor on lines of their own
        raise UserError(f"corrupt generative model in {directory}: {error_line(error)}") from None
    return config["model"], model.eval(), config
