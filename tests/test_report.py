"""Session report and course view, built from synthetic run directories (no real faces anywhere)."""

from __future__ import annotations

import base64
import json
import os
import re
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from pypdf import PdfReader

from engagement.cli import main
from engagement.errors import UserError
from engagement.report import build_comparison, build_report
from engagement.report.stills import read_still
from engagement.scoring import FORMULA_TEXT, STATE_WEIGHTS
from engagement.states import STATES

SECTIONS = ("session-facts", "results", "moments", "approach", "formula", "ethics", "provenance")
SECTION_TITLES = ("Session", "Engagement over time", "Time in each state", "Students over time", "Top moments",
                  "Approach and models", "Engagement formula", "Ethical considerations", "Data provenance")
INPUT_SHA = "ab" * 32
CLASSIFIER_SHA = "c1" * 32


def make_run(path: Path, students: int = 30, minutes: int = 60, excluded: int = 2, session: str = "week-01",
             seed: int = 0, video: bool = True) -> Path:
    """Write a realistic fake run directory: the files ``engagement process`` writes, with synthetic content."""
    rng = np.random.default_rng(seed)
    path.mkdir(parents=True)
    duration_s = minutes * 60.0
    analysis_fps = 0.5
    times = np.arange(0, duration_s, 1 / analysis_fps)
    state_rows, score_rows = [], []
    for track_id in range(1, students + 1):
        arrive, leave = (rng.integers(0, 4), minutes - rng.integers(0, 4)) if minutes >= 10 else (0, minutes)
        keen = rng.uniform(-0.25, 0.25)
        present = times[(times >= arrive * 60) & (times < leave * 60)]
        lecture_curve = 0.65 - 0.25 * np.sin(np.pi * present / duration_s)  # attention sags mid-lecture
        engaged = np.clip(lecture_curve + keen + rng.normal(0, 0.1, len(present)), 0.02, 0.98)
        probabilities = np.stack([engaged * 0.6, (1 - engaged) * 0.4, (1 - engaged) * 0.2, (1 - engaged) * 0.4,
                                  engaged * 0.15, engaged * 0.25], axis=1)
        probabilities /= probabilities.sum(axis=1, keepdims=True)
        table = pd.DataFrame(probabilities, columns=[f"p_{state}" for state in STATES])
        table.insert(0, "track_id", track_id)
        table.insert(0, "time_s", present)
        table.insert(0, "frame", np.round(present * 25).astype(int))
        drawn = (probabilities.cumsum(axis=1) < rng.uniform(size=(len(present), 1))).sum(axis=1)
        table["state"] = np.array(STATES)[np.minimum(drawn, len(STATES) - 1)]
        state_rows.append(table)
        weights = np.array([STATE_WEIGHTS[state] for state in STATES])
        per_frame = 100 * probabilities @ weights
        for minute, group in pd.Series(per_frame).groupby(present // 60):
            score_rows.append({"track_id": track_id, "minute": int(minute), "score": round(float(group.mean()), 1),
                               "n_frames": len(group)})
    states = pd.concat(state_rows, ignore_index=True) if state_rows else pd.DataFrame(
        columns=["frame", "time_s", "track_id", *[f"p_{state}" for state in STATES], "state"])
    scores = pd.DataFrame(score_rows, columns=["track_id", "minute", "score", "n_frames"])
    states.to_parquet(path / "states.parquet")
    scores.to_csv(path / "scores.csv", index=False)
    timeline = scores.groupby("minute").agg(score=("score", "mean"), n_students=("track_id", "nunique")).reset_index()
    share = states["state"].value_counts(normalize=True).to_dict() if len(states) else {}
    summary = {
        "formula": {"weights": STATE_WEIGHTS, "text": FORMULA_TEXT},
        "session_score": round(float(scores["score"].mean()), 1) if len(scores) else None,
        "students": [{"track_id": int(track), "score": round(float(group["score"].mean()), 1),
                      "dominant_state": "attentive", "state_share": {}, "minutes_present": len(group)}
                     for track, group in scores.groupby("track_id")],
        "timeline": [{"minute": int(row.minute), "score": round(float(row.score), 1), "n_students": int(row.n_students)}
                     for row in timeline.itertuples()],
        "state_share": share,
        "people_excluded": excluded,
    }
    (path / "summary.json").write_text(json.dumps(summary))
    (path / "session.json").write_text(json.dumps(_session_json(duration_s, analysis_fps, students, excluded, session)))
    if video:
        _write_annotated_video(path / "annotated.mp4", rng)
    return path


def _session_json(duration_s: float, analysis_fps: float, students: int, excluded: int, session: str) -> dict:
    return {
        "engagement_version": "0.1.0",
        "created": f"2026-10-{int(session[-2:]):02d}T09:00:00Z",
        "input": {"path": "/videos/lecture.mp4", "fps": 25.0, "frames": int(duration_s * 25), "width": 1280,
                  "height": 720, "duration_s": duration_s, "sha256": INPUT_SHA},
        "models": {
            "detector": {"name": "yolov8n-pose (OpenVINO INT8)", "file": "yolov8n-pose_int8_openvino_model",
                         "sha256": "d1" * 32},
            "face_detector": {"name": "YuNet", "file": "face_detection_yunet_2026may.onnx", "sha256": "f1" * 32},
            "face_landmarker": {"name": "MediaPipe Face Landmarker", "file": "face_landmarker.task", "sha256": "f2" * 32},
            "classifier": {"name": "state-mlp", "file": "classifier.pt", "sha256": CLASSIFIER_SHA,
                           "card": _model_card()},
        },
        "config": {"name": "lecture", "analysis_fps": analysis_fps,
                   "detector": {"model": "yolov8n-pose", "imgsz": 640, "confidence": 0.25},
                   "tracker": {"max_age_s": 4.0, "embedder": "mobilenetv2"},
                   "consent": {"registry": None, "course": "BIO-101", "session": session, "blur": "opted_out",
                               "unknown": "blur", "opted_out_seats": [], "track_students": {}},
                   "anonymizer": {"method": "blur"}, "classifier": {"weights": None, "min_face_px": 40,
                                                                     "smoothing_s": 3.0},
                   "output": {"keep_audio": False}},
        "timings_s": {"detect": 100.0, "total": 321.0},
        "frames_analysed": int(duration_s * analysis_fps),
        "tracking": {"confirmed_tracks": students + excluded, "max_people_in_frame": students + excluded,
                     "id_ratio": 1.1},
        "consent": {"policy": "opted_out", "unknown": "blur", "people_excluded": excluded, "course": "BIO-101",
                    "form_version": "form-v3", "retention_until": "2027-06-30",
                    "status_counts": {"consented": students, "opted_out": excluded, "withdrawn": 0}},
        "versions": {"classroom-engagement": "0.1.0", "ultralytics": "8.4.0"},
    }


def _model_card() -> dict:
    """The card inside the packaged weights, as the classifier wrote it: the report must read what is shipped."""
    from engagement.classifier.model import PACKAGED_WEIGHTS

    with np.load(PACKAGED_WEIGHTS) as weights:
        return json.loads(str(weights["card"]))


def _write_annotated_video(path: Path, rng: np.random.Generator) -> None:
    """A short drawn classroom: desks, people as circles, the 'blurred' heads smeared like the anonymizer does."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 2.0, (320, 180))
    for index in range(20):
        frame = np.full((180, 320, 3), 235, np.uint8)
        for row in range(3):
            for seat in range(6):
                x, y = 25 + seat * 50, 50 + row * 45
                cv2.rectangle(frame, (x - 18, y + 10), (x + 18, y + 22), (90, 120, 160), -1)
                cv2.circle(frame, (x, y), 9, (60 + 20 * seat, 150, 200 - 10 * row), -1)
                cv2.rectangle(frame, (x - 12, y - 14), (x + 12, y + 12), (0, 200, 0), 1)
        blurred = frame[90:115, 120:155]
        frame[90:115, 120:155] = cv2.GaussianBlur(blurred, (15, 15), 0)
        cv2.putText(frame, f"{index}", (5, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)
        writer.write(frame + rng.integers(0, 3, frame.shape, dtype=np.uint8))
    writer.release()


def _embedded_images(html: str) -> list[tuple[str, bytes]]:
    return [(mime, base64.b64decode(data)) for mime, data in re.findall(r'src="data:(image/\w+);base64,([^"]+)"', html)]


def _pdf_text(path: Path) -> str:
    return " ".join(page.extract_text() for page in PdfReader(path).pages)


@pytest.fixture(scope="module")
def full_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The report of a 60-minute session with 30 students: the largest layout the page limit must hold."""
    return build_report(make_run(tmp_path_factory.mktemp("report") / "run"))


def test_pdf_has_at_most_three_pages_with_every_section(full_report: dict[str, Path]) -> None:
    text = _pdf_text(full_report["pdf"])
    assert 1 <= len(PdfReader(full_report["pdf"]).pages) <= 3
    for title in SECTION_TITLES:
        assert title in text, title
    held_out = _model_card()["held_out"]
    for number in ("BIO-101", "form-v3", "2027-06-30", INPUT_SHA[:32], CLASSIFIER_SHA[:32],
                   f"{held_out['cctv_headstate']['model']['macro_f1']:.3f}",
                   f"{held_out['webcam_behaviour']['rules']['accuracy']:.3f}", "webcam behaviour / rules"):
        assert number in text, number


@pytest.mark.parametrize("recorded", [True, False], ids=["card recorded in session.json", "shipped card"])
def test_report_shows_the_augmentation_of_the_packaged_card(tmp_path: Path, recorded: bool) -> None:
    run_dir = make_run(tmp_path / "run", students=3, minutes=1, video=False)
    if not recorded:  # a run of the shipped weights that did not record the card: the report reads weights.npz
        session = json.loads((run_dir / "session.json").read_text())
        del session["models"]["classifier"]["card"]
        (run_dir / "session.json").write_text(json.dumps(session))
    html = build_report(run_dir, formats=("html",))["html"].read_text()
    method = _model_card()["augment"]  # class_weight in the shipped weights
    assert f"<b>Augmentation:</b> {method.replace('_', ' ')}." in html and "not available" not in html
    assert "persons 1,2 held out" in html  # the card's splits, as the training data
    level_auc = _model_card()["held_out"]["engagement_levels"]["level_auc"]
    assert "engagement levels</" in html and f"{level_auc:.3f}" in html  # the ranking on unseen people's faces
    assert "engagement levels / model" not in html  # its state part stays in the model card: the pages are few


def test_html_is_self_contained_with_every_section(full_report: dict[str, Path]) -> None:
    html = full_report["html"].read_text()
    for section in SECTIONS:
        assert f'id="{section}"' in html
    images = _embedded_images(html)
    assert [mime for mime, _ in images].count("image/png") == 3  # timeline, state shares, heatmap
    assert [mime for mime, _ in images].count("image/jpeg") == 2  # highest and lowest minute stills
    for mime, data in images:
        assert data.startswith(b"\x89PNG" if mime == "image/png" else b"\xff\xd8")
    assert not re.search(r'(src|href)="(?!data:)', html), "every resource must be embedded"
    assert not [name for name in os.listdir(full_report["html"].parent) if name.endswith(".tmp")]
    reference = full_report["html"].with_name("reference.txt")
    reference.write_text("")  # the reports get the mode any new file gets, not mkstemp's 0600
    assert full_report["html"].stat().st_mode == full_report["pdf"].stat().st_mode == reference.stat().st_mode


def test_report_shows_this_sessions_numbers(full_report: dict[str, Path]) -> None:
    run_dir = full_report["html"].parent
    summary = json.loads((run_dir / "summary.json").read_text())
    html = full_report["html"].read_text()
    assert f">{summary['session_score']}<" in html
    lowest = min(summary["timeline"], key=lambda row: row["score"])
    assert f"{lowest['score']:.0f} / 100" in html
    assert "taking notes" in html and "confused <b>+0.5</b>" in html
    assert "front camera view, smoothed over 3.0 s, uncertain below 0.45<" in html  # every label kept
    assert "DeepSORT, mobilenetv2 appearance embeddings" in html
    assert "from the hands" not in html  # the lecture pipeline runs no hand models
    assert "framing-notice" not in html  # a run without summary.json's framing (before it existed) has no notice


def test_a_close_framing_is_named_on_the_report_and_the_pages_still_fit(tmp_path: Path) -> None:
    """A framing closer than the states were measured in (summary.json's ``framing``) gets its notice; the largest
    layout still fits the page limit with it. Without it (every other report here) there is none."""
    run_dir = make_run(tmp_path / "run")
    summary = json.loads((run_dir / "summary.json").read_text())
    (run_dir / "summary.json").write_text(json.dumps(summary | {"framing": {"head_share": 1.176, "close": True}}))
    paths = build_report(run_dir)
    assert 'id="framing-notice"' in paths["html"].read_text()
    assert "heads fill 118% of the frame's height" in _pdf_text(paths["pdf"])
    assert len(PdfReader(paths["pdf"]).pages) <= 3
    (run_dir / "summary.json").write_text(json.dumps(summary | {"framing": {"head_share": 0.59, "close": False}}))
    assert "framing-notice" not in build_report(run_dir, formats=("html",))["html"].read_text()


def test_report_names_a_restricted_label_set(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path / "run", students=3, minutes=1, video=False)
    session = json.loads((run_dir / "session.json").read_text())
    session["config"]["classifier"].update(smoothing_s=1.0, labels_of="webcam_behaviour", view="webcam",
                                           uncertain_below=0.3)
    session["config"]["tracker"]["single_person"] = True
    session["models"] |= {"palm_detector": {"name": "palm_detection_full.tflite"},
                          "hand_landmarker": {"name": "hand_landmark_full.tflite"}}
    (run_dir / "session.json").write_text(json.dumps(session))
    html = build_report(run_dir, formats=("html",))["html"].read_text()
    assert "webcam camera view, smoothed over 1.0 s, webcam_behaviour labels only, uncertain below 0.3<" in html
    assert "the largest in each frame is the one track" in html and "DeepSORT" not in html
    assert "wrists the pose model misses from the hands (palm_detection_full.tflite, confirmed by " \
           "hand_landmark_full.tflite)" in html
    whole_session = re.search(r"Whole session: (.*?)\.</figcaption>", html, re.S).group(1)
    assert "attentive" in whole_session and "taking notes" not in whole_session  # no webcam label maps to it


def test_course_view_lists_only_the_states_its_sessions_could_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Webcam sessions never report "taking notes": the course view's state bars do not list it at 0 %, unless a
    session of another pipeline could report it."""
    from engagement.report import builder
    from engagement.report.run import load_run

    drawn = []
    monkeypatch.setattr(builder.charts, "state_share_chart", lambda shares: drawn.append(list(shares.columns)) or b"png")
    runs = []
    for name in ("webcam-01", "webcam-02", "lecture-03"):
        run_dir = make_run(tmp_path / name, students=2, minutes=1, video=False, session=name)
        if name.startswith("webcam"):
            session = json.loads((run_dir / "session.json").read_text())
            session["config"]["classifier"]["labels_of"] = "webcam_behaviour"
            (run_dir / "session.json").write_text(json.dumps(session))
        runs.append(load_run(run_dir, tables=False))
    builder.comparison_charts(runs[:2])
    builder.comparison_charts(runs)
    assert "taking_notes" not in drawn[0] and {"attentive", "uncertain"} <= set(drawn[0])
    assert "taking_notes" in drawn[1]


@pytest.mark.parametrize(("students", "excluded", "message"), [(0, 0, "No students detected."),
                                                                 (0, 7, "Everyone opted out.")])
def test_empty_sessions_give_a_short_valid_report(tmp_path: Path, students: int, excluded: int, message: str) -> None:
    outputs = build_report(make_run(tmp_path / "run", students=students, excluded=excluded, minutes=5))
    html = outputs["html"].read_text()
    assert message in html and message in _pdf_text(outputs["pdf"])
    assert len(PdfReader(outputs["pdf"]).pages) <= 2
    assert not _embedded_images(html)  # no charts, no stills
    assert 'id="ethics"' in html and 'id="provenance"' in html


def test_the_instructor_and_an_incomplete_input_are_named(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path / "run", students=4, minutes=2, excluded=0, video=False)
    html = build_report(run_dir, formats=("html",))["html"].read_text()
    assert "<th>Instructor</th><td>none marked</td>" in html and 'id="input-notice"' not in html
    session = json.loads((run_dir / "session.json").read_text())
    session["tracking"]["instructor_tracks"] = [11]
    session["input"].update(frames_expected=149, frames_decoded=89, input_complete=False)
    (run_dir / "session.json").write_text(json.dumps(session))
    html = build_report(run_dir, formats=("html",))["html"].read_text()
    assert "<th>Instructor</th><td>track #11, not analysed</td>" in html
    assert 'id="input-notice"' in html and "decoded to 89 of the 149 frames its file declares" in html


def test_everyone_excluded_but_the_instructor_is_said_so(tmp_path: Path) -> None:
    """Four people tracked: three students, all opted out, and the instructor, who is never a student."""
    run_dir = make_run(tmp_path / "run", students=0, excluded=3, minutes=2, video=False)
    session = json.loads((run_dir / "session.json").read_text())
    session["tracking"].update(confirmed_tracks=4, instructor_tracks=[4])
    (run_dir / "session.json").write_text(json.dumps(session))
    assert "Everyone opted out." in build_report(run_dir, formats=("html",))["html"].read_text()


def test_a_run_without_its_summary_says_what_is_missing(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path / "run", students=3, minutes=2, video=False)
    (run_dir / "summary.json").unlink()
    html = build_report(run_dir, formats=("html",))["html"].read_text()
    assert "This run folder has no summary.json although its states table holds" in html


def test_a_run_of_a_course_without_a_session_name_is_titled_by_its_folder(tmp_path: Path) -> None:
    from engagement.report.run import load_run

    run_dir = make_run(tmp_path / "cs-run-7", students=1, minutes=1, video=False)
    session = json.loads((run_dir / "session.json").read_text())
    session["config"]["consent"]["session"] = None
    (run_dir / "session.json").write_text(json.dumps(session))
    assert load_run(run_dir).title == "BIO-101 - cs-run-7"  # two runs of one course tell apart


def test_run_with_only_session_json_still_reports(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path / "run", students=3, minutes=2, video=False)
    for name in ("summary.json", "scores.csv", "states.parquet"):
        (run_dir / name).unlink()
    html = build_report(run_dir, formats=("html",))["html"].read_text()
    assert "No engagement figures." in html and "5 people were tracked" in html
    assert not (run_dir / "report.pdf").exists()


def test_missing_video_gives_moments_without_stills(tmp_path: Path) -> None:
    html = build_report(make_run(tmp_path / "run", students=4, minutes=3, video=False), formats=("html",))["html"].read_text()
    assert "No annotated video in this run" in html
    assert [mime for mime, _ in _embedded_images(html)].count("image/jpeg") == 0


def test_short_session_is_charted_in_seconds(tmp_path: Path) -> None:
    html = build_report(make_run(tmp_path / "run", students=5, minutes=0.5), formats=("html",))["html"].read_text()
    assert "per 1-second period" in html or "per 2-second period" in html
    assert [mime for mime, _ in _embedded_images(html)] == ["image/png"] * 3 + ["image/jpeg"] * 2
    assert re.search(r"At 0:[0-2]\d-0:[0-3]\d into the lecture", html)


def test_one_minute_session_has_one_moment(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path / "run", students=5, minutes=1)
    (run_dir / "states.parquet").unlink()  # no states: minutes from summary.json, shares from the summary
    html = build_report(run_dir, formats=("html",))["html"].read_text()
    assert "Highest engagement" in html and "Lowest engagement" not in html
    assert [mime for mime, _ in _embedded_images(html)].count("image/jpeg") == 1


def test_still_is_the_annotated_frame_at_that_time(tmp_path: Path) -> None:
    video = tmp_path / "annotated.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 2.0, (64, 48))
    for index in range(10):
        writer.write(np.full((48, 64, 3), index * 25, np.uint8))
    writer.release()
    for time_s, expected in ((2.0, 4 * 25), (99.0, 9 * 25)):  # past the end: the last frame
        still = cv2.imdecode(np.frombuffer(read_still(video, time_s), np.uint8), cv2.IMREAD_GRAYSCALE)
        assert abs(float(still.mean()) - expected) < 6
    assert read_still(tmp_path / "missing.mp4", 1.0) is None


def test_bad_run_directories_are_user_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(UserError, match="not found"):
        build_report(tmp_path / "missing")
    with pytest.raises(UserError, match="not a run directory"):
        build_report(tmp_path)
    (tmp_path / "session.json").write_text("{broken")
    with pytest.raises(UserError, match="not valid JSON"):
        build_report(tmp_path)
    with pytest.raises(UserError, match="unknown report format"):
        build_report(tmp_path, formats=("docx",))
    with pytest.raises(UserError, match="at least one run"):
        build_comparison([], tmp_path / "course")
    assert main(["report", str(tmp_path / "missing")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "run directory not found" in error
    assert main(["report", "--compare", str(tmp_path)]) == 2  # no --out


def test_a_registered_sessions_report_stays_in_its_run_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A withdrawal or the retention purge deletes the reports in the run folder only (consent form)."""
    run = make_run(tmp_path / "run", students=3, minutes=2, video=False)
    assert main(["report", "--format", "html", str(run), "--out", str(tmp_path / "elsewhere")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "course BIO-101 in the consent registry" in error
    assert not (tmp_path / "elsewhere").exists()
    assert main(["report", "--format", "html", str(run), "--out", str(run)]) == 0  # its own folder, named
    record = json.loads((run / "session.json").read_text())
    # a run outside the registry: a copy elsewhere is the user's own
    record["consent"]["course"] = record["config"]["consent"]["course"] = None
    (run / "session.json").write_text(json.dumps(record))
    assert main(["report", "--format", "html", str(run), "--out", str(tmp_path / "elsewhere")]) == 0
    assert (tmp_path / "elsewhere" / "report.html").is_file()


def test_cli_and_course_comparison(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runs = [make_run(tmp_path / f"week{week}", students=6 + week, minutes=4, session=f"week-{week:02d}", seed=week)
            for week in (1, 2, 3)]
    runs.append(make_run(tmp_path / "week4", students=0, excluded=5, minutes=2, session="week-04"))
    assert main(["report", "--format", "html", str(runs[0])]) == 0
    assert (runs[0] / "report.html").is_file() and not (runs[0] / "report.pdf").exists()
    assert main(["report", "--compare", *map(str, runs), "--out", str(tmp_path / "course")]) == 0
    assert str(tmp_path / "course" / "compare.pdf") in capsys.readouterr().out
    assert len(PdfReader(tmp_path / "course" / "compare.pdf").pages) == 1
    html = (tmp_path / "course" / "compare.html").read_text()
    assert [mime for mime, _ in _embedded_images(html)] == ["image/png", "image/png"]
    for week in ("week-01", "week-02", "week-03", "week-04"):
        assert week in html
    assert build_comparison(runs[:1], tmp_path / "single")["pdf"].is_file()
    with pytest.raises(UserError, match="--compare got the same run more than once: .*week1"):
        build_comparison([runs[0], runs[1], tmp_path / "week2" / ".." / "week1"], tmp_path / "twice")
    session = json.loads((runs[3] / "session.json").read_text())
    (runs[3] / "session.json").write_text(json.dumps(session | {"config": session["config"] | {"name": "webcam"}}))
    with pytest.raises(UserError, match="--compare needs runs of one pipeline, got lecture, webcam"):
        build_comparison(runs, tmp_path / "mixed")


def test_a_course_view_of_fifteen_unnamed_sessions_is_one_page_that_tells_them_apart(tmp_path: Path) -> None:
    runs = []
    for number in range(1, 16):
        run = make_run(tmp_path / f"lecture-{number:02d}", students=5, minutes=1, session="week-01", seed=number, video=False)
        session = json.loads((run / "session.json").read_text())
        session["config"]["consent"]["session"] = None  # all processed on one day, no session names
        (run / "session.json").write_text(json.dumps(session))
        runs.append(run)
    outputs = build_comparison(runs, tmp_path / "course")
    assert len(PdfReader(outputs["pdf"]).pages) == 1
    html = outputs["html"].read_text()
    assert all(f"lecture-{number:02d}" in html for number in range(1, 16))


def test_html_opens_in_headless_chromium(full_report: dict[str, Path], browser) -> None:
    browser.get(full_report["html"].as_uri())
    assert browser.title.startswith("Engagement report: BIO-101")
    loaded = browser.execute_script(
        "return Array.from(document.images).map(image => image.complete && image.naturalWidth > 0)")
    assert loaded == [True] * 5
    assert browser.execute_script("return document.querySelectorAll('section').length") == len(SECTIONS)
    severe = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert not severe, severe


def test_model_card_figures_include_the_running_baseline_rows() -> None:
    from engagement.report.card import summarize_card

    from engagement.classifier.card import ModelCard

    summary = summarize_card(ModelCard.from_json(_model_card()), "test")
    labels = [row["label"] for row in summary.metrics]
    warmed = "webcam behaviour (running baseline, 80-frame warm-up) / model"
    assert warmed in labels and "cctv headstate / model" in labels
    card = _model_card()
    del card["held_out_running_baseline"]["webcam_behaviour"]["warmup_frames"]  # weights without a warm-up model
    plain = [row["label"] for row in summarize_card(ModelCard.from_json(card), "test").metrics]
    assert "webcam behaviour (running baseline) / model" in plain and warmed not in plain
    for room in "AB":  # a classroom the recipe never saw, beside the rules, and what validation rejected
        assert {f"clabehavior room {room}, unseen / model", f"clabehavior room {room}, unseen / rules"} <= set(labels)
    assert "cctv headstate" not in labels  # coverage sits in the model's row
    assert "FER-2013 expression features" in summary.not_kept


def test_the_report_and_the_web_app_colour_each_state_as_the_video_does() -> None:
    from engagement.annotate import INSTRUCTOR_COLOR, STATE_COLORS, bgr
    from engagement.report import charts
    from engagement.report.builder import _state_legend
    from engagement.web import live

    assert {state: bgr(colour) for state, colour in charts.STATE_COLOURS.items()} == STATE_COLORS
    assert {state: bgr(colour) for state, colour in live.STATE_COLOURS.items()} == STATE_COLORS
    assert bgr("#CC79A7") == INSTRUCTOR_COLOR and "#CC79A7" not in charts.STATE_COLOURS.values()
    assert {entry["colour"] for entry in _state_legend()} == set(charts.STATE_COLOURS.values())  # the report's swatches
