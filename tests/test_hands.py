"""Palm-filled wrists: the decoder and the assignment on synthetic arrays, the real palm model on a real frame."""

from pathlib import Path

import numpy as np
import pytest

from engagement.config import HandsConfig, PipelineConfig
from engagement.detections import KEYPOINT_INDEX, NUM_KEYPOINTS, Detections
from engagement.errors import UserError
from engagement.hands import (HandPresence, HandWrists, PalmDetector, Palms, decode_palms, hand_crop_corners, palm_anchors,
                              square_tiles, suppress, with_palm_wrists)

LEFT_WRIST, RIGHT_WRIST = KEYPOINT_INDEX["left_wrist"], KEYPOINT_INDEX["right_wrist"]


def facing_person(x0: float = 200.0, wrists: bool = False) -> Detections:
    """One person facing the camera, head centred at x0 + 100, shoulders at y 300."""
    keypoints = np.zeros((1, NUM_KEYPOINTS, 3), np.float32)
    for name, (x, y) in {"nose": (100, 100), "left_eye": (115, 90), "right_eye": (85, 90), "left_ear": (135, 95),
                         "right_ear": (65, 95), "left_shoulder": (170, 300), "right_shoulder": (30, 300)}.items():
        keypoints[0, KEYPOINT_INDEX[name]] = [x + x0, y, 0.9]
    if wrists:
        keypoints[0, LEFT_WRIST] = [x0 + 160, 420, 0.9]
    return Detections.from_boxes(np.array([[x0, 20, x0 + 200, 360]], np.float32), keypoints=keypoints)


def palms(*rows: tuple[float, float, float, float]) -> Palms:
    """Upright palms given as (score, centre x, centre y, side); the wrist 30 px below the centre, the knuckles 10 above."""
    data = np.array(rows, np.float32).reshape(-1, 4)
    score, x, y, side = data.T
    return Palms(score, np.stack([x - side / 2, y - side / 2, x + side / 2, y + side / 2], 1), np.stack([x, y + 30], 1),
                 np.stack([x, y - 10], 1))


def test_anchors_match_the_model_outputs() -> None:
    anchors = palm_anchors()
    assert anchors.shape == (2016, 2)
    assert anchors.min() > 0 and anchors.max() < 1
    assert np.allclose(anchors[0], [0.5 / 24, 0.5 / 24]) and np.allclose(anchors[-1], [11.5 / 12, 11.5 / 12])


def test_decode_keeps_confident_palms_around_their_anchor() -> None:
    anchors = palm_anchors()
    regressors = np.zeros((2016, 18), np.float32)
    logits = np.full(2016, -10.0, np.float32)
    logits[100] = 3.0
    regressors[100, :6] = [0.0, 0.0, 48.0, 48.0, 0.0, 19.2]  # a box 0.25 wide, the wrist 0.1 below the anchor
    regressors[100, 8:10] = [0.0, -19.2]  # the middle finger's base 0.1 above it
    found = decode_palms(regressors, logits, anchors, min_score=0.5)
    assert len(found) == 1
    assert found.scores[0] == pytest.approx(1 / (1 + np.exp(-3.0)))
    centre = anchors[100]
    assert np.allclose(found.xyxy[0], [*(centre - 0.125), *(centre + 0.125)])
    assert np.allclose(found.wrists[0], centre + [0.0, 0.1])
    assert np.allclose(found.knuckles[0], centre - [0.0, 0.1])
    assert len(decode_palms(regressors, logits, anchors, min_score=0.99)) == 0


def test_suppress_keeps_the_best_of_overlapping_palms() -> None:
    kept = suppress(palms((0.6, 100, 100, 50), (0.9, 105, 100, 50), (0.7, 300, 100, 50)))
    assert kept.scores.tolist() == pytest.approx([0.9, 0.7])


def test_the_hand_crop_is_turned_so_that_the_fingers_point_up() -> None:
    upright = hand_crop_corners(palms((0.9, 100, 100, 40)))[0]
    # 2.6 palms wide, moved half a palm towards the fingers (up): centre (100, 80), half side 52
    assert np.allclose(upright, [[48, 28], [152, 28], [48, 132]])
    # fingers pointing left: the crop's top edge is on the left, its left edge at the bottom (turned, not mirrored)
    sideways = Palms(np.ones(1, np.float32), np.float32([[80, 80, 120, 120]]), np.float32([[130, 100]]), np.float32([[110, 100]]))
    assert np.allclose(hand_crop_corners(sideways)[0], [[28, 152], [28, 48], [132, 152]])


@pytest.mark.parametrize("height, width, expected", [
    (360, 640, [(0, 0, 360), (280, 0, 360)]),
    (720, 1280, [(0, 0, 720), (560, 0, 720)]),
    (500, 500, [(0, 0, 500)]),
    (640, 360, [(0, 0, 360), (0, 280, 360)]),
])
def test_square_tiles_cover_the_frame(height: int, width: int, expected: list) -> None:
    assert square_tiles(height, width) == expected


def test_a_palm_left_of_the_head_fills_the_missing_right_wrist() -> None:
    person = facing_person()
    filled = with_palm_wrists(person, palms((0.8, 150, 120, 60)))
    assert filled.keypoints[0, RIGHT_WRIST].tolist() == pytest.approx([150, 150, 0.8])
    assert filled.keypoints[0, LEFT_WRIST, 2] == 0
    assert person.keypoints[0, RIGHT_WRIST, 2] == 0, "the input is not changed"


def test_a_wrist_the_pose_model_found_is_kept() -> None:
    person = facing_person(wrists=True)
    filled = with_palm_wrists(person, palms((0.95, 380, 200, 60)))
    assert filled.keypoints[0, LEFT_WRIST].tolist() == pytest.approx([360, 420, 0.9])


def test_a_palm_out_of_reach_or_nobody_changes_nothing() -> None:
    person = facing_person()
    far = with_palm_wrists(person, palms((0.9, 1500, 100, 60)))
    assert np.array_equal(far.keypoints, person.keypoints)
    assert len(with_palm_wrists(Detections.empty(), palms((0.9, 100, 100, 60)))) == 0


def test_each_palm_goes_to_the_nearest_head_and_each_wrist_is_filled_once() -> None:
    two = Detections.merge([facing_person(0.0), facing_person(600.0)])
    filled = with_palm_wrists(two, palms((0.7, 760, 100, 60), (0.9, 770, 110, 60), (0.8, 40, 100, 60)))
    assert filled.keypoints[1, LEFT_WRIST, 2] == pytest.approx(0.9), "the best palm right of the second head"
    assert filled.keypoints[0, RIGHT_WRIST, 2] == pytest.approx(0.8)
    assert filled.keypoints[0, LEFT_WRIST, 2] == 0 and filled.keypoints[1, RIGHT_WRIST, 2] == 0


@pytest.fixture(scope="module")
def webcam_frames(webcam_video: Path) -> dict[int, np.ndarray]:
    from engagement.sources import read_frames

    return dict(enumerate(read_frames(webcam_video, max_frames=361)))


def test_the_real_hand_models_find_a_raised_hand_and_not_a_face(webcam_frames: dict, hand_models: Path) -> None:
    hands = HandWrists.from_config(HandsConfig(enabled=True), str(hand_models))
    # frame 200 of the acted session is a raised hand; 20 and 360 a face with the hands out of view
    raised = hands.confirmed_palms(webcam_frames[200])
    assert len(raised) == 1 and raised.xyxy[0, 3] < 0.6 * webcam_frames[200].shape[0], "the hand is up, beside the head"
    for still in (20, 360):
        assert len(hands.confirmed_palms(webcam_frames[still])) == 0
    # close up, with the arm cut off: the hand is still found
    close_up = webcam_frames[200][60:300, 40:467]
    assert len(hands.confirmed_palms(close_up)) == 1


def test_the_presence_check_rejects_a_palm_that_is_not_a_hand(webcam_frames: dict, hand_models: Path) -> None:
    presence = HandPresence(models_dir=str(hand_models))
    # close up, the palm detector takes part of this neutral face for a palm
    frame = webcam_frames[20][40:340, 100:633]
    found = PalmDetector(models_dir=str(hand_models))(frame)
    assert len(found) == 1 and presence(frame, found)[0] < 0.1
    raised = PalmDetector(models_dir=str(hand_models))(webcam_frames[200])
    assert presence(webcam_frames[200], raised).max() > 0.9


def test_hand_wrists_fill_the_raised_hand_of_a_person_without_arms(webcam_frames: dict, hand_models: Path) -> None:
    frame = webcam_frames[200]
    person = facing_person(x0=200.0)  # keypoints for the head and shoulders only
    hands = HandWrists.from_config(HandsConfig(enabled=True), str(hand_models))
    filled = hands(frame, person)
    (palm,) = hands.confirmed_palms(frame).xyxy
    assert filled.keypoints[0, LEFT_WRIST, 2] == 0, "the hand is on the image's left: the person's right"
    x, y, score = filled.keypoints[0, RIGHT_WRIST]
    assert score >= 0.5 and palm[0] <= x <= palm[2] and palm[1] <= y <= palm[3] + 0.25 * (palm[3] - palm[1])


@pytest.mark.parametrize("model, what", [("palm_model", "palm detector"), ("landmark_model", "hand landmark model")])
def test_a_file_that_is_no_model_is_one_line(tmp_path: Path, hand_models: Path, model: str, what: str) -> None:
    bogus = tmp_path / "bogus.tflite"
    bogus.write_bytes(b"not a model")
    config = HandsConfig(enabled=True, **{model: str(bogus)})
    with pytest.raises(UserError, match=f"cannot load {what}"):
        HandWrists.from_config(config, str(hand_models))


def test_a_missing_hand_model_names_the_install_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from engagement.errors import ModelNotFoundError

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    with pytest.raises(ModelNotFoundError, match="palm_detection_full.tflite.*engagement models hands"):
        PalmDetector(models_dir=str(tmp_path))


@pytest.mark.parametrize("key, value, message", [
    ("min_presence", 1.5, "hands.min_presence must be a probability from 0 to 1"),
    ("min_palm_score", 0.1, "hands.min_palm_score must be from 0.3 to 1"),  # its wrist would count as missing
])
def test_hand_thresholds_are_checked(key: str, value: float, message: str) -> None:
    config = PipelineConfig(hands=HandsConfig(enabled=True, **{key: value}))
    with pytest.raises(UserError, match=message):
        config.validate()


def test_the_analyzer_fills_wrists_before_tracking() -> None:
    """The hands stage runs on the detector's people, so the tracker, the tracklet log and the features see the wrist."""
    from engagement.consent.stage import ConsentStage
    from engagement.config import ConsentConfig
    from engagement.pipeline.analyse import Analyzer

    class OnePerson:
        batch_size = 1

        def detect_batch(self, images: list[np.ndarray]) -> list[Detections]:
            return [facing_person() for _ in images]

    class SeenByTracker:
        def update(self, frame: np.ndarray, detections: Detections) -> Detections:
            self.seen = detections
            tracked = detections[np.ones(len(detections), bool)]
            tracked.track_id = np.ones(len(tracked), np.int64)
            return tracked

    class RaisedRightHand:
        def __call__(self, frame: np.ndarray, detections: Detections) -> Detections:
            return with_palm_wrists(detections, palms((0.9, 150, 60, 50)))

    tracker = SeenByTracker()
    analyzer = Analyzer(PipelineConfig(), OnePerson(), tracker, ConsentStage(ConsentConfig()), hands=RaisedRightHand())
    result = analyzer(np.zeros((360, 640, 3), np.uint8), 0.0)
    assert tracker.seen.keypoints[0, RIGHT_WRIST].tolist() == pytest.approx([150, 90, 0.9])
    assert result.keypoints[0, RIGHT_WRIST, 2] == pytest.approx(0.9)
    assert "hands" in analyzer.timer.seconds


def test_openvino_and_opencv_read_the_hand_models_alike(webcam_frames: dict, hand_models: Path) -> None:
    """OpenVINO runs the models in the pipeline; OpenCV's DNN module is the fallback without it: same outputs."""
    import cv2

    from engagement.hands import INPUT_SIZE, TFLiteModel

    tile = cv2.resize(webcam_frames[200][:, :360], (INPUT_SIZE, INPUT_SIZE))[:, :, ::-1].astype(np.float32) / 255
    outputs = [TFLiteModel(hand_models / "palm_detection_full.tflite", "palm detector", backend)(tile)
               for backend in ("openvino", "opencv")]
    for name in ("Identity", "Identity_1"):
        assert outputs[0][name].shape == (1, 2016, 18 if name == "Identity" else 1)
        np.testing.assert_allclose(outputs[0][name], outputs[1][name].reshape(outputs[0][name].shape), atol=2e-3)


def test_the_hand_models_do_not_run_when_every_wrist_is_found() -> None:
    class Counting:
        calls = 0

        def __call__(self, frame: np.ndarray) -> Palms:
            Counting.calls += 1
            return palms((0.9, 150, 60, 50))

    hands = HandWrists(Counting(), lambda frame, found: np.ones(len(found), np.float32), 0.5)
    frame = np.zeros((10, 10, 3), np.uint8)
    both = facing_person(wrists=True)
    both.keypoints[0, RIGHT_WRIST] = [240, 420, 0.9]
    assert hands(frame, both) is both and len(hands(frame, Detections.empty())) == 0 and Counting.calls == 0
    filled = hands(frame, facing_person(wrists=True))
    assert Counting.calls == 1 and filled.keypoints[0, RIGHT_WRIST, 2] == pytest.approx(0.9)


def test_a_cluster_checks_the_hand_models_where_the_pipeline_uses_them() -> None:
    from engagement.batch import model_names
    from engagement.config import load_pipeline

    assert {"palm_detection_full.tflite", "hand_landmark_full.tflite"} <= set(model_names(load_pipeline("webcam")))
    assert not {"palm_detection_full.tflite", "hand_landmark_full.tflite"} & set(model_names(load_pipeline("lecture")))


def test_predict_with_hands_sees_more_of_a_raised_hand_in_a_close_still(webcam_frames: dict, hand_models: Path, tmp_path: Path) -> None:
    import cv2
    import pandas as pd

    from engagement.cli import main

    still = tmp_path / "stills" / "close_up.jpg"
    still.parent.mkdir()
    cv2.imwrite(str(still), webcam_frames[200][60:300, 40:467])  # the raised hand's arm cut off
    tables = {}
    for name, extra in (("pose", []), ("hands", ["--hands"])):
        out = tmp_path / f"{name}.csv"
        assert main(["classifier", "predict", str(still), "--out", str(out), "--view", "webcam", *extra]) == 0
        tables[name] = pd.read_csv(out)
    assert len(tables["pose"]) == len(tables["hands"]) == 1 and tables["hands"]["person_found"].all()
    assert tables["hands"]["p_engaged_in_discussion"][0] > tables["pose"]["p_engaged_in_discussion"][0]


def close_up_set(folder: Path, frames: dict) -> Path:
    """A webcam-style labelled folder of two close stills: a raised hand whose arm is cut off, and a neutral face."""
    import csv

    import cv2

    (folder / "images").mkdir(parents=True)
    rows = [("images/raised.jpg", "raisehand", 200), ("images/neutral.jpg", "neutralface", 20)]
    with open(folder / "labels.csv", "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["path", "label", "lighting", "clip", "frame_index"])
        for path, label, index in rows:
            cv2.imwrite(str(folder / path), frames[index][60:300, 40:467])
            writer.writerow([path, label, "day", f"clip_{label}", index])
    return folder


def test_features_with_hands_are_cached_apart_from_those_without(webcam_frames: dict, hand_models: Path, tmp_path: Path) -> None:
    from engagement.classifier.data import DatasetFeaturizer
    from engagement.config import load_pipeline
    from engagement.features import FEATURE_NAMES

    folder = close_up_set(tmp_path / "set", webcam_frames)
    hands = load_pipeline("webcam").hands
    right = FEATURE_NAMES.index("has_right_wrist")
    runs = [DatasetFeaturizer(cache_dir=tmp_path / "cache", hands=h).featurize(folder) for h in (None, hands, None, hands)]
    assert [run.X[0, right] for run in runs] == [0, 1, 0, 1], "the raised hand's wrist, from the hands only"
    assert np.array_equal(runs[1].X, runs[3].X, equal_nan=True) and np.array_equal(runs[0].X, runs[2].X, equal_nan=True)
    assert len(list((tmp_path / "cache" / "features").iterdir())) == 2


def test_evaluate_and_predict_refuse_hands_on_tiles(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from engagement.cli import main

    (tmp_path / "classroom").mkdir()
    (tmp_path / "classroom" / "annotations.json").write_text("{}")
    assert main(["classifier", "evaluate", str(tmp_path / "classroom"), "--hands"]) == 2
    error = capsys.readouterr().err
    assert "hand models run on whole images" in error and len(error.strip().splitlines()) == 1
    assert main(["classifier", "predict", str(tmp_path), "--out", str(tmp_path / "p.csv"), "--tiles", "3x3", "--hands"]) == 2
    assert "--hands runs on whole frames" in capsys.readouterr().err
