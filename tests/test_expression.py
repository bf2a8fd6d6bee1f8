"""The FER-2013 expression model: the packaged weights, the written-out forward pass, bad model files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engagement.errors import UserError
from engagement.expression import EXPRESSIONS, INPUT_PX, ExpressionModel, face_input


def test_packaged_weights_give_the_recorded_logits() -> None:
    """Logits of a fixed pattern, recorded from the forward pass when its output matched the Keras file's
    reading (max difference 0): a change to the forward pass or the converted weights shows here."""
    pattern = (np.arange(INPUT_PX * INPUT_PX).reshape(1, INPUT_PX, INPUT_PX) * 37 % 256).astype(np.uint8)
    logits = ExpressionModel.load()(pattern)
    assert logits.shape == (1, len(EXPRESSIONS))
    np.testing.assert_allclose(logits[0], [9.3469, -15.6156, 0.0522, 9.8958, 3.3071, 12.1915, -10.0053], atol=1e-3)


def test_batches_match_single_faces() -> None:
    rng = np.random.default_rng(0)
    faces = rng.integers(0, 256, (260, INPUT_PX, INPUT_PX), dtype=np.uint8)  # more than one chunk of 256
    model = ExpressionModel.load()
    logits = model(faces)
    assert logits.shape == (260, 7) and not np.allclose(logits[0], logits[1])
    np.testing.assert_allclose(logits[[0, 255, 256, 259]], model(faces[[0, 255, 256, 259]]), atol=1e-4)


def test_face_input_is_the_models_size() -> None:
    assert face_input(np.zeros((130, 90), np.uint8)).shape == (INPUT_PX, INPUT_PX)


def test_missing_or_broken_model_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="expression model not found"):
        ExpressionModel.load(tmp_path / "absent.safetensors")
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"not a model")
    with pytest.raises(UserError, match="cannot read expression model"):
        ExpressionModel.load(broken)


def test_converter_reads_a_keras_file_and_refuses_one_that_is_not(tmp_path: Path) -> None:
    h5py = pytest.importorskip("h5py")
    from safetensors.numpy import load_file

    good = tmp_path / "tiny.hdf5"  # the layout Keras writes: model_weights/LAYER/LAYER/WEIGHT:0
    with h5py.File(good, "w") as model:
        model.create_dataset("model_weights/conv2d_1/conv2d_1/kernel:0", data=np.ones((3, 3, 1, 2), np.float32))
        model.create_dataset("model_weights/batch_normalization_1/batch_normalization_1/gamma:0", data=np.ones(2))
    assert subprocess.run([sys.executable, "-m", "engagement.expression", str(good), str(tmp_path / "tiny.st")]).returncode == 0
    assert sorted(load_file(str(tmp_path / "tiny.st"))) == ["batch_normalization_1/gamma", "conv2d_1/kernel"]
    bad = tmp_path / "model.hdf5"
    bad.write_bytes(b"not hdf5")
    result = subprocess.run([sys.executable, "-m", "engagement.expression", str(bad), str(tmp_path / "out")],
                            capture_output=True, text=True)
    assert result.returncode == 2 and result.stderr.startswith("error:") and len(result.stderr.splitlines()) == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_a_neutral_webcam_face_reads_as_neutral(webcam_dataset: Path) -> None:
    """A real face found by YuNet, cropped as the benchmark does (1.2x its box), through the packaged model."""
    import cv2

    from engagement.anonymize import FaceDetector

    frame = cv2.imread(str(webcam_dataset / "frames" / "neutralface" / "neutralface_lowlight_1_00000.jpg"))
    faces = FaceDetector("face_detection_yunet_2026may.onnx", backend="opencv")(frame)
    assert len(faces) == 1
    x0, y0, x1, y1 = faces[0]
    center, half = np.array([(x0 + x1) / 2, (y0 + y1) / 2]), max(x1 - x0, y1 - y0) * 0.6
    left, top = np.maximum(center - half, 0).astype(int)
    right, bottom = (center + half).astype(int)
    face = cv2.cvtColor(frame[top:bottom, left:right], cv2.COLOR_BGR2GRAY)
    logits = ExpressionModel.load()(face_input(face)[None])[0]
    assert EXPRESSIONS[int(np.argmax(logits))] == "neutral"
