import re
from pathlib import Path

import pytest

from engagement.config import METHOD_MIN_SCALE, PipelineConfig, dump_pipeline, load_pipeline
from engagement.errors import UserError
from engagement.resources import resource_dir


def test_shipped_pipelines_load_and_round_trip(tmp_path: Path):
    for path in resource_dir("pipelines").glob("*.yaml"):
        config = load_pipeline(str(path))
        copy = tmp_path / path.name
        copy.write_text(dump_pipeline(config))
        assert load_pipeline(str(copy)) == config
    assert load_pipeline("webcam").name == "webcam"
    assert load_pipeline("webcam").classifier.view == "webcam" and load_pipeline("lecture").classifier.view == "front"


def test_overrides_parse_yaml_values():
    config = load_pipeline("lecture", ["detector.confidence=0.4", "analysis_fps=2", "consent.blur=all", "consent.track_students={3: s-001}"])
    assert config.detector.confidence == 0.4 and isinstance(config.analysis_fps, float)
    assert config.consent.blur == "all" and config.consent.track_students == {3: "s-001"}


def test_a_float_with_an_exponent_is_a_float(tmp_path: Path):
    """PyYAML alone reads ``1e1`` as a string, which a float field refused although ``--analysis-fps 1e1`` works."""
    config = load_pipeline("lecture", ["analysis_fps=1e1", "detector.confidence=2.5E-1", "consent.course=CS1e1"])
    assert (config.analysis_fps, config.detector.confidence, config.consent.course) == (10.0, 0.25, "CS1e1")
    path = tmp_path / "exponent.yaml"
    path.write_text("analysis_fps: 5e-1\n")
    assert load_pipeline(str(path)).analysis_fps == 0.5


def test_unknown_key_lists_valid_keys(tmp_path: Path):
    path = tmp_path / "bad.yaml"
    path.write_text("detector:\n  confidense: 0.3\n")
    with pytest.raises(UserError, match=r"unknown key 'confidense'; valid keys: model, imgsz, confidence"):
        load_pipeline(str(path))


@pytest.mark.parametrize(
    "text, message",
    [
        ("analysis_fps: fast\n", "analysis_fps: expected float"),
        ("detector:\n  imgsz: 6.5\n", "detector.imgsz: expected int"),
        ("consent:\n  blur: sometimes\n", "expected one of unconsented, opted_out, all, none"),
        ("consent:\n  opted_out_seats: [{name: a, polygon: [[0, x]]}]\n", "polygon"),
        ("detector: [1, 2]\n", "detector: expected a mapping"),
        ("analysis_fps: -1\n", "analysis_fps must be positive"),
        ("detector:\n  batch: -2\n", "detector.batch must be 0"),
        ("detector:\n  threads: -1\n", "detector.threads must be 0"),
        ("output:\n  preset: fastest\n", "expected one of ultrafast"),
        ("classifier:\n  view: side\n", "classifier.view: expected one of ceiling, front, webcam"),
        ("detector: {model: [\n", "not valid YAML"),
        ("consent:\n  opted_out_seats: [{name: door, polygon: [[0, 0], [5, 5]]}]\n", r"\('door'\): a polygon needs at least 3 points"),
        ("consent:\n  opted_out_seats: [{polygon: [[0, 0], [5, 5, 5], [0, 5]]}]\n", "each point must be two finite numbers"),
        ("consent:\n  opted_out_seats: [{polygon: [[0, 0], [5, .nan], [0, 5]]}]\n", "each point must be two finite numbers"),
        ("models_dir: /nonexistent/models\n", "models_dir /nonexistent/models does not exist"),
    ],
)
def test_wrong_types_are_errors(tmp_path: Path, text: str, message: str):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(UserError, match=message):
        load_pipeline(str(path))


def test_a_file_that_is_not_text_is_one_line(tmp_path: Path):
    path = tmp_path / "binary.yaml"
    path.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(UserError, match=re.escape(f"{path}: not a pipeline YAML file (not UTF-8 text)")):
        load_pipeline(str(path))


def test_a_valid_seat_zone_and_models_dir_load(tmp_path: Path):
    config = load_pipeline("lecture", [f"models_dir={tmp_path}", "consent.opted_out_seats=[{name: door, polygon: [[0, 0], [9, 0], [9, 9]]}]"])
    assert config.models_dir == str(tmp_path) and config.consent.opted_out_seats[0].polygon[2] == [9.0, 9.0]


def test_missing_models_dir_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture):
    from engagement.cli import main

    assert main(["process", str(tmp_path / "lecture.mp4"), "--out", str(tmp_path / "run"), "--models-dir", "/nonexistent"]) == 2
    err = capsys.readouterr().err
    assert "models_dir /nonexistent does not exist" in err and err.count("\n") == 1 and not (tmp_path / "run").exists()


def test_unknown_pipeline_name_lists_shipped():
    with pytest.raises(UserError, match="shipped pipelines: lecture, webcam"):
        load_pipeline("nonesuch")


def test_bad_override():
    with pytest.raises(UserError, match="section.key=value"):
        load_pipeline("lecture", ["analysis_fps"])
    with pytest.raises(UserError, match="unknown key 'nope'"):
        load_pipeline("lecture", ["nope=1"])


def test_defaults_are_privacy_conservative():
    config = PipelineConfig()
    assert config.consent.blur == "unconsented" and config.consent.unknown == "blur"
    assert all(load_pipeline(name).consent.blur == "unconsented" for name in ("lecture", "webcam"))
    assert not config.output.keep_audio
    for anonymizer in (config.anonymizer, *(load_pipeline(name).anonymizer for name in ("lecture", "webcam"))):
        assert anonymizer.mask_scale == METHOD_MIN_SCALE[anonymizer.method] == 2.0  # what runs is what is configured


@pytest.mark.parametrize("method, scale, minimum", [("blur", 1.5, 2.0), ("pixelate", 1.9, 2.0), ("fill", 1.2, 1.3)])
def test_a_mask_too_small_for_its_method_is_refused_not_enlarged(method: str, scale: float, minimum: float):
    with pytest.raises(UserError, match=rf"^.*anonymizer\.mask_scale must be at least {minimum} for method {method}, got {scale}$"):
        load_pipeline("lecture", [f"anonymizer.method={method}", f"anonymizer.mask_scale={scale}"])
    assert load_pipeline("lecture", ["anonymizer.method=fill", "anonymizer.mask_scale=1.3"]).anonymizer.mask_scale == 1.3


@pytest.mark.parametrize("override, message", [
    ("detector.confidence=5", "detector.confidence must be a probability from 0 to 1, got 5.0"),
    ("detector.iou=0", "detector.iou must be an overlap above 0 and at most 1, got 0.0"),
    ("detector.iou=nan", "detector.iou: expected float, got 'nan'"),
    ("detector.max_people=0", "detector.max_people must be at least 1, got 0"),
    ("detector.imgsz=0", "detector.imgsz must be at least 32 pixels, got 0"),
    ("detector.device=banana", "detector.device must be auto, cpu, cuda, cuda:N or mps, got 'banana'"),
    ("output.crf=-5", "output.crf must be an x264 quality from 0 (lossless) to 51, got -5"),
    ("output.crf=99", "output.crf must be an x264 quality from 0 (lossless) to 51, got 99"),
    ("anonymizer.face_input_width=-5", "anonymizer.face_input_width must be 0 (full resolution) or a width in pixels, got -5"),
    ("anonymizer.face_confidence=0", "anonymizer.face_confidence must be above 0 and at most 0.5 (the confidence at "
                                     "which `engagement privacy-check` counts a visible face), got 0.0"),
    # a threshold above the leak check's would leave faces it counts unblurred (all of them at 1.0)
    ("anonymizer.face_confidence=0.6", "anonymizer.face_confidence must be above 0 and at most 0.5 (the confidence at "
                                       "which `engagement privacy-check` counts a visible face), got 0.6"),
    ("anonymizer.hold_s=-1", "anonymizer.hold_s must be 0 or more seconds, got -1.0"),
    ("anonymizer.face_every=0", "anonymizer.face_every must be 1 (every frame) or more, got 0"),
    ("tracker.n_init=0", "tracker.n_init must be at least 1 analysed frame, got 0"),
    ("tracker.n_init=-2", "tracker.n_init must be at least 1 analysed frame, got -2"),
    ("tracker.nn_budget=-1", "tracker.nn_budget must be at least 1 appearance per track, got -1"),
    ("tracker.max_age_s=-1", "tracker.max_age_s must be 0 or more seconds, got -1.0"),
    ("tracker.max_cosine_distance=-1", "tracker.max_cosine_distance must be a cosine distance from 0 to 2, got -1.0"),
    ("tracker.max_iou_distance=1.5", "tracker.max_iou_distance must be from 0 to 1, got 1.5"),
    ("tracker.stitch_max_gap_s=-1", "tracker.stitch_max_gap_s must be above 0 (tracker.stitch: false turns stitching off), got -1.0"),
    ("tracker.stitch_max_shift=0", "tracker.stitch_max_shift must be above 0 (tracker.stitch: false turns stitching off), got 0.0"),
])
def test_out_of_range_settings_are_refused_before_any_model_loads(override: str, message: str):
    with pytest.raises(UserError, match=re.escape(message)):
        load_pipeline("lecture", [override])
    assert load_pipeline("lecture", ["detector.device=cuda:1", "output.crf=0", "anonymizer.face_input_width=0",
                                     "anonymizer.face_confidence=0.5"]).output.crf == 0


def test_a_shipped_name_is_never_taken_from_the_working_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A folder of webcam videos called ``webcam``, or a file called ``lecture``, must not replace the shipped pipeline."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "webcam").mkdir()
    (tmp_path / "lecture").write_text("consent:\n  blur: none\n")
    assert load_pipeline("webcam").tracker.single_person and load_pipeline("lecture").consent.blur == "unconsented"
    assert load_pipeline("./lecture").consent.blur == "none"  # a path says it is one


@pytest.mark.parametrize("pipeline", ["lecture", "webcam"])
def test_every_shipped_pipeline_writes_the_report(pipeline: str) -> None:
    """The README's promise (`process` writes report.html/.pdf unless --no-report); the webcam report is where a
    close framing is named."""
    assert load_pipeline(pipeline).output.report
