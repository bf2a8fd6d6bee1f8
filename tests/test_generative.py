"""Generative models: shapes, loss terms, scheduler round trips, DDIM determinism, Langevin, save/load, TSTR."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engagement.errors import UserError
from engagement.generative import MODEL_MODULES, model_module
from engagement.generative.data import DataSpace, load_feature_file
from engagement.generative.schedulers import ddim_scheduler, ddpm_scheduler
from engagement.generative.score import langevin_step
from engagement.generative.training import TrainingData, fit, load_model, save_model
from engagement.generative.vae import reparameterize, vae_loss_terms


def tiny_data(dim: int = 6, image_shape: tuple[int, int] | None = None, rows: int = 30, classes: int = 3) -> TrainingData:
    rng = np.random.default_rng(0)
    return TrainingData.from_arrays(rng.normal(size=(rows, dim)), np.arange(rows) % classes, classes, image_shape)


@pytest.mark.parametrize("name", list(MODEL_MODULES))
def test_every_model_trains_and_samples_the_requested_classes(name: str) -> None:
    module = model_module(name)
    model = module.train(tiny_data(), steps=2, seed=0)
    samples = module.sample(model, torch.tensor([0, 2, 2, 1]), seed=0, **({"steps": 3} if name in ("ddpm", "latent-diffusion", "score") else {}))
    assert samples.shape == (4, 6)
    assert torch.isfinite(samples).all()


def test_image_ddpm_uses_a_class_conditional_unet() -> None:
    from diffusers import UNet2DModel

    from engagement.generative import ddpm

    model = ddpm.train(tiny_data(dim=64, image_shape=(8, 8)), steps=2, seed=0)
    assert isinstance(model.denoiser, UNet2DModel)
    assert model.denoiser.config.num_class_embeds == 3
    samples = ddpm.sample(model, torch.tensor([0, 1]), sampler="ddim", steps=2)
    assert samples.shape == (2, 64) and samples.abs().max() <= 1


def test_ema_ends_training_on_the_moving_average() -> None:
    data = TrainingData.from_arrays(np.random.default_rng(0).normal(size=(32, 3)), np.zeros(32), 1)

    def trained(ema_decay: float | None) -> torch.Tensor:
        torch.manual_seed(0)
        model = torch.nn.Linear(3, 3)
        fit(model, lambda x, y, g: ((model(x) - x) ** 2).mean(), data, steps=5, seed=0, learning_rate=0.1, ema_decay=ema_decay)
        return model.weight.detach().clone()

    last_iterate = trained(None)
    torch.testing.assert_close(trained(0.0), last_iterate)  # decay 0: the average is the last iterate
    assert not torch.allclose(trained(0.9), last_iterate)


def test_unknown_model_is_a_user_error() -> None:
    with pytest.raises(UserError, match="unknown generative model"):
        model_module("gan")


def test_vae_loss_terms_match_the_closed_forms() -> None:
    x = torch.tensor([[1.0, 2.0]])
    mu, logvar = torch.zeros(1, 3), torch.zeros(1, 3)
    reconstruction, kl = vae_loss_terms(x, torch.zeros(1, 2), mu, logvar, torch.tensor(0.0))
    assert reconstruction.item() == pytest.approx((1 + 4) / 2)
    assert kl.item() == pytest.approx(0.0)
    _, kl = vae_loss_terms(x, x, torch.ones(1, 3), torch.full((1, 3), np.log(2.0)), torch.tensor(0.0))
    assert kl.item() == pytest.approx(3 * 0.5 * (1 + 2 - 1 - np.log(2.0)))
    reconstruction, _ = vae_loss_terms(x, x, mu, logvar, torch.tensor(np.log(0.5)))
    assert reconstruction.item() == pytest.approx(2 * np.log(0.5))


def test_reparameterization_is_mu_plus_sigma_eps_and_differentiable() -> None:
    mu = torch.tensor([1.0, -1.0], requires_grad=True)
    logvar = torch.tensor([0.0, float(np.log(4.0))], requires_grad=True)
    z = reparameterize(mu, logvar, torch.tensor([0.5, 0.5]))
    assert torch.allclose(z, torch.tensor([1.5, 0.0]))
    z.sum().backward()
    assert mu.grad is not None and logvar.grad is not None and logvar.grad[1] != 0


def test_ddpm_add_noise_and_reverse_step_invert_at_t0() -> None:
    scheduler = ddpm_scheduler(clip_sample=False)
    assert scheduler.config.beta_start == 1e-4 and scheduler.config.beta_end == 0.02
    generator = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(4, 5, generator=generator), torch.randn(4, 5, generator=generator)
    timestep = torch.tensor(0)
    noisy = scheduler.add_noise(x0, noise, timestep)
    assert not torch.allclose(noisy, x0)
    restored = scheduler.step(noise, timestep, noisy, generator=generator).prev_sample
    assert torch.allclose(restored, x0, atol=1e-5)


def test_ddim_with_eta_zero_is_deterministic() -> None:
    from engagement.generative import ddpm

    model = ddpm.train(tiny_data(), steps=2, seed=0)
    labels = torch.tensor([0, 1, 2])
    first = ddpm.sample(model, labels, seed=3, sampler="ddim", steps=5, eta=0.0)
    assert torch.equal(first, ddpm.sample(model, labels, seed=3, sampler="ddim", steps=5, eta=0.0))
    # The step itself draws no noise at eta = 0, whatever the generator; at eta = 1 it does.
    scheduler = ddim_scheduler(model.noise_scheduler)
    scheduler.set_timesteps(5)
    sample, output, timestep = torch.randn(3, 6), torch.randn(3, 6), scheduler.timesteps[1]
    steps = [scheduler.step(output, timestep, sample, eta=eta, generator=torch.Generator().manual_seed(seed)).prev_sample
             for eta in (0.0, 1.0) for seed in (1, 2)]
    assert torch.equal(steps[0], steps[1])
    assert not torch.allclose(steps[2], steps[3])


def test_langevin_steps_raise_the_log_density_of_a_gaussian() -> None:
    mean, std = torch.tensor([2.0, -1.0]), 0.5
    log_density = lambda x: -((x - mean) ** 2).sum(dim=1) / (2 * std**2)  # noqa: E731
    generator = torch.Generator().manual_seed(0)
    x = mean + 3.0 + torch.randn(256, 2, generator=generator)
    before = log_density(x).mean()
    for _ in range(40):
        x = langevin_step(x, -(x - mean) / std**2, step_size=0.05, noise=torch.randn(x.shape, generator=generator))
    assert log_density(x).mean() > before + 10
    assert (x.mean(dim=0) - mean).abs().max() < 0.3


@pytest.mark.parametrize("name", ["cvae", "ddpm", "score"])
def test_saved_model_reloads_and_samples_identically(tmp_path, name: str) -> None:
    module = model_module(name)
    model = module.train(tiny_data(), steps=2, seed=0)
    save_model(tmp_path, name, model, {"data": {}})
    loaded_name, loaded, _ = load_model(tmp_path)
    labels = torch.tensor([0, 1])
    options = {"steps": 2} if name != "cvae" else {}
    assert loaded_name == name
    assert torch.equal(module.sample(model, labels, seed=1, **options), module.sample(loaded, labels, seed=1, **options))


def test_loading_a_directory_without_a_model_is_a_user_error(tmp_path) -> None:
    with pytest.raises(UserError, match="not a trained generative model"):
        load_model(tmp_path)


def test_data_space_resolves_class_names_and_indices_and_round_trips() -> None:
    space = DataSpace(["bored", "engaged"], np.array([1.0, 2.0]), np.array([2.0, 4.0]))
    assert space.class_index("engaged") == 1 and space.class_index("0") == 0
    with pytest.raises(UserError, match="unknown class"):
        space.class_index("7")
    X = np.array([[3.0, 6.0]])
    assert np.allclose(space.denormalize(space.normalize(X)), X)
    assert DataSpace.from_json(space.to_json()).classes == space.classes


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"X": np.array([[np.nan, 1.0]]), "y": np.array([0])}, "NaN"),
        ({"X": np.ones((2, 2)), "y": np.array([0.5, 1.0])}, "integer"),
        ({"X": np.ones((2, 2)), "y": np.array([0, 2]), "classes": np.array(["a", "b"])}, "no entry"),
        ({"X": np.ones((10, 3)), "y": np.array([0] * 9 + [10**6])}, "label 1000000 makes 1000001 classes for 10 rows"),
        ({"X": np.ones(3), "y": np.array([0, 1, 0])}, "must be"),
        ({"y": np.array([0])}, "need arrays X and y"),
    ],
)
def test_bad_feature_files_are_user_errors(tmp_path, arrays: dict, message: str) -> None:
    path = tmp_path / "features.npz"
    np.savez(path, **arrays)
    with pytest.raises(UserError, match=message):
        load_feature_file(path)


def test_feature_files_may_leave_classes_without_rows(tmp_path) -> None:
    path = tmp_path / "features.npz"
    np.savez(path, X=np.ones((3, 2)), y=np.array([0, 2, 2]))  # class 1 has no row: as many classes as rows
    assert load_feature_file(path)[2].classes == ["0", "1", "2"]
    np.savez(path, X=np.ones((2, 2)), y=np.array([0, 0]), classes=np.array(["bored", "engaged", "confused"]))
    assert load_feature_file(path)[2].num_classes == 3  # named classes: more than rows is fine


@pytest.mark.slow
def test_cvae_samples_train_a_digit_classifier_that_scores_on_real_digits() -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    from engagement.generative import cvae
    from engagement.generative.data import load_digits

    X, y, space = load_digits()
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=0)
    model = cvae.train(TrainingData.from_arrays(space.normalize(X_train), y_train, 10), steps=1500, seed=0)
    labels = torch.arange(10).repeat_interleave(50)
    synthetic = space.denormalize(cvae.sample(model, labels, seed=1).numpy())
    accuracy = LogisticRegression(max_iter=2000).fit(synthetic / 16, labels.numpy()).score(X_test / 16, y_test)
    assert accuracy >= 0.90
