"""Variational autoencoder: Gaussian encoder q(z|x), reparameterized z = mu + sigma * eps, Gaussian decoder with a
learned global noise scale (a BCE or fixed-scale decoder collapses samples to class means), loss = reconstruction
+ KL. The unconditional VAE samples a chosen class from a Gaussian fitted to that class's posterior means;
``cvae.ConditionalVAE`` conditions encoder and decoder on the label instead."""

from __future__ import annotations

import math

import torch
from torch import nn

from engagement.generative.modules import class_latent_gaussians, mlp, sample_class_latents
from engagement.generative.training import TrainingData, fit, randn_like

DEFAULT_STEPS = 4000
# Floor of the decoder's noise scale (normalized units). Lower floors let the decoder overfit: on digits the learned
# scale fell to the 0.05 floor after 8000 steps and TSTR dropped to 0.924; at 4000 steps TSTR was 0.937 with floor
# 0.05 or 0.2, 0.944 with 0.3, 0.943 with 0.4.
MIN_LOG_SIGMA = math.log(0.3)


class VAE(nn.Module):
    conditional = False

    def __init__(self, dim: int, num_classes: int, latent_dim: int = 16, hidden: int = 512) -> None:
        super().__init__()
        self.config = {"dim": dim, "num_classes": num_classes, "latent_dim": latent_dim, "hidden": hidden}
        label_dim = num_classes if self.conditional else 0
        self.num_classes = num_classes
        self.encoder = mlp([dim + label_dim, hidden, hidden, 2 * latent_dim])
        self.decoder = mlp([latent_dim + label_dim, hidden, hidden, dim])
        self.log_sigma = nn.Parameter(torch.zeros(()))
        self.register_buffer("class_latent_mean", torch.zeros(num_classes, latent_dim))
        self.register_buffer("class_latent_std", torch.ones(num_classes, latent_dim))

    def _with_label(self, tensor: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if not self.conditional:
            return tensor
        return torch.cat([tensor, nn.functional.one_hot(labels, self.num_classes).float()], dim=1)

    def encode(self, x: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean and log-variance."""
        mu, logvar = self.encoder(self._with_label(x, labels)).chunk(2, dim=1)
        return mu, logvar.clamp(-12.0, 6.0)

    def decode(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.decoder(self._with_label(z, labels))


MODEL_CLASS = VAE


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """z = mu + sigma * eps, differentiable in mu and sigma."""
    return mu + torch.exp(0.5 * logvar) * noise


def vae_loss_terms(
    x: torch.Tensor, x_hat: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, log_sigma: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row mean of the Gaussian negative log-likelihood (up to a constant) and of KL(q(z|x) || N(0, I))."""
    sigma2 = torch.exp(2 * log_sigma)
    reconstruction = ((x - x_hat) ** 2 / (2 * sigma2) + log_sigma).sum(dim=1).mean()
    kl = 0.5 * (mu**2 + logvar.exp() - 1 - logvar).sum(dim=1).mean()
    return reconstruction, kl


def vae_loss(model: VAE, x: torch.Tensor, labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    mu, logvar = model.encode(x, labels)
    z = reparameterize(mu, logvar, randn_like(mu, generator))
    reconstruction, kl = vae_loss_terms(x, model.decode(z, labels), mu, logvar, model.log_sigma.clamp_min(MIN_LOG_SIGMA))
    return reconstruction + kl


def fit_vae(model: VAE, data: TrainingData, *, steps: int, seed: int, progress: bool = False) -> VAE:
    """Train ``model`` (VAE or conditional VAE) and fit the per-class Gaussians of its posterior means."""
    fit(model, lambda x, y, generator: vae_loss(model, x, y, generator), data, steps=steps, seed=seed, progress=progress, description="VAE")
    with torch.no_grad():
        means, stds = class_latent_gaussians(model.encode(data.x, data.y)[0], data.y, data.num_classes)
    model.class_latent_mean.copy_(means)
    model.class_latent_std.copy_(stds)
    return model


def train(data: TrainingData, *, steps: int = DEFAULT_STEPS, seed: int = 0, progress: bool = False) -> VAE:
    torch.manual_seed(seed)
    return fit_vae(VAE(data.dim, data.num_classes), data, steps=steps, seed=seed, progress=progress)


@torch.no_grad()
def sample(model: VAE, labels: torch.Tensor, *, seed: int = 0, progress: bool = False) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    # 1. Draw latent codes: from the prior N(0, I) when the decoder knows the label, else from the class's Gaussian.
    if model.conditional:
        latents = torch.randn((len(labels), model.config["latent_dim"]), generator=generator)
    else:
        latents = sample_class_latents(model.class_latent_mean, model.class_latent_std, labels, generator)
    # 2. Decode to the mean of p(x|z, label).
    return model.decode(latents, labels)
