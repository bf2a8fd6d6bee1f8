from pathlib import Path

import numpy as np
import pytest

from engagement.config import DetectorConfig
from engagement.errors import ModelNotFoundError, UserError
from engagement.models import find_model, resolve_model, search_dirs


def test_search_order_explicit_then_config_then_env_then_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    env_dir, config_dir = tmp_path / "env", tmp_path / "config"
    env_dir.mkdir(), config_dir.mkdir()
    monkeypatch.setenv("ENGAGEMENT_MODELS", str(env_dir))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    (env_dir / "m.onnx").write_bytes(b"x")
    assert find_model("m", None) == env_dir / "m.onnx"
    (config_dir / "m.pt").write_bytes(b"x")
    assert find_model("m", config_dir) == config_dir / "m.pt"
    assert find_model(str(env_dir / "m.onnx"), config_dir) == env_dir / "m.onnx"
    assert search_dirs(config_dir)[-1] == tmp_path / "cache" / "classroom-engagement" / "models"
    assert search_dirs("~/weights")[0] == Path.home() / "weights"  # as the config check reads it


def test_missing_model_names_every_place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("ENGAGEMENT_MODELS", str(tmp_path / "env"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(ModelNotFoundError) as error:
        resolve_model("nothing.task", tmp_path / "cfg")
    message = str(error.value)
    assert "'nothing.task' not found" in message and "\n" not in message
    for place in ("env", "cfg", "cache"):
        assert str(tmp_path / place) in message


def test_offline_detector_download_fails_with_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """No weights anywhere and no network: ultralytics' download fails and we say where we looked."""
    from engagement.detector import PoseDetector

    monkeypatch.setenv("ENGAGEMENT_MODELS", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelNotFoundError, match="yolov8s-pose.*looked in.*ENGAGEMENT_MODELS"):
        PoseDetector(DetectorConfig(model="yolov8s-pose"))


def test_unknown_model_name_is_not_downloaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from engagement.detector import PoseDetector

    monkeypatch.setenv("ENGAGEMENT_MODELS", str(tmp_path))
    with pytest.raises(ModelNotFoundError, match="'my-model' not found"):
        PoseDetector(DetectorConfig(model="my-model"))


@pytest.mark.parametrize("name, reason", [("empty.pt", "the file is empty"), ("weights", "not a supported model format"),
                                          ("clip.mp4", "not a supported model format")])
def test_detector_weights_that_are_no_model_fail_at_load_in_one_line(tmp_path: Path, name: str, reason: str):
    from engagement.detector import PoseDetector

    path = tmp_path / name
    path.mkdir() if name == "weights" else path.write_bytes(b"" if name.endswith(".pt") else b"not a video")
    with pytest.raises(UserError, match=f"cannot load detector weights {path}: .*{reason}") as raised:
        PoseDetector(DetectorConfig(model=str(path)))
    assert len(str(raised.value).splitlines()) == 1


@pytest.mark.slow
def test_openvino_detector_threads_are_set_and_results_unchanged(classroom_frame):
    """The thread setting reaches into ultralytics' OpenVINO backend: this fails if an update moves it."""
    from engagement.detector import PoseDetector

    one, two = PoseDetector(DetectorConfig(threads=1)), PoseDetector(DetectorConfig(threads=2))
    assert (one.openvino_threads, two.openvino_threads) == (1, 2)
    a, b = one(classroom_frame), two(classroom_frame)
    assert len(a) >= 10 and len(a) == len(b)
    np.testing.assert_allclose(a.xyxy, b.xyxy, atol=0.5)


def _wheel(path: Path, files: dict[str, bytes]) -> Path:
    import zipfile

    with zipfile.ZipFile(path, "w") as wheel:
        for name, data in files.items():
            wheel.writestr(name, data)
    return path


def test_hand_models_install_from_a_wheel_and_are_checked(tmp_path: Path, hand_models: Path) -> None:
    from engagement.cli import main
    from engagement.models import HAND_MODELS, file_sha256

    wheel = _wheel(tmp_path / "mediapipe.whl", {member: (hand_models / name).read_bytes()
                                                for name, (member, _) in HAND_MODELS.items()})
    assert main(["models", "hands", "--wheel", str(wheel), "--to", str(tmp_path / "models")]) == 0
    for name, (_, digest) in HAND_MODELS.items():
        assert file_sha256(tmp_path / "models" / name) == digest
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == sorted(HAND_MODELS), "no temporary files left"


@pytest.mark.parametrize("contents, message", [
    ({"mediapipe/modules/palm_detection/palm_detection_full.tflite": b"x",
      "mediapipe/modules/hand_landmark/hand_landmark_full.tflite": b"y"}, "does not match its sha256: use mediapipe==0.10.14"),
    ({"other.txt": b"x"}, "is not a MediaPipe wheel with the hand models"),
    ("good palm model, bad landmark model", "hand_landmark_full.tflite in"),
])
def test_a_wrong_wheel_installs_nothing(tmp_path: Path, capsys: pytest.CaptureFixture, hand_models: Path, contents: dict | str,
                                        message: str) -> None:
    from engagement.cli import main

    if isinstance(contents, str):  # one right file must not be installed while the other is refused
        contents = {"mediapipe/modules/palm_detection/palm_detection_full.tflite": (hand_models / "palm_detection_full.tflite").read_bytes(),
                    "mediapipe/modules/hand_landmark/hand_landmark_full.tflite": b"y"}
    wheel = _wheel(tmp_path / "mediapipe.whl", contents)
    assert main(["models", "hands", "--wheel", str(wheel), "--to", str(tmp_path / "models")]) == 2
    error = capsys.readouterr().err
    assert message in error and len(error.strip().splitlines()) == 1
    assert not (tmp_path / "models").exists() or not any((tmp_path / "models").iterdir())


def test_a_failed_download_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    import engagement.models as models
    from engagement.cli import main

    monkeypatch.setattr(models, "HAND_MODELS_WHEEL", ("mediapipe", "0.0.0", "cp311", "manylinux_2_17_x86_64"))
    assert main(["models", "hands", "--to", str(tmp_path / "models")]) == 2
    error = capsys.readouterr().err
    assert "cannot download mediapipe==0.0.0 from the package index" in error and len(error.strip().splitlines()) == 1
