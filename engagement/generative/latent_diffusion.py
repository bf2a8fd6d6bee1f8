"""Latent diffusion (Rombach et al.): the project's VAE compresses rows to latent codes, a class-conditional DDPM
(vector denoiser) is trained on the standardized posterior means, and samples are decoded by the VAE."""

from __future__ import annotations

import torch
from torch import nn

from engagement.generative.modules import VectorDenoiser
from engagement.generative.schedulers import ddim_scheduler, ddpm_scheduler, noise_prediction_loss, reverse_diffusion
from engagement.generative.training import TrainingData, fit
from engagement.generative.vae import VAE, fit_vae

DEFAULT_STEPS = 4000


class LatentDiffusion(nn.Module):
    def __init__(self, dim: int, num_classes: int, latent_dim: int = 16, hidden: int = 512) -> None:
        super().__init__()
        self.config = {"dim": dim, "num_classes": num_classes, "latent_dim": latent_dim, "hidden": hidden}
        self.vae = VAE(dim, num_classes, latent_dim=latent_dim)
        self.denoiser = VectorDenoiser(latent_dim, num_classes, hidden=hidden)
        self.noise_scheduler = ddpm_scheduler(clip_sample=False)
        self.register_buffer("latent_mean", torch.zeros(latent_dim))
        self.register_buffer("latent_std", torch.ones(latent_dim))


MODEL_CLASS = LatentDiffusion


def train(data: TrainingData, *, steps: int = DEFAULT_STEPS, seed: int = 0, progress: bool = False) -> LatentDiffusion:
    """``steps`` VAE steps, then ``steps`` diffusion steps on the frozen VAE's latents."""
    torch.manual_seed(seed)
    model = LatentDiffusion(data.dim, data.num_classes)
    fit_vae(model.vae, data, steps=steps, seed=seed, progress=progress)
    with torch.no_grad():
        latents = model.vae.encode(data.x, data.y)[0]
    model.latent_mean.copy_(latents.mean(dim=0))
    model.latent_std.copy_(latents.std(dim=0).clamp_min(1e-3))
    latent_data = TrainingData((latents - model.latent_mean) / model.latent_std, data.y, data.num_classes)

    def loss(z: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return noise_prediction_loss(model.denoiser, model.noise_scheduler, z, y, generator)

    fit(model, loss, latent_data, steps=steps, seed=seed + 1, parameters=list(model.denoiser.parameters()),
        progress=progress, description="latent DDPM")
    return model


@torch.no_grad()
def sample(
    model: LatentDiffusion, labels: torch.Tensor, *, seed: int = 0, steps: int = 50, eta: float = 0.0, progress: bool = False
) -> torch.Tensor:
    """DDIM in latent space (``steps``, ``eta``), then decode."""
    generator = torch.Generator().manual_seed(seed)
    # 1-5. Reverse diffusion of standardized latent codes for the requested classes.
    latents = reverse_diffusion(
        model.denoiser, ddim_scheduler(model.noise_scheduler), labels, model.config["latent_dim"],
        num_inference_steps=steps, generator=generator, eta=eta, progress=progress,
    )
    # 6. Undo the latent standardization and decode with the VAE.
    return model.vae.decode(latents * model.latent_std + model.latent_mean, labels)
