"""Noise schedules and the diffusion loss/sampling loop shared by DDPM and latent diffusion (diffusers schedulers),
plus the geometric noise levels of the score-based model."""

from __future__ import annotations

from collections.abc import Callable

import torch
from diffusers import DDIMScheduler, DDPMScheduler
from tqdm import tqdm

from engagement.errors import UserError
from engagement.generative.training import randn_like

NUM_TRAIN_TIMESTEPS = 1000
BETA_START, BETA_END = 1e-4, 0.02

NoisePredictor = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def check_sampling_steps(steps: int) -> None:
    """Refuse a number of sampling steps outside 1..T: no step gives no sample, a diffusion chain longer than the
    trained T does not exist, and more Langevin steps per noise level than T only run for hours."""
    if not 1 <= steps <= NUM_TRAIN_TIMESTEPS:
        raise UserError(f"sampling steps must be in 1..{NUM_TRAIN_TIMESTEPS}, got {steps}")


def ddpm_scheduler(clip_sample: bool) -> DDPMScheduler:
    """Linear betas 1e-4..0.02 over T = 1000; ``clip_sample`` only for images scaled to [-1, 1]."""
    return DDPMScheduler(
        num_train_timesteps=NUM_TRAIN_TIMESTEPS,
        beta_start=BETA_START,
        beta_end=BETA_END,
        beta_schedule="linear",
        clip_sample=clip_sample,
    )


def ddim_scheduler(ddpm: DDPMScheduler) -> DDIMScheduler:
    """DDIM over the same betas. Never clipped (clipped x0 with eta = 0 diverges) and "trailing" spacing, which picks
    the right previous timestep."""
    return DDIMScheduler.from_config(ddpm.config, clip_sample=False, timestep_spacing="trailing")


def noise_prediction_loss(
    predict_noise: NoisePredictor, scheduler: DDPMScheduler, x0: torch.Tensor, labels: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """DDPM objective: noise x0 to a random timestep t and regress the added noise."""
    noise = randn_like(x0, generator)
    timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (x0.shape[0],), generator=generator)
    noisy = scheduler.add_noise(x0, noise, timesteps)
    return torch.nn.functional.mse_loss(predict_noise(noisy, timesteps, labels), noise)


@torch.no_grad()
def reverse_diffusion(
    predict_noise: NoisePredictor,
    scheduler: DDPMScheduler | DDIMScheduler,
    labels: torch.Tensor,
    dim: int,
    *,
    num_inference_steps: int,
    generator: torch.Generator,
    eta: float = 0.0,
    progress: bool = False,
) -> torch.Tensor:
    """Sample ``len(labels)`` vectors of size ``dim``, one per requested class label."""
    check_sampling_steps(num_inference_steps)
    # 1. Start from pure Gaussian noise x_T.
    sample = torch.randn((len(labels), dim), generator=generator)
    # 2. Choose the timesteps to visit (all T for DDPM, a strided subset for DDIM).
    scheduler.set_timesteps(num_inference_steps)
    extra = {"eta": eta} if isinstance(scheduler, DDIMScheduler) else {}
    for timestep in tqdm(scheduler.timesteps, desc="sampling", disable=not progress, unit="step"):
        # 3. Predict the noise in x_t for the requested classes.
        noise = predict_noise(sample, timestep.expand(len(labels)), labels)
        # 4. Step to x_{t-1}: posterior mean plus fresh noise (DDPM), or the eta-scaled DDIM update.
        sample = scheduler.step(noise, timestep, sample, generator=generator, **extra).prev_sample
    # 5. x_0 is the sample after the last step.
    return sample


def geometric_noise_levels(sigma_max: float, sigma_min: float, count: int) -> torch.Tensor:
    """Noise levels sigma_1 > ... > sigma_L in geometric progression (NCSN)."""
    return torch.exp(torch.linspace(torch.log(torch.tensor(sigma_max)), torch.log(torch.tensor(sigma_min)), count))
