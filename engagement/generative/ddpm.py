"""Class-conditional DDPM (Ho et al.): linear betas 1e-4..0.02 over T = 1000, noise-prediction loss. The denoiser is
diffusers' UNet2DModel with a class embedding for image data and a timestep+class-embedded MLP for vectors. The
same trained model samples with the full DDPM chain or with DDIM in a few steps (``sampler="ddim"``, ``eta``)."""

from __future__ import annotations

import torch
from diffusers import UNet2DModel
from torch import nn

from engagement.errors import UserError
from engagement.generative.modules import VectorDenoiser
from engagement.generative.schedulers import (
    NUM_TRAIN_TIMESTEPS,
    ddim_scheduler,
    ddpm_scheduler,
    noise_prediction_loss,
    reverse_diffusion,
)
from engagement.generative.training import TrainingData, fit

DEFAULT_STEPS = 2500
EMA_DECAY = 0.999
DEFAULT_DDIM_STEPS = 50
SAMPLERS = ("ddpm", "ddim")


class ClassConditionalDDPM(nn.Module):
    def __init__(self, dim: int, num_classes: int, image_shape: list[int] | None = None, hidden: int = 512) -> None:
        super().__init__()
        self.config = {"dim": dim, "num_classes": num_classes, "image_shape": image_shape, "hidden": hidden}
        self.image_shape = tuple(image_shape) if image_shape else None
        if self.image_shape:
            self.denoiser = UNet2DModel(
                sample_size=self.image_shape,
                in_channels=1,
                out_channels=1,
                block_out_channels=(16, 32),
                layers_per_block=1,
                norm_num_groups=8,
                down_block_types=("DownBlock2D", "DownBlock2D"),
                up_block_types=("UpBlock2D", "UpBlock2D"),
                num_class_embeds=num_classes,
            )
        else:
            self.denoiser = VectorDenoiser(dim, num_classes, hidden=hidden)
        # Pixels scaled to [-1, 1] may be clipped; standardized features may not.
        self.noise_scheduler = ddpm_scheduler(clip_sample=self.image_shape is not None)

    def predict_noise(self, x: torch.Tensor, timesteps: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Noise estimate for flattened rows x_t (images are reshaped for the UNet and back)."""
        if not self.image_shape:
            return self.denoiser(x, timesteps, labels)
        images = x.reshape(-1, 1, *self.image_shape)
        return self.denoiser(images, timesteps, class_labels=labels).sample.reshape(x.shape)


MODEL_CLASS = ClassConditionalDDPM


def train(
    data: TrainingData, *, steps: int = DEFAULT_STEPS, seed: int = 0, progress: bool = False, hidden: int = 512
) -> ClassConditionalDDPM:
    torch.manual_seed(seed)
    model = ClassConditionalDDPM(data.dim, data.num_classes, list(data.image_shape) if data.image_shape else None, hidden)

    def loss(x: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return noise_prediction_loss(model.predict_noise, model.noise_scheduler, x, y, generator)

    fit(model, loss, data, steps=steps, seed=seed, ema_decay=EMA_DECAY, progress=progress, description="DDPM")
    return model


@torch.no_grad()
def sample(
    model: ClassConditionalDDPM,
    labels: torch.Tensor,
    *,
    seed: int = 0,
    sampler: str = "ddpm",
    steps: int | None = None,
    eta: float = 0.0,
    progress: bool = False,
) -> torch.Tensor:
    """DDPM: the full 1000-step ancestral chain. DDIM: ``steps`` strided steps (default 50), ``eta`` 0 = deterministic."""
    if sampler not in SAMPLERS:
        raise UserError(f"unknown sampler {sampler!r}; choose ddpm or ddim")
    if sampler == "ddpm":
        scheduler, steps = model.noise_scheduler, NUM_TRAIN_TIMESTEPS if steps is None else steps
    else:
        scheduler, steps = ddim_scheduler(model.noise_scheduler), DEFAULT_DDIM_STEPS if steps is None else steps
    generator = torch.Generator().manual_seed(seed)
    sample = reverse_diffusion(
        model.predict_noise, scheduler, labels, model.config["dim"], num_inference_steps=steps,
        generator=generator, eta=eta, progress=progress,
    )
    return sample.clamp(-1, 1) if model.image_shape else sample
