"""Generative models for small labelled data: autoencoder, VAE, conditional VAE, DDPM/DDIM, score-based model and
latent diffusion, plus synthetic-data augmentation for the engagement classifier (``augment.synthesize``).

Each model lives in its own module exposing a ``torch.nn.Module`` class with a JSON-able ``config``,
``train(data, ...)`` and ``sample(model, labels, ...)``; heavy imports stay inside the modules."""

from __future__ import annotations

import importlib
from types import ModuleType

from engagement.errors import UserError

MODEL_MODULES = {
    "autoencoder": "autoencoder",
    "vae": "vae",
    "cvae": "cvae",
    "ddpm": "ddpm",
    "score": "score",
    "latent-diffusion": "latent_diffusion",
}


def model_module(name: str) -> ModuleType:
    """The module implementing model ``name``; an unknown name is a user error."""
    if name not in MODEL_MODULES:
        raise UserError(f"unknown generative model {name!r}; choose one of: {', '.join(MODEL_MODULES)}")
    return importlib.import_module(f"engagement.generative.{MODEL_MODULES[name]}")
