"""`engagement generate train/sample` end to end on tiny runs, and one-line errors for bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from engagement.cli import main


def test_train_two_steps_on_digits_then_sample_a_class(tmp_path, capsys) -> None:
    model_dir, out = tmp_path / "cvae", tmp_path / "samples" / "threes.npz"
    assert main(["generate", "train", "cvae", "--data", "digits", "--out", str(model_dir), "--steps", "2"]) == 0
    config = json.loads((model_dir / "config.json").read_text())
    assert config["model"] == "cvae" and config["training"]["steps"] == 2 and config["data"]["image_shape"] == [8, 8]
    assert main(["generate", "sample", str(model_dir), "--class", "3", "-n", "5", "--out", str(out)]) == 0
    with np.load(out) as samples:
        assert samples["X"].shape == (5, 64)
        assert (samples["y"] == 3).all()
        assert samples["X"].min() >= 0 and samples["X"].max() <= 16
        assert list(samples["classes"]) == [str(digit) for digit in range(10)]
    assert not out.with_suffix(".png").exists()  # only the format --out names
    assert not [path for path in out.parent.iterdir() if path.name.startswith(".")]  # no temporary files left


@pytest.mark.parametrize("suffix", [".npy", ".csv", ".png"])
def test_sample_writes_the_format_its_suffix_names(tmp_path, trained_cvae: str, suffix: str) -> None:
    out = tmp_path / f"samples{suffix}"
    assert main(["generate", "sample", trained_cvae, "--class", "3", "-n", "4", "--out", str(out)]) == 0
    assert [p.name for p in tmp_path.iterdir()] == [out.name]
    if suffix == ".npy":
        assert np.load(out).shape == (4, 64)  # a plain array, not an archive under a .npy name
    elif suffix == ".csv":
        import pandas as pd

        table = pd.read_csv(out)
        assert table.shape == (4, 65) and (table["label"] == 3).all()
    else:
        assert out.read_bytes().startswith(b"\x89PNG")


def test_generate_is_quiet_off_a_terminal(tmp_path, capfd) -> None:
    """No per-step progress lines when output is not a terminal; --quiet prints only the result line."""
    model_dir = tmp_path / "vae"
    assert main(["generate", "train", "vae", "--data", "digits", "--out", str(model_dir), "--steps", "30", "--quiet"]) == 0
    out, err = capfd.readouterr()
    assert out.strip() == f"saved vae to {model_dir}" and err == ""


def test_ddpm_on_a_feature_file_samples_every_class_with_ddim(tmp_path) -> None:
    rng = np.random.default_rng(0)
    data = tmp_path / "features.npz"
    np.savez(data, X=rng.normal(5.0, 2.0, size=(40, 7)), y=np.arange(40) % 2, classes=np.array(["bored", "engaged"]))
    model_dir, out = tmp_path / "ddpm", tmp_path / "synthetic.npz"
    assert main(["generate", "train", "ddpm", "--data", str(data), "--out", str(model_dir), "--steps", "2"]) == 0
    assert main(["generate", "sample", str(model_dir), "-n", "6", "--sampler", "ddim", "--steps", "4", "--eta", "0", "--out", str(out)]) == 0
    with np.load(out) as samples:
        assert samples["X"].shape == (6, 7)
        assert sorted(samples["y"].tolist()) == [0, 0, 0, 1, 1, 1]
    assert not out.with_suffix(".png").exists()
    assert main(["generate", "sample", str(model_dir), "-n", "2", "--out", str(tmp_path / "rows.png")]) == 2  # not images


@pytest.fixture(scope="module")
def trained_cvae(tmp_path_factory) -> str:
    model_dir = tmp_path_factory.mktemp("generate") / "cvae"
    assert main(["generate", "train", "cvae", "--data", "digits", "--out", str(model_dir), "--steps", "1"]) == 0
    return str(model_dir)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["generate", "train", "gan", "--data", "digits", "--out", "{tmp}/m"], "unknown generative model"),
        (["generate", "train", "vae", "--data", "{tmp}/missing.npz", "--out", "{tmp}/m"], "data file not found"),
        (["generate", "sample", "{model}", "--class", "11", "--out", "{tmp}/s.npz"], "unknown class"),
        (["generate", "sample", "{model}", "-n", "0", "--out", "{tmp}/s.npz"], "-n must be positive"),
        (["generate", "sample", "{model}", "--eta", "0.5", "--out", "{tmp}/s.npz"], "does not take --eta"),
        (["generate", "sample", "{tmp}", "--out", "{tmp}/s.npz"], "not a trained generative model"),
        (["generate", "sample", "{model}", "--out", "{tmp}/s.txt"], "unknown format .txt"),
        (["generate", "sample", "{tmp}", "--out", "{tmp}/taken.npz"], "taken.npz is a folder: name a file to write"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, trained_cvae: str, argv: list[str], message: str) -> None:
    argv = [arg.format(tmp=tmp_path, model=trained_cvae) for arg in argv]
    (tmp_path / "taken.npz").mkdir()
    capsys.readouterr()
    assert main(argv) == 2
    error = capsys.readouterr().err.strip()
    assert message in error and "\n" not in error
    assert not (tmp_path / "s.npz").exists()


@pytest.mark.parametrize("weights", ["empty", "another model's"])
def test_corrupt_weights_are_one_line(tmp_path, capsys, trained_cvae: str, weights: str) -> None:
    import shutil

    from engagement.generative.training import WEIGHTS_FILE

    broken = tmp_path / "broken"
    shutil.copytree(trained_cvae, broken)
    if weights == "empty":
        (broken / WEIGHTS_FILE).write_bytes(b"")
    else:
        other = tmp_path / "vae"
        assert main(["generate", "train", "vae", "--data", "digits", "--out", str(other), "--steps", "1"]) == 0
        shutil.copy(other / WEIGHTS_FILE, broken / WEIGHTS_FILE)
    capsys.readouterr()
    assert main(["generate", "sample", str(broken), "--out", str(tmp_path / "s.npz")]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"engagement: error: corrupt generative model in {broken}: ") and "\n" not in error


@pytest.mark.parametrize("name", ["ddpm", "latent-diffusion", "score"])
def test_sampling_steps_outside_1_to_1000_are_refused_in_one_line(tmp_path, capsys, name: str) -> None:
    data = tmp_path / "features.npz"
    np.savez(data, X=np.random.default_rng(0).normal(size=(20, 3)), y=np.arange(20) % 2)
    assert main(["generate", "train", name, "--data", str(data), "--out", str(tmp_path / "m"), "--steps", "1"]) == 0
    for steps in ("0", "1001"):
        capsys.readouterr()
        assert main(["generate", "sample", str(tmp_path / "m"), "--steps", steps, "--out", str(tmp_path / "s.npz")]) == 2
        assert capsys.readouterr().err == f"engagement: error: sampling steps must be in 1..1000, got {steps}\n"
    assert not (tmp_path / "s.npz").exists()


def test_train_writes_only_into_a_new_or_empty_folder_or_its_own_model_folder(tmp_path, capsys) -> None:
    train = ["generate", "train", "vae", "--data", "digits", "--steps", "1", "--out"]
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("mine")
    (tmp_path / "file").write_text("mine")
    for out, message in ((tmp_path / "notes", "a folder that is not empty and holds no generative model"),
                         (tmp_path / "file", "a file, not a model folder")):
        capsys.readouterr()
        assert main([*train, str(out)]) == 2
        assert capsys.readouterr().err.startswith(f"engagement: error: --out {out}: {message}")
    assert sorted(p.name for p in (tmp_path / "notes").iterdir()) == ["todo.txt"]
    (tmp_path / "empty").mkdir()
    assert main([*train, str(tmp_path / "empty")]) == 0
    assert main(["generate", "train", "cvae", "--data", "digits", "--steps", "1", "--out", str(tmp_path / "empty")]) == 0
    assert json.loads((tmp_path / "empty" / "config.json").read_text())["model"] == "cvae"  # retrained in place
