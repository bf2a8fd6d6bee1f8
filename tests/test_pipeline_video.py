"""The whole pipeline on the real videos in the shared assets, and every bad input the CLI must refuse."""

import json
import re
import subprocess
import sys
from pathlib import Path

import av
import pandas as pd
import pytest

from engagement.cli import main
from engagement.models import HAND_MODELS
from engagement.pipeline_cli import describe
from engagement.session import SessionRecord

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def classroom_run(classroom_video: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "classroom"
    assert main(["process", str(classroom_video), "--out", str(out), "--quiet", "--no-report"]) == 0
    return out


@pytest.fixture(scope="module")
def webcam_run(webcam_video: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "webcam"
    assert main(["process", str(webcam_video), "--out", str(out), "--quiet", "--no-report", "--keep-audio"]) == 0
    return out


def video_facts(path: Path) -> tuple[str, str, int, float, list[str]]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        return stream.codec_context.name, stream.format.name, frames, float(stream.average_rate), [s.type for s in container.streams]


def test_classroom_outputs(classroom_run: Path, classroom_video: Path):
    assert {"annotated.mp4", "tracks.parquet", "tracks.csv", "session.json"} <= {p.name for p in classroom_run.iterdir()}
    assert [p.name for p in classroom_run.parent.iterdir() if p.name.startswith(".")] == []
    codec, pix_fmt, frames, fps, streams = video_facts(classroom_run / "annotated.mp4")
    assert (codec, pix_fmt, frames) == ("h264", "yuv420p", 149)
    assert fps == pytest.approx(29.92, abs=0.01)
    assert streams == ["video"]  # the input's audio is dropped by default


def test_a_large_class_report_of_a_real_run_fits_three_pages(classroom_run: Path, tmp_path: Path):
    """The page limit with what a real run records (its models, the shipped model card, the lecture pipeline's
    settings) and the most a report shows: 60 students over 90 minutes (synthetic states), an instructor, an
    incomplete input and a close framing."""
    import shutil

    import numpy as np
    from pypdf import PdfReader

    from engagement.report import build_report
    from engagement.scoring import summarize
    from engagement.states import STATES

    run = tmp_path / "large"
    shutil.copytree(classroom_run, run, ignore=shutil.ignore_patterns("report.*"))
    rng, times = np.random.default_rng(0), np.arange(0, 90 * 60, 2.0)
    states = []
    for track in range(1, 61):
        probabilities = rng.dirichlet(np.full(len(STATES), 0.5), len(times))
        table = pd.DataFrame(probabilities, columns=[f"p_{state}" for state in STATES])
        table.insert(0, "track_id", track)
        table.insert(0, "time_s", times)
        table.insert(0, "frame", (times * 30).astype(int))
        table["state"] = np.where(probabilities.max(axis=1) < 0.35, "uncertain", np.array(STATES)[probabilities.argmax(axis=1)])
        states.append(table)
    states = pd.concat(states, ignore_index=True)
    states.to_parquet(run / "states.parquet")
    scores, summary = summarize(states, 90 * 60.0, 3)
    scores.to_csv(run / "scores.csv", index=False)
    (run / "summary.json").write_text(json.dumps(summary | {"framing": {"head_share": 0.9, "close": True}}))
    session = json.loads((run / "session.json").read_text())
    session["input"].update(duration_s=5400.0, frames_expected=200000, frames_decoded=162000, input_complete=False)
    session["tracking"].update(confirmed_tracks=64, instructor_tracks=[64])
    (run / "session.json").write_text(json.dumps(session))
    pdf = build_report(run)["pdf"]
    text = " ".join(page.extract_text() for page in PdfReader(pdf).pages)
    assert len(PdfReader(pdf).pages) <= 3
    assert "Incomplete input." in text and "Close framing." in text and "track #64, not analysed" in text


def test_run_line_gives_speed_with_and_without_model_loading(classroom_run: Path):
    session = json.loads((classroom_run / "session.json").read_text())
    line = describe(classroom_run, SessionRecord.from_json(session))
    match = re.search(r"([\d.]+)x real time \(([\d.]+)x after ([\d.]+) s of model loading\)", line)
    assert match, line
    overall, after_loading, loading = map(float, match.groups())
    assert loading == pytest.approx(session["timings_s"]["load_models"], abs=0.05) and loading > 0
    assert after_loading > overall == pytest.approx(session["input"]["duration_s"] / session["timings_s"]["total"], abs=0.005)


def test_classroom_tracking_quality(classroom_run: Path):
    session = json.loads((classroom_run / "session.json").read_text())
    tracking = session["tracking"]
    assert tracking["max_people_in_frame"] >= 10
    assert tracking["id_ratio"] <= 1.15 and tracking["stitched"]
    assert tracking["tracklets_before_stitching"] >= tracking["confirmed_tracks"]
    assert f"before stitching {tracking['tracklets_before_stitching']} tracklets" in describe(classroom_run, SessionRecord.from_json(session))
    assert session["frames_analysed"] == 25 and session["input"]["frames"] == 149
    assert len(session["input"]["sha256"]) == 64 and session["models"]["detector"]["sha256"]
    assert session["config"]["analysis_fps"] == 5.0 and session["versions"]["ultralytics"]
    assert {"detect", "track", "render", "total"} <= set(session["timings_s"])


def test_default_classroom_run_shows_no_face(classroom_run: Path, classroom_video: Path):
    """No registry: every face of the class is hidden, by the anonymizer's own model's count and by CenterFace's."""
    from engagement.privacy import leak_check

    yunet = leak_check(classroom_video, classroom_run / "annotated.mp4")["totals"]
    assert yunet["faces_original"] > 3000 and yunet["leaked_faces"] == 0
    centerface = leak_check(classroom_video, classroom_run / "annotated.mp4", detector="centerface", max_frames=30)["totals"]
    assert centerface["faces_original"] > 500 and centerface["leaked_faces"] == 0


def test_classroom_tracks_table(classroom_run: Path):
    tracks = pd.read_parquet(classroom_run / "tracks.parquet")
    assert tracks.groupby(["frame", "track_id"]).size().max() == 1  # one row per frame and track
    assert tracks.detected.any() and (~tracks.detected).any()  # detected and predicted rows
    assert (tracks.track_id >= 0).all() and tracks.frame.max() == 148
    assert {"time_s", "x1", "y2", "confidence", "nose_x", "left_wrist_score"} <= set(tracks.columns)
    assert len(pd.read_csv(classroom_run / "tracks.csv")) == len(tracks)


def test_batched_detection_gives_the_same_tracks(classroom_run: Path, classroom_video: Path, tmp_path: Path):
    out = tmp_path / "batched"
    overrides = ["--set", "detector.batch=4", "--set", "output.video=false"]
    assert main(["process", str(classroom_video), "--out", str(out), "--quiet", "--no-report", *overrides]) == 0
    batched, single = pd.read_parquet(out / "tracks.parquet"), pd.read_parquet(classroom_run / "tracks.parquet")
    assert json.loads((out / "session.json").read_text())["config"]["detector"]["batch"] == 4
    pd.testing.assert_frame_equal(batched, single, atol=1e-3)


def test_webcam_person_keeps_one_id(webcam_run: Path):
    session = json.loads((webcam_run / "session.json").read_text())
    assert session["tracking"]["confirmed_tracks"] <= 2
    assert session["tracking"]["max_people_in_frame"] >= 1
    codec, _, frames, fps, streams = video_facts(webcam_run / "annotated.mp4")
    assert frames == 378 and fps == pytest.approx(10.0) and streams == ["video"]  # no audio to keep


def test_keep_audio_copies_the_input_audio(classroom_video: Path, tmp_path: Path):
    out = tmp_path / "audio"
    args = ["process", str(classroom_video), "--out", str(out), "--quiet", "--no-report", "--keep-audio",
            "--analysis-fps", "1", "--set", "classifier.enabled=false", "--set", "output.csv=false"]
    assert main(args) == 0
    assert video_facts(out / "annotated.mp4")[4] == ["video", "audio"]


def test_webcam_pipeline_settles_states_over_the_whole_video(webcam_video: Path, tmp_path: Path, hand_models: Path):
    out = tmp_path / "run"
    assert main(["process", str(webcam_video), "--out", str(out), "--quiet", "--no-report", "--pipeline", "webcam"]) == 0
    session = json.loads((out / "session.json").read_text())
    assert session["config"]["classifier"]["baseline"] == "session" and session["frames_analysed"] == 378
    assert session["models"]["palm_detector"]["sha256"] == HAND_MODELS["palm_detection_full.tflite"][1]
    assert session["models"]["hand_landmarker"]["sha256"] == HAND_MODELS["hand_landmark_full.tflite"][1]
    assert session["timings_s"]["hands"] > 0
    assert video_facts(out / "annotated.mp4")[2] == 378  # the second pass drew every frame
    states = pd.read_parquet(out / "states.parquet")
    tracks = pd.read_parquet(out / "tracks.parquet")
    assert len(states) == len(tracks) > 300 and states["state"].ne("").all()  # every analysed person classified
    assert states["p_taking_notes"].max() == 0  # the webcam labels only (classifier.labels_of)
    assert {"attentive", "bored", "distracted", "engaged_in_discussion"} <= set(states["state"])
    framing = json.loads((out / "summary.json").read_text())["framing"]
    assert 0.5 < framing["head_share"] < 0.65 and not framing["close"]  # the face about 0.43 of the frame's height


def test_live_with_a_file_source(webcam_video: Path, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch,
                                 hand_models: Path):
    from engagement import live

    baselines = []
    build = live.Analyzer.from_config
    monkeypatch.setattr(live.Analyzer, "from_config", lambda config: baselines.append(config.classifier.baseline) or build(config))
    record = tmp_path / "live.mp4"
    assert main(["live", "--source", str(webcam_video), "--no-window", "--duration", "4", "--record", str(record)]) == 0
    assert baselines == ["running"]  # the webcam pipeline's session baseline needs a whole recording
    out = capsys.readouterr().out
    assert re.search(r"frames shown at [\d.]+ fps, \d+ analysed at [\d.]+ fps", out)  # display and analysis rates
    _, _, frames, fps, _ = video_facts(record)
    assert 20 <= frames <= 45 and fps == pytest.approx(10.0)  # paced at the source's 10 fps for 4 s
    assert [p.name for p in tmp_path.iterdir()] == ["live.mp4"]
    assert record.stat().st_mode & 0o777 == 0o600  # it shows people, as a run folder (0700) does


def make_zero_frame_video(path: Path) -> None:
    """An AVI whose header declares a video stream but which holds no frame."""
    import cv2

    cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 64)).release()


BAD_INPUTS = {
    "missing file": (lambda tmp: ["process", str(tmp / "nope.mp4")], "no such file"),
    "not a video": (lambda tmp: ["process", str(tmp / "notes.mp4")], "cannot be opened as a video"),
    "zero frames": (lambda tmp: ["process", str(tmp / "empty.avi")], "no frames"),
    "unknown pipeline": (lambda tmp: ["process", "VIDEO", "--pipeline", "nonesuch"], "unknown pipeline 'nonesuch'"),
    "unknown yaml key": (lambda tmp: ["process", "VIDEO", "--pipeline", str(tmp / "unknown.yaml")], "unknown key 'colour'; valid keys"),
    "wrong yaml type": (lambda tmp: ["process", "VIDEO", "--pipeline", str(tmp / "wrongtype.yaml")], "analysis_fps: expected float"),
    "output exists": (lambda tmp: ["process", "VIDEO", "--out", str(tmp / "existing")], "already exists"),
    # a name's stray byte: OpenCV ended the process (segmentation fault, no message), pyarrow refused the folder
    "video name not UTF-8": (lambda tmp: ["process", str(tmp / "lecture\udcff.mp4")], "lecture\\xff.mp4: not UTF-8 text"),
    "output name not UTF-8": (lambda tmp: ["process", "VIDEO", "--out", str(tmp / "run\udcff")], "run\\xff: not UTF-8 text"),
    "camera does not open": (lambda tmp: ["live", "--source", "57", "--no-window"], "camera 57 could not be opened"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_line_and_exit_2(case: str, tmp_path: Path, classroom_video: Path, capsys: pytest.CaptureFixture):
    (tmp_path / "notes.mp4").write_text("these are lecture notes, not a video\n")
    make_zero_frame_video(tmp_path / "empty.avi")
    (tmp_path / "unknown.yaml").write_text("output:\n  colour: red\n")
    (tmp_path / "wrongtype.yaml").write_text("analysis_fps: often\n")
    (tmp_path / "existing").mkdir()
    (tmp_path / "lecture\udcff.mp4").symlink_to(classroom_video)
    build, message = BAD_INPUTS[case]
    args = [str(classroom_video) if a == "VIDEO" else a for a in build(tmp_path)]
    if args[0] == "process" and "--out" not in args:
        args += ["--out", str(tmp_path / "run")]
    assert main(args + ["--quiet"] if args[0] == "process" else args) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "run").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no partial output left


def test_a_video_name_that_is_not_utf8_is_an_error_not_a_crash(tmp_path: Path, classroom_video: Path):
    """OpenCV ends the process (SIGSEGV) on such a name: the library refuses it before OpenCV sees it. In a child
    process, so that a regression fails this test rather than ending the test run."""
    (tmp_path / "lecture\udcff.mp4").symlink_to(classroom_video)
    code = ("import sys\nfrom engagement.errors import UserError\nfrom engagement.sources import FrameSource, read_frame_at\n"
            "for open_video in (FrameSource, lambda name: read_frame_at(name, 0.0)):\n"
            "    try:\n        open_video(sys.argv[1])\n    except UserError as error:\n        print(error)\n")
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path / "lecture\udcff.mp4")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"{tmp_path}/lecture\\xff.mp4: not UTF-8 text; rename it"] * 2


def test_installed_command_prints_no_traceback(tmp_path: Path):
    result = subprocess.run([sys.executable, "-m", "engagement.cli", "process", str(tmp_path / "x.mp4"), "--out", str(tmp_path / "o")], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip() == f"engagement: error: {tmp_path / 'x.mp4'}: no such file"


def test_batch_reports_a_failed_video_and_continues(webcam_video: Path, tmp_path: Path, capsys: pytest.CaptureFixture):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    (inputs / "broken.mp4").write_text("not a video")
    (inputs / "webcam.mp4").symlink_to(webcam_video)
    out = tmp_path / "runs"
    args = ["process", str(inputs), "--out", str(out), "--workers", "2", "--no-report",
            "--analysis-fps", "1", "--set", "classifier.enabled=false", "--blur", "none"]
    assert main(args) == 1
    table = pd.read_csv(out / "batch_summary.csv")
    assert table.set_index("video").status.to_dict() == {str(inputs / "broken.mp4"): "failed", str(inputs / "webcam.mp4"): "ok"}
    assert (out / "webcam" / "annotated.mp4").exists() and not (out / "broken").exists()
    assert "cannot be opened as a video" in capsys.readouterr().err


def test_opted_out_seat_leaves_no_trace_and_no_face(webcam_video: Path, tmp_path: Path):
    """The whole frame is a non-participating seat zone: no analytics rows, a count, and a blurred face."""
    from engagement.privacy import leak_check

    pipeline = tmp_path / "optout.yaml"
    pipeline.write_text("name: optout\nanalysis_fps: 2.0\nconsent:\n  opted_out_seats:\n    - {name: everyone, polygon: [[0, 0], [640, 0], [640, 360], [0, 360]]}\n")
    out = tmp_path / "run"
    assert main(["process", str(webcam_video), "--out", str(out), "--quiet", "--pipeline", str(pipeline)]) == 0
    assert pd.read_parquet(out / "tracks.parquet").empty and pd.read_parquet(out / "states.parquet").empty
    summary = json.loads((out / "summary.json").read_text())
    assert summary["students"] == [] and summary["people_excluded"] == 1
    assert json.loads((out / "session.json").read_text())["consent"]["people_excluded"] == 1
    assert (out / "report.pdf").exists()
    result = leak_check(webcam_video, out / "annotated.mp4", max_frames=60)
    assert result["totals"]["faces_original"] > 0 and result["totals"]["leak_frames"] == 0


@pytest.fixture(scope="module")
def faststart_clip(webcam_video: Path, tmp_path_factory: pytest.TempPathFactory, ffmpeg) -> Path:
    """6 s of the webcam video with its index at the front, so a cut file still opens and declares 60 frames."""
    clip = tmp_path_factory.mktemp("clips") / "faststart.mp4"
    ffmpeg("-i", webcam_video, "-t", "6", "-an", "-c:v", "libx264", "-preset", "ultrafast", "-movflags", "+faststart", clip)
    return clip


def damaged(clip: Path, folder: Path, how: str) -> Path:
    data = bytearray(clip.read_bytes())
    if how == "truncated":
        data = data[: len(data) * 3 // 10]
    else:  # garbage over the middle of the file
        data[len(data) // 2: len(data) // 2 + 20_000] = bytes(range(256)) * 78 + bytes(32)
    path = folder / f"{how}.mp4"
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("how", ["truncated", "corrupt"])
def test_damaged_input_is_never_silently_short(faststart_clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture, how: str):
    video = damaged(faststart_clip, tmp_path, how)
    args = ["process", str(video), "--quiet", "--no-report", "--set", "classifier.enabled=false"]
    assert main([*args, "--out", str(tmp_path / "strict")]) == 3
    session = json.loads((tmp_path / "strict" / "session.json").read_text())["input"]
    assert session["frames_expected"] == 60 and 0 < session["frames_decoded"] < 60 and session["input_complete"] is False
    assert f"INCOMPLETE INPUT: decoded {session['frames_decoded']} of the 60 frames" in capsys.readouterr().err
    assert main([*args, "--out", str(tmp_path / "lenient"), "--allow-partial"]) == 0


def test_a_batch_with_an_incomplete_input_exits_as_a_single_video_does(faststart_clip: Path, tmp_path: Path):
    """3 for a short video (as ``--help`` says), 1 once another video failed, 0 with --allow-partial."""
    video = damaged(faststart_clip, tmp_path, "truncated")
    args = ["process", str(video), str(faststart_clip), "--quiet", "--no-report", "--set", "classifier.enabled=false"]
    assert main([*args, "--out", str(tmp_path / "strict")]) == 3
    table = pd.read_csv(tmp_path / "strict" / "batch_summary.csv").set_index("video")
    assert table.status.to_dict() == {str(video): "partial", str(faststart_clip): "ok"}
    assert main([*args, "--out", str(tmp_path / "strict"), "--resume"]) == 3  # a short run kept from before
    assert main([*args, "--out", str(tmp_path / "lenient"), "--allow-partial"]) == 0
    (tmp_path / "broken.mp4").write_text("not a video")
    assert main([*args[:2], str(tmp_path / "broken.mp4"), *args[2:], "--out", str(tmp_path / "failed"), "--workers", "2"]) == 1


def test_whole_input_is_marked_complete(faststart_clip: Path, tmp_path: Path):
    assert main(["process", str(faststart_clip), "--out", str(tmp_path / "run"), "--quiet", "--no-report"]) == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert (summary["frames_expected"], summary["frames_decoded"], summary["input_complete"]) == (60, 60, True)


def test_quiet_run_prints_only_its_closing_line(faststart_clip: Path, tmp_path: Path):
    """MediaPipe/TFLite, OpenVINO, FFmpeg and WeasyPrint stay silent: one line on stderr, nothing on stdout."""
    out = tmp_path / "run"
    result = subprocess.run([sys.executable, "-m", "engagement.cli", "process", str(faststart_clip), "--out", str(out), "--quiet"],
                            capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout == ""
    assert result.stderr.splitlines() == [describe(out, SessionRecord.read(out / "session.json"))]


def test_variable_frame_rate_keeps_the_containers_times(webcam_video: Path, tmp_path: Path, ffmpeg):
    """5 s at 10 fps then 5 s at 30 fps in one file: times come from the container, not from index / average fps."""
    parts = []
    for start, rate in ((0, 10), (5, 30)):
        part = tmp_path / f"part{start}.mp4"
        ffmpeg("-ss", start, "-i", webcam_video, "-t", 5, "-an", "-vf", f"fps={rate}", "-c:v", "libx264", "-preset", "ultrafast",
               "-video_track_timescale", 90000, part)
        parts.append(part)
    listing = tmp_path / "parts.txt"
    listing.write_text("".join(f"file '{part}'\n" for part in parts))
    video = tmp_path / "vfr.mp4"
    ffmpeg("-f", "concat", "-safe", 0, "-i", listing, "-c", "copy", video)
    out = tmp_path / "run"
    assert main(["process", str(video), "--out", str(out), "--quiet", "--no-report", "--set", "classifier.enabled=false"]) == 0
    tracks = pd.read_parquet(out / "tracks.parquet").drop_duplicates("frame").set_index("frame").time_s
    assert tracks[49] == pytest.approx(4.9) and tracks[150] == pytest.approx(5 + 100 / 30, abs=1e-3)  # index/20 fps: 7.5
    with av.open(str(out / "annotated.mp4")) as container:
        shown = [float(frame.time) for frame in container.decode(video=0)]
    assert len(shown) == 200 and shown[150] == pytest.approx(5 + 100 / 30, abs=1e-3)


def test_close_up_webcam_framing_is_one_person_with_states(webcam_video: Path, tmp_path: Path, hand_models: Path):
    """A laptop framing (the face is most of the frame, little body): one track for the whole clip, and a state on
    nearly every analysed frame."""
    import cv2

    from engagement.anonymize import FaceDetector
    from engagement.config import AnonymizerConfig
    from engagement.privacy import read_frames
    from engagement.sinks import VideoWriter

    frames = list(read_frames(webcam_video, 60))
    x0, y0, x1, y1 = FaceDetector(AnonymizerConfig().face_model, 0.5, 0)(frames[0])[0]
    height = (y1 - y0) / 0.9
    left, top = int(max((x0 + x1) / 2 - height * 8 / 9, 0)), int(max((y0 + y1) / 2 - height / 2, 0))
    clip = tmp_path / "close_up.mp4"
    writer = VideoWriter(clip, 10.0, 640, 360, crf=18)
    for frame in frames:
        writer.write(cv2.resize(frame[top:int(top + height), left:int(left + height * 16 / 9)], (640, 360)))
    writer.close()
    out = tmp_path / "run"
    assert main(["process", str(clip), "--out", str(out), "--pipeline", "webcam", "--quiet", "--no-report"]) == 0
    assert json.loads((out / "session.json").read_text())["tracking"]["confirmed_tracks"] == 1
    states = pd.read_parquet(out / "states.parquet")
    assert states.track_id.nunique() == 1 and len(states) >= 0.9 * 60
    framing = json.loads((out / "summary.json").read_text())["framing"]
    assert framing["head_share"] > 0.8 and framing["close"]  # closer than the states were measured to hold in
