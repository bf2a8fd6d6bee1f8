"""The upper-body crop model: crop geometry, fitting on tiny synthetic crops, its file, its place in the state stage,
``classifier evaluate --crop-weight`` and ``classifier train-crops`` (the detector replaced by known boxes)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from engagement.classifier.crops import (
    CROP_SIZE, CROP_STATES, FORMAT_VERSION, PACKAGED_CROP_WEIGHTS, SCALE_SUFFIX, CropNet, CropStateModel,
    crop_model_for, crop_targets, cut_crops, dequantize, fit_crop_model, quantize, upper_body_squares, yolo_backbone,
)
from engagement.classifier.data import NO_STATE
from engagement.cli import main
from engagement.config import ClassifierConfig, load_pipeline
from engagement.errors import UserError
from engagement.states import STATE_INDEX, STATES
from test_classifier_readers import coco_set, people  # noqa: F401 (fixture)


def test_the_crop_square_is_three_head_sizes_wide_below_the_head() -> None:
    squares = upper_body_squares(np.array([[100, 100, 120, 120], [0, 0, 10, 20]], np.float32))
    # a 20 px head: 60 px square centred 23 px under its top; a 10x20 head counts as 20 px
    np.testing.assert_allclose(squares, [[80, 93, 140, 153], [-25, -7, 35, 53]])


def test_crops_are_rgb_and_grey_beyond_the_frame() -> None:
    frame = np.zeros((100, 100, 3), np.uint8)
    frame[:, :] = (255, 0, 0)  # blue in BGR
    crops = cut_crops(frame, np.array([[0, 0, 50, 50], [-50, 0, 50, 100], [10, 10, 10, 10]], np.float32))
    assert crops.shape == (3, CROP_SIZE, CROP_SIZE, 3) and crops.dtype == np.uint8
    assert (crops[0] == (0, 0, 255)).all()  # RGB: blue is the last channel
    # the left half lies beyond the frame; the frame's own edge rows may blend with the grey
    assert (crops[1][:, :CROP_SIZE // 2 - 1] == 114).all() and (crops[1][2:-2, CROP_SIZE // 2 + 1:-2] == (0, 0, 255)).all()
    assert (crops[2] == 114).all()  # an empty square is left grey


def test_states_the_crop_model_does_not_give_are_marked() -> None:
    states = [STATE_INDEX[s] for s in ("taking_notes", "confused", "attentive", "engaged_in_discussion")]
    assert crop_targets(np.array(states)).tolist() == [3, -1, 0, 2]
    assert crop_targets(np.array([NO_STATE, STATE_INDEX["distracted"]])).tolist() == [-1, 1]  # not the last state


def stripes(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Noisy crops with horizontal stripes (state 0) or vertical ones (state 3): mirroring, zoom, light and grey,
    and the pooling over space, all keep which."""
    rng = np.random.default_rng(seed)
    crops = rng.integers(0, 60, (n, CROP_SIZE, CROP_SIZE, 3), dtype=np.uint8)
    states = np.array([0, 3] * (n // 2))
    for crop, state in zip(crops, states):
        if state == 0:
            crop[::8] = crop[1::8] = crop[2::8] = 250
        else:
            crop[:, ::8] = crop[:, 1::8] = crop[:, 2::8] = 250
    return crops, states


def test_fitting_learns_synthetic_crops_and_the_file_keeps_the_model(tmp_path: Path, models_dir: Path) -> None:
    crops, states = stripes(32)
    pretrained = yolo_backbone(models_dir / "yolov8n.pt")
    first_conv = pretrained.layers[0].conv.weight.detach().clone()
    net = fit_crop_model(crops, states, pretrained, seed=0, epochs=6, batch_size=8)
    assert not torch.equal(net.backbone.layers[0].conv.weight, first_conv)  # the backbone is fine-tuned, not only the head
    model = CropStateModel([net])
    test_crops, test_states = stripes(8, seed=1)
    probs = model.predict_crops(test_crops)
    assert probs.shape == (8, len(STATES)) and np.allclose(probs.sum(axis=1), 1, atol=1e-5)
    assert (probs[:, [STATE_INDEX["confused"], STATE_INDEX["bored"]]] == 0).all()
    columns = [STATE_INDEX[s] for s in CROP_STATES]
    assert (np.array(columns)[crop_targets(probs.argmax(axis=1))] == np.array(columns)[test_states]).all()
    model.save(tmp_path / "crops.safetensors")
    loaded = CropStateModel.load(tmp_path / "crops.safetensors")
    np.testing.assert_allclose(loaded.predict_crops(test_crops), probs, atol=0.01)  # stored in int8


def test_stored_weights_are_int8_per_output_channel_and_come_back_within_half_a_step() -> None:
    generator = torch.Generator().manual_seed(0)
    channel_sizes = torch.tensor([1e-3, 1, 10, 0]).view(4, 1, 1, 1)
    weights = {"conv.weight": torch.randn(4, 3, 3, 3, generator=generator) * channel_sizes,
               "bn.bias": torch.randn(4, generator=generator), "bn.num_batches_tracked": torch.tensor(7)}
    stored = quantize(weights)
    assert stored["conv.weight"].dtype == torch.int8 and stored["conv.weight" + SCALE_SUFFIX].shape == (4, 1, 1, 1)
    assert stored["bn.bias"].dtype == torch.float16 and stored["bn.num_batches_tracked"].dtype == torch.int64
    back = dequantize(stored)
    assert set(back) == set(weights) and back["bn.num_batches_tracked"].item() == 7
    step = weights["conv.weight"].abs().amax(dim=(1, 2, 3), keepdim=True) / 127  # a small channel keeps its own scale
    assert ((back["conv.weight"] - weights["conv.weight"]).abs() <= step / 2 + 1e-9).all()
    assert (back["conv.weight"][3] == 0).all()


def test_bad_fitting_input_is_refused() -> None:
    crops, states = stripes(4)
    with pytest.raises(ValueError, match="one state per crop"):
        fit_crop_model(crops, states[:2], yolo_backbone(), epochs=1)
    with pytest.raises(ValueError, match="indices into the 4 crop states"):
        fit_crop_model(crops, np.array([0, 1, 2, 4]), yolo_backbone(), epochs=1)


def test_a_missing_or_foreign_crop_model_is_one_clear_error(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    with pytest.raises(UserError, match="crop model not found"):
        CropStateModel.load(tmp_path / "none.safetensors")
    (tmp_path / "text.safetensors").write_text("not a model")
    with pytest.raises(UserError, match="not a crop model"):
        CropStateModel.load(tmp_path / "text.safetensors")
    save_file({"x": torch.zeros(2)}, str(tmp_path / "other.safetensors"), metadata={"format": "something-else"})
    with pytest.raises(UserError, match=f"not a crop model of format {FORMAT_VERSION}"):
        CropStateModel.load(tmp_path / "other.safetensors")
    save_file({"x": torch.zeros(2)}, str(tmp_path / "empty.safetensors"),
              metadata={"format": f"crop-states-{FORMAT_VERSION}", "states": json.dumps(CROP_STATES), "networks": "0"})
    with pytest.raises(UserError, match="names no networks"):
        CropStateModel.load(tmp_path / "empty.safetensors")
    save_file({"0.head.weight": torch.zeros(3, 3)}, str(tmp_path / "shape.safetensors"),
              metadata={"format": f"crop-states-{FORMAT_VERSION}", "states": json.dumps(CROP_STATES), "networks": "1"})
    with pytest.raises(UserError, match="do not fit YOLOv8n"):
        CropStateModel.load(tmp_path / "shape.safetensors")


def test_the_lecture_pipeline_runs_the_packaged_crop_model_for_the_front_view_only() -> None:
    lecture = load_pipeline("lecture").classifier
    assert lecture.view == "front" and lecture.crop_weight == 0.75
    model = crop_model_for(lecture)
    assert model is not None and len(model.nets) == 1
    assert PACKAGED_CROP_WEIGHTS.stat().st_size < 2_000_000  # int8: the package stays small
    assert crop_model_for(ClassifierConfig(view="ceiling", crop_weight=0.75)) is None
    assert crop_model_for(ClassifierConfig(view="front", crop_weight=0.0)) is None
    assert load_pipeline("webcam").classifier.crop_weight == 0.0
    with pytest.raises(UserError, match="crop_weight must be a share from 0 to 1"):
        load_pipeline("lecture", overrides=["classifier.crop_weight=1.5"])


def test_the_packaged_crop_model_on_a_real_classroom_frame(assets: Path) -> None:
    """Every person the pose model finds in a real lecture frame gets four crop-state probabilities."""
    from engagement.detector import PoseDetector
    from engagement.features import head_boxes
    from engagement.sources import read_frame_at

    config = load_pipeline("lecture")
    frame, _, _ = read_frame_at(assets / "videos" / "classroom_front_class110.mp4", 1.0)
    (found,) = PoseDetector(config.detector, str(assets / "models")).detect_batch([frame])
    assert len(found) >= 3
    probs = CropStateModel.load().predict_proba(frame, head_boxes(found.keypoints, found.xyxy))
    assert probs.shape == (len(found), len(STATES)) and np.allclose(probs.sum(axis=1), 1, atol=1e-5)
    assert (probs[:, [STATE_INDEX[s] for s in CROP_STATES]] > 0).all()


def test_the_state_stage_mixes_the_crop_model_in(monkeypatch: pytest.MonkeyPatch) -> None:
    """Crop weight 1 gives the crop model's probabilities, in the running and the session baseline; rows the
    instructor's role took out are dropped from the crop model's rows too."""
    from engagement.classifier.stage import StateStage
    from engagement.detections import Detections
    from engagement.pipeline.analyse import StageTimer

    notes = np.zeros(len(STATES), np.float32)
    notes[STATE_INDEX["taking_notes"]] = 1.0

    class Crops:
        calls = 0

        def predict_proba(self, frame: np.ndarray, heads: np.ndarray) -> np.ndarray:
            Crops.calls += 1
            return np.tile(notes, (len(heads), 1))

    for baseline in ("running", "session"):
        config = load_pipeline("lecture", overrides=["classifier.crop_weight=1.0", f"classifier.baseline={baseline}"])
        stage = StateStage(config)
        assert stage.crops is not None
        stage.crops = Crops()
        frame = np.full((240, 320, 3), 90, np.uint8)
        people = Detections.from_boxes(np.array([[20, 20, 100, 220], [180, 30, 260, 230]], np.float32))
        people.track_id[:] = [1, 2]
        people.data["opted_out"] = np.array([False, False])
        timer = StageTimer()
        stage(frame, people, 0.0, timer)
        if baseline == "session":
            people.data["role"] = np.array(["student", "instructor"], object)
            stage.settle(timer)
        assert people.data["state"][0] == "taking_notes"
        assert people.data["state"][1] == ("" if baseline == "session" else "taking_notes")
        np.testing.assert_allclose(people.data["state_probs"][0], notes, atol=1e-6)
        assert "crops" in timer.seconds
    assert Crops.calls == 2


def test_only_consenting_people_are_classified_from_their_image() -> None:
    """The consent form's promise: the face model and the crop model read consenting people only."""
    from engagement.classifier.stage import StateStage
    from engagement.detections import Detections
    from engagement.pipeline.analyse import StageTimer

    seen = {"faces": [], "crops": []}

    class Crops:
        def predict_proba(self, frame: np.ndarray, heads: np.ndarray) -> np.ndarray:
            seen["crops"].append(heads.copy())
            return np.full((len(heads), len(STATES)), 1 / len(STATES), np.float32)

    stage = StateStage(load_pipeline("lecture", overrides=["classifier.baseline=running"]))
    stage.crops = Crops()
    features = stage.features

    class Features:
        def __getattr__(self, name: str):
            return getattr(features, name)

        def __call__(self, frame: np.ndarray, people: Detections, time_s: float) -> np.ndarray:
            seen["faces"].append(people.xyxy.copy())
            return features(frame, people, time_s)

    stage.features = Features()
    boxes = np.array([[20, 20, 100, 220], [120, 30, 200, 230], [220, 30, 300, 230]], np.float32)
    people = Detections.from_boxes(boxes)
    people.track_id[:] = [1, 2, 3]
    people.data["opted_out"] = np.array([False, True, False])
    stage(np.full((240, 320, 3), 90, np.uint8), people, 0.0, StageTimer())
    np.testing.assert_array_equal(seen["faces"][0], boxes[[0, 2]])
    assert len(seen["crops"]) == 1 and len(seen["crops"][0]) == 2
    assert people.data["state"][1] == "" and people.data["state"][0] != ""


def test_evaluate_mixes_the_crop_model_on_a_coco_set_and_refuses_it_elsewhere(
        tmp_path: Path, people: dict, capsys: pytest.CaptureFixture) -> None:
    folder = coco_set(tmp_path / "classroom")
    people["f1.jpg"] = np.array([[22, 18, 82, 95], [298, 22, 358, 92]])
    people["f2.jpg"] = np.array([[18, 20, 80, 90]])
    cache = ("--cache-dir", str(tmp_path / "cache"))
    assert main(["classifier", "evaluate", str(folder), *cache]) == 0
    default = json.loads(capsys.readouterr().out)
    assert default["crop_weight"] == 0.75 and default["model"]["n_samples"] == 4
    assert default["uncertain_below"] == load_pipeline("lecture").classifier.uncertain_below == 0.35  # chosen on the mix
    assert main(["classifier", "evaluate", str(folder), "--crop-weight", "0", *cache]) == 0
    features_only = json.loads(capsys.readouterr().out)
    assert features_only["crop_weight"] == 0.0 and features_only["uncertain_below"] == 0.45
    assert main(["classifier", "evaluate", str(folder), "--view", "ceiling", *cache]) == 0
    assert json.loads(capsys.readouterr().out)["crop_weight"] == 0.0  # not the crop model's view
    assert main(["classifier", "evaluate", str(folder), "--view", "ceiling", "--crop-weight", "0.5", *cache]) == 2
    assert "scores classrooms seen from the front; this is coco seen from the ceiling view" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["classifier", "evaluate", str(folder), "--crop-weight", "2"])
    assert "must be from 0 to 1" in capsys.readouterr().err


def test_predict_mixes_the_crop_model_for_the_front_view(tmp_path: Path, assets: Path, capsys: pytest.CaptureFixture) -> None:
    import cv2
    import pandas as pd

    from engagement.sources import read_frame_at

    frame, _, _ = read_frame_at(assets / "videos" / "classroom_front_class110.mp4", 1.0)
    cv2.imwrite(str(tmp_path / "still.png"), frame)
    tables = {}
    for name, extra in (("default", []), ("features only", ["--crop-weight", "0"])):
        assert main(["classifier", "predict", str(tmp_path / "still.png"), "--out", str(tmp_path / f"{len(tables)}.csv"),
                     *extra]) == 0
        tables[name] = pd.read_csv(tmp_path / f"{len(tables)}.csv")
    capsys.readouterr()
    mixed_in, alone = tables["default"], tables["features only"]
    assert len(mixed_in) == len(alone) >= 3 and mixed_in["person_found"].all()
    # the crop model gives no confused or bored: mixed in at 0.75, a quarter of the features' share is left
    np.testing.assert_allclose(mixed_in["p_confused"], 0.25 * alone["p_confused"], atol=2e-4)
    assert not np.allclose(mixed_in["p_taking_notes"], alone["p_taking_notes"], atol=0.01)
    assert main(["classifier", "predict", str(tmp_path / "still.png"), "--out", str(tmp_path / "w.csv"),
                 "--view", "webcam", "--crop-weight", "0.5"]) == 2
    assert "this is the webcam view" in capsys.readouterr().err


def test_train_crops_writes_a_model_and_refuses_other_formats(
        tmp_path: Path, people: dict, models_dir: Path, capsys: pytest.CaptureFixture) -> None:
    folder = coco_set(tmp_path / "classroom")
    people["f1.jpg"] = np.array([[22, 18, 82, 95], [120, 20, 180, 90]])
    people["f2.jpg"] = np.array([[18, 20, 80, 90]])
    out = tmp_path / "crops.safetensors"
    arguments = ["classifier", "train-crops", str(folder), "--out", str(out), "--epochs", "1",
                 "--device", "cpu", "--cache-dir", str(tmp_path / "cache")]
    assert main(arguments) == 0
    assert "fitted on 3 crops" in capsys.readouterr().err  # the "stand" box has no crop state
    assert len(CropStateModel.load(out).nets) == 1  # one network by default, as the packaged model
    assert main([*arguments[:-6], "--pretrained", str(tmp_path / "none.pt"), "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "none.pt" in err
    assert main([*arguments[:3], "--out", str(tmp_path / "crops.txt"), *arguments[5:]]) == 2
    assert capsys.readouterr().err == f"engagement: error: --out {tmp_path / 'crops.txt'}: must be a .safetensors file\n"
    (tmp_path / "webcam").mkdir()
    (tmp_path / "webcam" / "labels.csv").write_text("path,label\na.jpg,neutralface\n")
    assert main(["classifier", "train-crops", str(tmp_path / "webcam"), "--out", str(out)]) == 2
    assert "crops are cut from COCO classroom sets" in capsys.readouterr().err


@pytest.mark.parametrize("name, content", [("face_landmarker.task", b"PK\x03\x04 a MediaPipe bundle"),
                                           ("notes.pt", b"hello"), ("empty.pt", b"")])
def test_train_crops_refuses_pretrained_weights_that_are_no_yolo_model(
        tmp_path: Path, people: dict, capsys: pytest.CaptureFixture, name: str, content: bytes) -> None:
    (tmp_path / name).write_bytes(content)
    assert main(["classifier", "train-crops", str(coco_set(tmp_path / "classroom")), "--out", str(tmp_path / "c.safetensors"),
                 "--pretrained", str(tmp_path / name), "--device", "cpu"]) == 2
    assert capsys.readouterr().err == (f"engagement: error: crop model: {tmp_path / name} is not YOLOv8n detection "
                                       "weights (a PyTorch .pt such as yolov8n.pt)\n")


def test_crop_net_gives_four_logits() -> None:
    net = CropNet(yolo_backbone()).eval()
    with torch.inference_mode():
        assert net(torch.zeros(2, 3, CROP_SIZE, CROP_SIZE)).shape == (2, len(CROP_STATES))


def test_the_report_gives_the_crop_models_unseen_classroom_figures(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from engagement.classifier.crops import PACKAGED_CROP_WEIGHTS
    from engagement.classifier.model import StateClassifier
    from engagement.report.card import _crop_model_rows, summarize_card
    from engagement.session import ModelRecord

    def session(file: str | None) -> SimpleNamespace:
        return SimpleNamespace(models=SimpleNamespace(crop_model=ModelRecord(name="crop", file=file)))

    rows = _crop_model_rows(session(str(PACKAGED_CROP_WEIGHTS)))
    assert sorted(rows) == ["clabehavior room A, unseen, crop weight 0.75 with the crop model",
                            "clabehavior room B, unseen, crop weight 0.75 with the crop model"]
    summary = summarize_card(StateClassifier.load().model_card(), "shipped", rows)
    labels = [row["label"] for row in summary.metrics]
    assert any("crop weight 0.75 with the crop model" in label for label in labels)
    assert _crop_model_rows(session(str(tmp_path / "gone.safetensors"))) == {}
    assert _crop_model_rows(SimpleNamespace(models=SimpleNamespace(crop_model=None))) == {}


def test_a_tracks_crop_is_classified_again_only_after_the_refresh_time() -> None:
    from engagement.classifier.stage import StateStage
    from engagement.detections import Detections
    from engagement.pipeline.analyse import StageTimer

    classified: list[int] = []

    class Crops:
        def predict_proba(self, frame: np.ndarray, heads: np.ndarray) -> np.ndarray:
            classified.append(len(heads))
            probs = np.zeros((len(heads), len(STATES)), np.float32)
            probs[:, STATE_INDEX["attentive"] if len(classified) == 1 else STATE_INDEX["distracted"]] = 1.0
            return probs

    stage = StateStage(load_pipeline("lecture", overrides=["classifier.crop_refresh_s=1.0"]))
    stage.crops = Crops()
    frame = np.full((240, 320, 3), 90, np.uint8)
    seen = []
    for time_s, track_ids in ((0.0, [1, 2]), (0.5, [1, 2]), (0.9, [1, 3]), (1.2, [1, 2])):
        people = Detections.from_boxes(np.tile(np.array([[20, 20, 100, 220]], np.float32), (2, 1)))
        people.track_id[:] = track_ids
        people.data["opted_out"] = np.array([False, False])
        seen.append(stage._crop_probs(frame, people, time_s, StageTimer()))
    assert classified == [2, 1, 2]  # both new; the newcomer 3 only; both again after a second
    np.testing.assert_allclose(seen[1], seen[0])  # reused, not classified again
    assert seen[2][0, STATE_INDEX["attentive"]] == 1.0 and seen[2][1, STATE_INDEX["distracted"]] == 1.0
    with pytest.raises(UserError, match="crop_refresh_s must be 0"):
        load_pipeline("lecture", overrides=["classifier.crop_refresh_s=-1"])
