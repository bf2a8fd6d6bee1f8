"""Conditional VAE: encoder q(z|x, y) and decoder p(x|z, y) both see the one-hot label, so a chosen class is sampled
by decoding prior draws z ~ N(0, I) with that label. Loss and training are the VAE's (see ``vae``)."""

from __future__ import annotations

import torch

from engagement.generative.training import TrainingData
from engagement.generative.vae import VAE, fit_vae, sample

DEFAULT_STEPS = 4000


class ConditionalVAE(VAE):
    conditional = True


MODEL_CLASS = ConditionalVAE


def train(data: TrainingData, *, steps: int = DEFAULT_STEPS, seed: int = 0, progress: bool = False) -> ConditionalVAE:
    torch.manual_seed(seed)
    return fit_vae(ConditionalVAE(data.dim, data.num_classes), data, steps=steps, seed=seed, progress=progress)


__all__ = ["ConditionalVAE", "MODEL_CLASS", "train", "sample"]
