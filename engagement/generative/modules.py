"""Small torch building blocks shared by the model files: MLPs, the vector denoiser and per-class latent Gaussians."""

from __future__ import annotations

import torch
from diffusers.models.embeddings import get_timestep_embedding
from torch import nn


def mlp(sizes: list[int]) -> nn.Sequential:
    """Linear layers with SiLU between them (none after the last)."""
    layers: list[nn.Module] = []
    for index, (size_in, size_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(size_in, size_out))
        if index < len(sizes) - 2:
            layers.append(nn.SiLU())
    return nn.Sequential(*layers)


class VectorDenoiser(nn.Module):
    """Noise predictor for vectors: residual MLP conditioned on a sinusoidal timestep embedding plus a class embedding.

    Used by the vector DDPM, the score network (timestep = noise-level index) and latent diffusion."""

    def __init__(self, dim: int, num_classes: int, hidden: int = 512, depth: int = 3, time_embed_dim: int = 128) -> None:
        super().__init__()
        self.time_embed_dim = time_embed_dim
        self.input = nn.Linear(dim, hidden)
        self.time_embedding = mlp([time_embed_dim, hidden, hidden])
        self.class_embedding = nn.Embedding(num_classes, hidden)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
            for _ in range(depth)
        )
        self.output = nn.Sequential(nn.LayerNorm(hidden), nn.SiLU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, class_labels: torch.Tensor) -> torch.Tensor:
        timesteps = torch.as_tensor(timesteps, dtype=torch.float32).expand(x.shape[0])
        embedding = get_timestep_embedding(timesteps, self.time_embed_dim, flip_sin_to_cos=True, downscale_freq_shift=0)
        condition = self.time_embedding(embedding) + self.class_embedding(class_labels)
        hidden = self.input(x)
        for block in self.blocks:
            hidden = hidden + block(hidden + condition)
        return self.output(hidden)


def class_latent_gaussians(latents: torch.Tensor, labels: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class mean and std of latent codes (standard normal for a class without rows), to sample a chosen class
    from models whose latent space is not label-conditioned."""
    means = torch.zeros(num_classes, latents.shape[1])
    stds = torch.ones(num_classes, latents.shape[1])
    for label in range(num_classes):
        rows = latents[labels == label]
        if len(rows) > 0:
            means[label] = rows.mean(dim=0)
        if len(rows) > 1:
            stds[label] = rows.std(dim=0).clamp_min(1e-3)
    return means, stds


def sample_class_latents(means: torch.Tensor, stds: torch.Tensor, labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Draw one latent code per label from that class's diagonal Gaussian."""
    noise = torch.randn((len(labels), means.shape[1]), generator=generator)
    return means[labels] + stds[labels] * noise
