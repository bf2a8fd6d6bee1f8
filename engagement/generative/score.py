"""Score-based generative model (NCSN, Song & Ermon 2019): a noise-conditional score network s(x, sigma_i, y) trained
by denoising score matching over geometric noise levels, sampled with annealed Langevin dynamics.

The network predicts the standardized noise eps; the score is s = -eps / sigma, so the sigma^2-weighted DSM loss
is a plain MSE on eps."""

from __future__ import annotations

import torch
from torch import nn
from tqdm import tqdm

from engagement.generative.modules import VectorDenoiser
from engagement.generative.schedulers import NUM_TRAIN_TIMESTEPS, check_sampling_steps, geometric_noise_levels
from engagement.generative.training import TrainingData, fit, randn_like

DEFAULT_STEPS = 4000
# Smallest noise level: digits pixels are 0.125 apart in [-1, 1], and finer noise levels only cost Langevin steps
# (TSTR on digits 0.937 with 0.01, 0.941 with 0.05, same sampler).
SIGMA_MIN = 0.05


class NoiseConditionalScoreNetwork(nn.Module):
    def __init__(
        self, dim: int, num_classes: int, sigma_max: float = 10.0, sigma_min: float = SIGMA_MIN, num_levels: int = 20, hidden: int = 512
    ) -> None:
        super().__init__()
        self.config = {"dim": dim, "num_classes": num_classes, "sigma_max": sigma_max, "sigma_min": sigma_min,
                       "num_levels": num_levels, "hidden": hidden}
        self.network = VectorDenoiser(dim, num_classes, hidden=hidden)
        self.register_buffer("sigmas", geometric_noise_levels(sigma_max, sigma_min, num_levels))

    def score(self, x: torch.Tensor, level: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """grad_x log p_sigma(x | y) at noise level index ``level`` (per row)."""
        return -self.predict_noise(x, level, labels) / self.sigmas[level].unsqueeze(1)

    def predict_noise(self, x: torch.Tensor, level: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        # Level indices are spread over the timestep range the sinusoidal embedding was designed for.
        timesteps = level.float() * (NUM_TRAIN_TIMESTEPS / len(self.sigmas))
        return self.network(x, timesteps, labels)


MODEL_CLASS = NoiseConditionalScoreNetwork


def denoising_score_matching_loss(
    model: NoiseConditionalScoreNetwork, x: torch.Tensor, labels: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    level = torch.randint(0, len(model.sigmas), (x.shape[0],), generator=generator)
    noise = randn_like(x, generator)
    noisy = x + model.sigmas[level].unsqueeze(1) * noise
    return nn.functional.mse_loss(model.predict_noise(noisy, level, labels), noise)


def langevin_step(x: torch.Tensor, score: torch.Tensor, step_size: float, noise: torch.Tensor) -> torch.Tensor:
    """One Langevin update x + (a/2) * score + sqrt(a) * z."""
    return x + 0.5 * step_size * score + step_size**0.5 * noise


def largest_pairwise_distance(x: torch.Tensor, max_rows: int = 1000) -> float:
    """sigma_max heuristic (Song & Ermon 2020): the largest distance between training rows."""
    rows = x[:max_rows]
    return float(torch.cdist(rows, rows).max())


def train(data: TrainingData, *, steps: int = DEFAULT_STEPS, seed: int = 0, progress: bool = False) -> NoiseConditionalScoreNetwork:
    torch.manual_seed(seed)
    model = NoiseConditionalScoreNetwork(data.dim, data.num_classes, sigma_max=max(largest_pairwise_distance(data.x), 1.0))
    fit(model, lambda x, y, generator: denoising_score_matching_loss(model, x, y, generator), data,
        steps=steps, seed=seed, progress=progress, description="score network")
    return model


@torch.no_grad()
def sample(
    model: NoiseConditionalScoreNetwork,
    labels: torch.Tensor,
    *,
    seed: int = 0,
    steps: int = 5,
    step_ratio: float = 0.5,
    progress: bool = False,
) -> torch.Tensor:
    """Annealed Langevin dynamics with ``steps`` updates per noise level and step size ``step_ratio * sigma_i^2``."""
    check_sampling_steps(steps)
    generator = torch.Generator().manual_seed(seed)
    # 1. Start from the widest noise distribution N(0, sigma_1^2 I).
    x = torch.randn((len(labels), model.config["dim"]), generator=generator) * model.sigmas[0]
    for level in tqdm(range(len(model.sigmas)), desc="Langevin", disable=not progress, unit="level"):
        # 2. Step size shrinks with the noise level so every level mixes at the same relative rate.
        step_size = step_ratio * float(model.sigmas[level]) ** 2
        level_index = torch.full((len(labels),), level, dtype=torch.long)
        for _ in range(steps):
            # 3. Langevin update along the class-conditional score at this level.
            x = langevin_step(x, model.score(x, level_index, labels), step_size, randn_like(x, generator))
    # 4. Remove the last level's noise with one Tweedie step: x + sigma_L^2 * score.
    last = torch.full((len(labels),), len(model.sigmas) - 1, dtype=torch.long)
    return x + model.sigmas[-1] ** 2 * model.score(x, last, labels)
