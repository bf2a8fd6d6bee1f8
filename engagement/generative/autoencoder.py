"""Deterministic autoencoder trained on reconstruction loss. It has no prior, so sampling draws latent codes from a
diagonal Gaussian fitted to each class's encoded training rows."""

from __future__ import annotations

import torch
from torch import nn

from engagement.generative.modules import class_latent_gaussians, mlp, sample_class_latents
from engagement.generative.training import TrainingData, fit

DEFAULT_STEPS = 3000


class Autoencoder(nn.Module):
    def __init__(self, dim: int, num_classes: int, latent_dim: int = 16, hidden: int = 256) -> None:
        super().__init__()
        self.config = {"dim": dim, "num_classes": num_classes, "latent_dim": latent_dim, "hidden": hidden}
        self.encoder = mlp([dim, hidden, hidden, latent_dim])
        self.decoder = mlp([latent_dim, hidden, hidden, dim])
        self.register_buffer("class_latent_mean", torch.zeros(num_classes, latent_dim))
        self.register_buffer("class_latent_std", torch.ones(num_classes, latent_dim))


MODEL_CLASS = Autoencoder


def reconstruction_loss(model: Autoencoder, x: torch.Tensor) -> torch.Tensor:
    return nn.functional.mse_loss(model.decoder(model.encoder(x)), x)


def train(data: TrainingData, *, steps: int = DEFAULT_STEPS, seed: int = 0, progress: bool = False) -> Autoencoder:
    torch.manual_seed(seed)
    model = Autoencoder(data.dim, data.num_classes)
    fit(model, lambda x, y, generator: reconstruction_loss(model, x), data, steps=steps, seed=seed, progress=progress)
    with torch.no_grad():
        means, stds = class_latent_gaussians(model.encoder(data.x), data.y, data.num_classes)
    model.class_latent_mean.copy_(means)
    model.class_latent_std.copy_(stds)
    return model


@torch.no_grad()
def sample(model: Autoencoder, labels: torch.Tensor, *, seed: int = 0, progress: bool = False) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    # 1. Draw latent codes from each requested class's Gaussian.
    latents = sample_class_latents(model.class_latent_mean, model.class_latent_std, labels, generator)
    # 2. Decode them.
    return model.decoder(latents)
