"""Every dataset format ``engagement classifier evaluate`` reads, on tiny synthetic folders (the detector is
replaced by known boxes), the level figures, and ``engagement classifier predict`` on stills and a video."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import spearmanr

from engagement.classifier.data import DatasetFeaturizer
from engagement.classifier.model import StateClassifier
from engagement.classifier.train import level_figures
from engagement.cli import main
from engagement.detections import Detections
from engagement.features import FEATURE_NAMES
from engagement.states import STATE_INDEX, STATES, UNCERTAIN


def write_image(path: Path, size: tuple[int, int] = (64, 64)) -> Path:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((*size, 3), 128, np.uint8))
    return path


def write_labels(folder: Path, rows: list[dict]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "labels.csv", "w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    for row in rows:
        write_image(folder / row["path"])
    return folder


@pytest.fixture
def people(monkeypatch: pytest.MonkeyPatch) -> dict[str, np.ndarray]:
    """The detector, replaced: image file name -> person boxes (xyxy); an image not listed shows nobody."""
    boxes: dict[str, np.ndarray] = {}

    def detections(self: DatasetFeaturizer, image_path: Path, frame: np.ndarray, grid: tuple[int, int]) -> Detections:
        return Detections.from_boxes(boxes.get(Path(image_path).name, np.empty((0, 4))))

    monkeypatch.setattr(DatasetFeaturizer, "detections", detections)
    return boxes


def evaluate(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, dict | None, str]:
    code = main(["classifier", "evaluate", *args])
    captured = capsys.readouterr()
    return code, json.loads(captured.out) if code == 0 else None, captured.err


def test_a_map_naming_an_unknown_state_is_one_line_listing_the_states(
        tmp_path: Path, people: dict, capsys: pytest.CaptureFixture) -> None:
    folder = write_labels(tmp_path / "set", [{"path": "a.jpg", "label": "focused"}])
    (tmp_path / "map.yaml").write_text("focused: concentrating\n")
    code, _, err = evaluate(capsys, str(folder), "--label-map", str(tmp_path / "map.yaml"))
    assert code == 2 and "unknown state 'concentrating'" in err and "attentive, distracted" in err
    assert len(err.strip().splitlines()) == 1
    (tmp_path / "nested.yaml").write_text("mine:\n  focused: attentive\n")
    code, _, err = evaluate(capsys, str(folder), "--label-map", str(tmp_path / "nested.yaml"))
    assert code == 2 and "flat 'label: state' mapping" in err
    code, _, err = evaluate(capsys, str(folder), "--label-map", str(tmp_path / "missing.yaml"))
    assert code == 2 and "cannot read label map" in err


def test_a_map_that_is_not_text_is_one_line_in_evaluate_and_train_crops(
        tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = write_labels(tmp_path / "set", [{"path": "a.jpg", "label": "focused"}])
    (tmp_path / "bin.yaml").write_bytes(b"\xff\xfe\x00bad")
    code, _, err = evaluate(capsys, str(folder), "--label-map", str(tmp_path / "bin.yaml"))
    assert code == 2 and err == f"engagement: error: {tmp_path / 'bin.yaml'}: not a label map (not UTF-8 text)\n"
    (tmp_path / "weights.pt").write_bytes(b"")
    monkeypatch.setattr("engagement.classifier.crops.yolo_backbone", lambda weights: None)  # taken as YOLOv8n
    classroom = tmp_path / "classroom"
    classroom.mkdir()
    (classroom / "annotations.json").write_text('{"images": [], "annotations": [], "categories": []}')
    assert main(["classifier", "train-crops", str(classroom), "--out", str(tmp_path / "c.safetensors"),
                 "--pretrained", str(tmp_path / "weights.pt"), "--label-map", str(tmp_path / "bin.yaml")]) == 2
    assert capsys.readouterr().err == f"engagement: error: {tmp_path / 'bin.yaml'}: not a label map (not UTF-8 text)\n"


def test_an_unknown_label_without_a_map_is_one_line_listing_the_states(
        tmp_path: Path, people: dict, capsys: pytest.CaptureFixture) -> None:
    folder = write_labels(tmp_path / "set", [{"path": "a.jpg", "label": "sleeping"}])
    code, _, err = evaluate(capsys, str(folder))
    assert code == 2 and "label 'sleeping' has no engagement state" in err and "--label-map" in err
    assert "taking_notes" in err and len(err.strip().splitlines()) == 1
    (tmp_path / "map.yaml").write_text("writing: taking_notes\n")  # a map that misses the label
    code, _, err = evaluate(capsys, str(folder), "--label-map", str(tmp_path / "map.yaml"))
    assert code == 2 and "label 'sleeping' has no engagement state" in err


def test_empty_and_unrecognised_folders(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "empty").mkdir()
    code, _, err = evaluate(capsys, str(tmp_path / "empty"))
    assert code == 2 and "not a dataset (expected annotations.json, labels.csv" in err
    write_image(tmp_path / "loose" / "a.jpg")
    code, _, err = evaluate(capsys, str(tmp_path / "loose"))
    assert code == 2 and "not a dataset" in err
    (tmp_path / "header").mkdir()
    (tmp_path / "header" / "labels.csv").write_text("path,label\n")
    code, _, err = evaluate(capsys, str(tmp_path / "header"))
    assert code == 2 and "no labelled samples" in err
    (tmp_path / "coco").mkdir()
    (tmp_path / "coco" / "annotations.json").write_text("{not json")
    code, _, err = evaluate(capsys, str(tmp_path / "coco"))
    assert code == 2 and "not COCO annotations" in err


@pytest.mark.parametrize(("data_yaml", "message"), [
    (b"names: [", "not valid YAML (while parsing"),
    (b"- a\n", "no class names"),
    (b"nc: 1\n", "no class names"),
    (b"names: []\n", "no class names"),
    (b"\xff\xfe\x00bad", "not a YOLO data.yaml (not UTF-8 text)"),
])
def test_a_yolo_set_with_a_broken_data_yaml_is_one_line_naming_it(
        tmp_path: Path, capsys: pytest.CaptureFixture, data_yaml: bytes, message: str) -> None:
    write_image(tmp_path / "set" / "images" / "a.jpg")
    (tmp_path / "set" / "labels").mkdir()
    (tmp_path / "set" / "labels" / "a.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    (tmp_path / "set" / "data.yaml").write_bytes(data_yaml)
    code, _, err = evaluate(capsys, str(tmp_path / "set"))
    assert code == 2 and err.startswith(f"engagement: error: {tmp_path / 'set' / 'data.yaml'}: {message}")
    assert len(err.strip().splitlines()) == 1


def test_labels_csv_with_a_map_an_image_with_nobody_is_lost_coverage(
        tmp_path: Path, people: dict, capsys: pytest.CaptureFixture) -> None:
    folder = write_labels(tmp_path / "set", [{"path": "a.jpg", "label": "focused"},
                                             {"path": "b.jpg", "label": "away"},
                                             {"path": "c.jpg", "label": "snack"}])
    people["a.jpg"] = np.array([[4, 4, 60, 60]])  # b.jpg: nobody, and no face in a plain grey image
    (tmp_path / "map.yaml").write_text("focused: attentive\naway: distracted\nsnack: null\n")
    code, report, err = evaluate(capsys, str(folder), "--label-map", str(tmp_path / "map.yaml"),
                                 "--cache-dir", str(tmp_path / "cache"))
    assert code == 0 and "format labels_csv" in err
    assert report["format"] == "labels_csv" and report["dataset"] == "set"
    assert report["states"] == ["attentive", "distracted"] and report["model"]["n_samples"] == 2  # snack left out
    assert report["coverage"] == 0.5
    assert report["model"]["confusion_matrix"]["counts"][1][-1] == 1  # the "away" image: missed


def test_the_feature_cache_notices_changed_labels_and_images(
        tmp_path: Path, people: dict, capsys: pytest.CaptureFixture) -> None:
    folder = write_labels(tmp_path / "set", [{"path": "a.jpg", "label": "focused"}, {"path": "b.jpg", "label": "away"}])
    people["a.jpg"] = people["b.jpg"] = np.array([[4, 4, 60, 60]])
    (tmp_path / "map.yaml").write_text("focused: attentive\naway: distracted\n")
    arguments = (str(folder), "--label-map", str(tmp_path / "map.yaml"), "--cache-dir", str(tmp_path / "cache"))
    assert evaluate(capsys, *arguments)[1]["model"]["n_samples"] == 2
    write_labels(folder, [{"path": "a.jpg", "label": "focused"}])  # relabelled: one image left
    assert evaluate(capsys, *arguments)[1]["model"]["n_samples"] == 1
    write_image(folder / "a.jpg", size=(48, 48))  # the image replaced: read again, not taken from the cache
    people["a.jpg"] = np.empty((0, 4))
    assert evaluate(capsys, *arguments)[1]["coverage"] == 0.0
    assert len(list((tmp_path / "cache" / "features").iterdir())) == 3


def test_labels_csv_without_person_column_has_no_track_history(tmp_path: Path, people: dict) -> None:
    rows = [{"path": f"{i}.jpg", "label": "focused"} for i in range(12)]
    folder = write_labels(tmp_path / "set", rows)
    for row in rows:
        people[row["path"]] = np.array([[4, 4, 60, 60]])
    (tmp_path / "map.yaml").write_text("focused: attentive\n")
    features = DatasetFeaturizer().featurize(folder, label_map=tmp_path / "map.yaml")
    assert len(set(features.groups)) == 12 and features.covered.all()


@pytest.mark.parametrize(("text", "message"), [
    ("path,label,person,frame_index\na.jpg,engaged,,x\n", "line 2: the person cell is empty"),
    ("path,label,person,frame_index\na.jpg,engaged,p1,x\n", "line 2: frame_index 'x' is not a number"),
    ("path,label,clip\na.jpg,focused,c1\n\nb.jpg,,c1\n", "line 4: the label cell is empty"),  # after a blank line
    ("path,label,clip\na.jpg,neutralface,\n", "line 2: the clip cell is empty"),  # the webcam set's reader
])
def test_an_empty_cell_or_a_frame_index_that_is_no_number_is_one_line_naming_the_line(
        tmp_path: Path, people: dict, capsys: pytest.CaptureFixture, text: str, message: str) -> None:
    (tmp_path / "set").mkdir()
    (tmp_path / "set" / "labels.csv").write_text(text)
    code, _, err = evaluate(capsys, str(tmp_path / "set"))
    assert code == 2 and err == f"engagement: error: {tmp_path / 'set' / 'labels.csv'} {message}\n"


def test_a_person_named_like_a_missing_value_is_a_person(tmp_path: Path, people: dict) -> None:
    folder = write_labels(tmp_path / "set", [{"path": "a.jpg", "label": "engaged", "person": "NA", "frame_index": 1},
                                             {"path": "b.jpg", "label": "engaged", "person": "None", "frame_index": 0}])
    features = DatasetFeaturizer().featurize(folder)
    assert list(features.groups) == ["NA", "None"]


def coco_set(folder: Path) -> Path:
    """Two frames (rooms A and B); frame 1 has three labelled students, frame 2 one, plus a standing one."""
    write_image(folder / "images" / "f1.jpg", (200, 400))
    write_image(folder / "images" / "f2.jpg", (200, 400))
    categories = [{"id": 1, "name": "lookup"}, {"id": 2, "name": "write"}, {"id": 3, "name": "stand"}]
    boxes = [(1, 1, [20, 20, 60, 70]), (1, 2, [120, 20, 60, 70]), (1, 1, [300, 20, 60, 70]),
             (2, 2, [20, 20, 60, 70]), (2, 3, [200, 10, 60, 120])]
    (folder / "annotations.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "images/f1.jpg", "width": 400, "height": 200, "room": "A"},
                   {"id": 2, "file_name": "images/f2.jpg", "width": 400, "height": 200, "room": "B"}],
        "annotations": [{"id": i, "image_id": image, "category_id": category, "bbox": box}
                        for i, (image, category, box) in enumerate(boxes)],
        "categories": categories}))
    return folder


def test_coco_boxes_are_matched_one_to_one_and_unmatched_ones_are_lost_coverage(
        tmp_path: Path, people: dict, capsys: pytest.CaptureFixture) -> None:
    folder = coco_set(tmp_path / "classroom")
    # frame 1: two of the three labelled students detected, plus someone unlabelled far away; frame 2: its student
    people["f1.jpg"] = np.array([[22, 18, 82, 95], [298, 22, 358, 92], [200, 150, 230, 199]])
    people["f2.jpg"] = np.array([[18, 20, 80, 90]])
    code, report, err = evaluate(capsys, str(folder), "--cache-dir", str(tmp_path / "cache"))
    assert code == 0 and "format coco" in err
    assert report["format"] == "coco" and report["dataset"] == "clabehavior"
    assert report["model"]["n_samples"] == 4  # "stand" is left out
    assert report["coverage"] == 0.75
    confusion = dict(zip(report["model"]["confusion_matrix"]["rows"], report["model"]["confusion_matrix"]["counts"]))
    assert confusion["taking_notes"][-1] == 1 and confusion["attentive"][-1] == 0  # the unmatched "write" box
    code, room_b, _ = evaluate(capsys, str(folder), "--rooms", "B", "--cache-dir", str(tmp_path / "cache"))
    assert code == 0 and room_b["model"]["n_samples"] == 1 and room_b["coverage"] == 1.0
    code, _, err = evaluate(capsys, str(folder), "--rooms", "C", "--cache-dir", str(tmp_path / "cache"))
    assert code == 2 and "no such rows; found: A, B" in err
    code, _, err = evaluate(capsys, str(folder), "--persons", "1", "--cache-dir", str(tmp_path / "cache"))
    assert code == 2 and "does not apply to the coco format" in err


def test_coco_image_with_nobody_counts_every_box_as_missed(tmp_path: Path, people: dict) -> None:
    features = DatasetFeaturizer().featurize(coco_set(tmp_path / "classroom"))
    assert not features.covered.any() and list(features.groups) == ["A", "A", "A", "B"]


@pytest.mark.parametrize(("where", "key", "value", "message"), [
    ("", "images", 5, "not COCO annotations (TypeError: 'images' is not a list of objects)"),
    ("", "images", [7], "not COCO annotations (TypeError: 'images' is not a list of objects)"),
    ("annotations", "bbox", [0, 0], "not COCO annotations (ValueError: bbox [0, 0] is not [x, y, width, height])"),
    ("annotations", "bbox", "x", "not COCO annotations (ValueError: bbox 'x' is not [x, y, width, height])"),
    ("images", "width", "wide", "image 1 lacks file_name, or a positive width and height"),
    ("images", "height", 0, "image 1 lacks file_name, or a positive width and height"),
])
def test_malformed_coco_annotations_are_one_line(
        tmp_path: Path, people: dict, capsys: pytest.CaptureFixture, where: str, key: str, value: object,
        message: str) -> None:
    folder = coco_set(tmp_path / "classroom")
    data = json.loads((folder / "annotations.json").read_text())
    (data[where][0] if where else data)[key] = value
    (folder / "annotations.json").write_text(json.dumps(data))
    code, _, err = evaluate(capsys, str(folder))
    assert code == 2 and err == f"engagement: error: {folder / 'annotations.json'}: {message}\n"


def test_level_figures_on_known_scores() -> None:
    scores = np.array([80.0, 90.0, 10.0, 85.0, 50.0])
    levels = np.array(["engaged", "engaged", "disengaged", "disengaged", "partially_engaged"])
    figures = level_figures(scores, levels)
    assert figures["level_auc"] == pytest.approx(0.75)  # 3 of the 4 engaged/disengaged pairs ranked right
    assert figures["level_spearman"] == pytest.approx(spearmanr(scores, [2, 2, 0, 0, 1]).correlation)
    assert figures["level_mean_score"] == {"disengaged": 47.5, "partially_engaged": 50.0, "engaged": 85.0}
    assert level_figures(scores[:2], levels[:2])["level_auc"] is None  # one level only: no AUC


def test_levels_set_gives_the_ranking_of_the_engagement_score(
        tmp_path: Path, people: dict, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    # the person box's aspect (height / width) stands for the model's attentive probability: score = 100 * aspect
    heights = {"d1": 10, "d2": 50, "p1": 30, "e1": 40, "e2": 60}
    rows = [{"path": f"{name}.jpg", "label": {"d": "disengaged", "p": "partially_engaged", "e": "engaged"}[name[0]],
             "person": "person7", "frame_index": i} for i, name in enumerate(heights)]
    folder = write_labels(tmp_path / "levels", rows)
    for name, height in heights.items():
        people[f"{name}.jpg"] = np.array([[0, 0, 60, height * 0.6]])
    aspect = FEATURE_NAMES.index("box_aspect")

    def predict_proba(self: StateClassifier, X: np.ndarray) -> np.ndarray:
        probs = np.zeros((len(X), len(STATES)), np.float32)
        probs[:, STATE_INDEX["attentive"]] = X[:, aspect]
        probs[:, STATE_INDEX["distracted"]] = 1 - X[:, aspect]
        return probs

    monkeypatch.setattr(StateClassifier, "predict_proba", predict_proba)
    code, report, err = evaluate(capsys, str(folder), "--persons", "7", "--cache-dir", str(tmp_path / "cache"))
    assert code == 0 and "format levels" in err
    assert report["format"] == "levels"
    assert report["level_auc"] == pytest.approx(0.75)  # engaged 40, 60 against disengaged 10, 50
    assert report["level_mean_score"]["engaged"] == pytest.approx(50.0)
    assert report["level_spearman"] == pytest.approx(spearmanr([10, 50, 30, 40, 60], [0, 0, 1, 2, 2]).correlation)
    assert report["level_counts"] == {"disengaged": 2, "partially_engaged": 1, "engaged": 2}
    assert "level_auc" in report["level_rules"]
    # the packaged map also scores the two ends as states (engaged: attentive, disengaged: distracted)
    assert report["states"] == ["attentive", "distracted"]
    assert sum(map(sum, report["model"]["confusion_matrix"]["counts"])) == 4  # partially engaged: no state
    label_map = tmp_path / "levels_only.yaml"
    label_map.write_text("engaged: null\ndisengaged: null\npartially_engaged: null\n")
    code, ranking_only, _ = evaluate(capsys, str(folder), "--label-map", str(label_map), "--cache-dir", str(tmp_path / "cache"))
    assert code == 0 and "model" not in ranking_only and ranking_only["level_auc"] == pytest.approx(0.75)
    # a user's map on a folder named like the training set: the model's own outputs for that set and its training
    # majority mean other states, so neither is used
    renamed = write_labels(tmp_path / "engagement_levels", rows)
    other_map = tmp_path / "other.yaml"
    other_map.write_text("engaged: taking_notes\ndisengaged: bored\npartially_engaged: null\n")
    code, remapped, _ = evaluate(capsys, str(renamed), "--label-map", str(other_map), "--cache-dir", str(tmp_path / "cache"))
    assert code == 0 and remapped["dataset"] == "engagement_levels" and "model_own_labels" not in remapped
    assert remapped["states"] == ["bored", "taking_notes"] and remapped["majority_state"] in ("bored", "taking_notes")


def test_predict_an_image_with_nobody_gets_one_row_saying_so(
        tmp_path: Path, people: dict, capsys: pytest.CaptureFixture) -> None:
    write_image(tmp_path / "stills" / "empty.jpg")
    write_image(tmp_path / "stills" / "two.jpg", (120, 200))
    people["two.jpg"] = np.array([[4, 4, 90, 118], [100, 4, 190, 118]])
    out = tmp_path / "out" / "preds.csv"
    out.parent.mkdir()
    assert main(["classifier", "predict", str(tmp_path / "stills"), "--out", str(out)]) == 0
    import pandas as pd

    table = pd.read_csv(out)
    assert list(table["source"].map(lambda s: Path(s).name)) == ["empty.jpg", "two.jpg", "two.jpg"]
    nobody = table.iloc[0]
    assert not nobody["person_found"] and not nobody["face_found"] and pd.isna(nobody["state"])
    found = table.iloc[1:]
    assert found["person_found"].all() and set(found["state"]) <= {*STATES, UNCERTAIN}
    np.testing.assert_allclose(found[[f"p_{s}" for s in STATES]].sum(axis=1), 1.0, atol=1e-3)
    assert ((found["score"] >= 0) & (found["score"] <= 100)).all()
    assert [p.name for p in out.parent.iterdir()] == ["preds.csv"]  # a table only, never an image
    assert main(["classifier", "predict", str(tmp_path / "nowhere.jpg"), "--out", str(out)]) == 2
    for tiles in ("3", "100x100", "0x2"):
        assert main(["classifier", "predict", str(tmp_path / "stills"), "--out", str(out), "--tiles", tiles]) == 2
        assert "--tiles must be ROWSxCOLS of 1 to 8 each" in capsys.readouterr().err


def test_predict_writes_a_csv_file_and_never_over_what_it_reads(
        tmp_path: Path, people: dict, capsys: pytest.CaptureFixture) -> None:
    still = write_image(tmp_path / "still.jpg")
    before = still.read_bytes()
    (tmp_path / "clip.csv").write_bytes(b"a video named .csv")
    (tmp_path / "w.csv").write_bytes(b"weights named .csv")
    (tmp_path / "link.csv").symlink_to(tmp_path / "clip.csv")
    (tmp_path / "x").mkdir()
    for path, out, extra, message in (
            (still, still, [], f"--out {still}: must be a .csv file"),
            (still, tmp_path / "rows.txt", [], f"--out {tmp_path / 'rows.txt'}: must be a .csv file"),
            (tmp_path / "clip.csv", tmp_path / "link.csv", [],
             f"--out {tmp_path / 'link.csv'}: the same file as the input {tmp_path / 'clip.csv'}"),
            (still, tmp_path / "x" / ".." / "w.csv", ["--weights", str(tmp_path / "w.csv")],
             f"--out {tmp_path / 'x' / '..' / 'w.csv'}: the same file as --weights {tmp_path / 'w.csv'}")):
        assert main(["classifier", "predict", str(path), "--out", str(out), *extra]) == 2
        assert capsys.readouterr().err.startswith(f"engagement: error: {message}")
    assert still.read_bytes() == before and (tmp_path / "clip.csv").read_bytes() == b"a video named .csv"
    assert (tmp_path / "w.csv").read_bytes() == b"weights named .csv"


@pytest.mark.slow
def test_predict_on_a_real_classroom_still_and_video(assets: Path, tmp_path: Path) -> None:
    import pandas as pd

    still = assets / "datasets" / "clabehavior" / "images" / "train_0353.jpg"
    assert main(["classifier", "predict", str(still), "--out", str(tmp_path / "still.csv"), "--tiles", "3x3"]) == 0
    table = pd.read_csv(tmp_path / "still.csv")
    assert len(table) > 10 and table["person_found"].all() and table["face_found"].any()
    assert set(table["state"]) <= {*STATES, UNCERTAIN} and table["score"].between(0, 100).all()
    video = assets / "videos" / "webcam_session_p2.mp4"  # 10 fps, 378 frames
    assert main(["classifier", "predict", str(video), "--out", str(tmp_path / "video.csv"), "--every-s", "15"]) == 0
    table = pd.read_csv(tmp_path / "video.csv")
    assert sorted(set(table["frame"])) == [0, 150, 300] and table["person_found"].any()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["still.csv", "video.csv"]


@pytest.mark.slow
def test_evaluate_real_classroom_and_level_sets(assets: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code, report, _ = evaluate(capsys, str(assets / "datasets" / "clabehavior"), "--limit", "1",
                               "--cache-dir", str(tmp_path))
    assert code == 0 and report["format"] == "coco" and report["model"]["n_samples"] > 10
    assert report["states"] == ["attentive", "distracted", "engaged_in_discussion", "taking_notes"]
    assert report["coverage"] > 0.5 and {"majority", "rules"} <= set(report)
    code, report, _ = evaluate(capsys, str(assets / "datasets" / "engagement_levels"), "--limit", "4",
                               "--cache-dir", str(tmp_path))
    assert code == 0 and report["format"] == "levels" and "level_auc" in report
    assert 0 < report["level_rows"] == sum(report["level_counts"].values()) <= 4  # the first person's first crops
    assert report["states"] == ["attentive", "distracted"] and report["model"]["n_samples"] == 2  # two engaged crops
