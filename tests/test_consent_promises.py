"""Every sentence the consent and approval forms say is either backed by a behaviour test or is a statement
about what people do (policy text). Adding a promise to a template or to ``consent/policy.yaml`` without an
entry in ``PROMISES`` fails ``test_every_sentence_of_the_forms_is_in_the_table``.

Behaviour tests use a temporary SQLite registry and small synthetic run folders and recordings."""

from __future__ import annotations

import datetime as dt
import html
import json
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from engagement.cli import main
from engagement.config import ConsentConfig, PipelineConfig, to_dict
from engagement.consent.outputs import delete_source
from engagement.consent.registry import Registry
from engagement.consent.stage import ConsentStage, analysable
from engagement.detections import Detections
from engagement.errors import UserError
from engagement.models import file_sha256
from engagement.pipeline.record import consent_record, recorded_config
from engagement.records import to_json
from engagement.sinks import track_rows
from engagement.states import STATES

TESTS = Path(__file__).parent
PEOPLE = "people"  # a statement about what people do or intend: policy text, no software behaviour to test

# Distinctive phrase of each promise -> the tests that show the software does it ("file.py::test" or a test here).
PROMISES: dict[str, str | tuple[str, ...]] = {
    "how attention and participation change during lessons": PEOPLE,
    "No grades or individual assessments are based on these data": PEOPLE,
    "analysed on the institution's own computer": PEOPLE,
    "Results are seen only by the course instructor": PEOPLE,
    "Published figures are class-level aggregates": PEOPLE,
    "without any effect on your grades": PEOPLE,
    "Questions, or to withdraw:": PEOPLE,
    "Contact for participants:": PEOPLE,
    "The instructor runs the purge regularly": PEOPLE,
    "asks approval to record sessions of this course": PEOPLE,
    "an estimated engagement state (attentive, taking notes, distracted, confused, bored, in discussion), linked to a pseudonymous ID": (
        "test_form_lists_the_classifier_states", "test_names_stay_in_the_registry"),
    "appears in no analysis output": "test_names_stay_in_the_registry",
    "facial expression and the image of their head, shoulders, hands and desk": (
        "test_crops.py::test_only_consenting_people_are_classified_from_their_image",
        "test_crops.py::test_the_state_stage_mixes_the_crop_model_in"),
    "is blurred in every stored video and leaves no row in any table": (
        "test_registry_mode_blurs_and_excludes_everyone_not_consented",
        "test_consent_stage.py::test_registry_mode_refuses_settings_that_would_show_or_analyse_others",
        "test_pipeline_video.py::test_opted_out_seat_leaves_no_trace_and_no_face"),
    "I agree to be included in the engagement analysis": "test_registry_mode_blurs_and_excludes_everyone_not_consented",
    "I do not agree: blur my face and leave me out of all analysis": "test_registry_mode_blurs_and_excludes_everyone_not_consented",
    "analyse only students whose current status in the consent registry is consented": (
        "test_registry_mode_blurs_and_excludes_everyone_not_consented",
        "test_consent_stage.py::test_registry_mode_refuses_settings_that_would_show_or_analyse_others"),
    "Processing under this course is refused on any date that no recorded approval covers": (
        "test_consent_stage.py::test_registry_course_needs_a_current_approval",
        "test_consent_stage.py::test_approval_covers_its_last_day_only",
        "test_consent_registry.py::test_approval_period_defaults_to_a_year_and_must_not_end_before_it_starts"),
    "The retention purge deletes every file of a session's analysis": (
        "test_purge_at_the_retention_age",
        "test_consent_registry.py::test_purge_older_than_zero_removes_todays_session_and_every_file"),
    "The original recording is deleted as soon as it has been analysed": "test_recording_deleted_under_the_course_policy",
    "The original recording is not deleted by the analysis": "test_recording_kept_without_the_course_policy",
    "Your consent record (your pseudonymous ID, your choice and its date": "test_consent_record_keeps_its_history_and_loses_the_name_on_withdrawal",
    "every mention of your ID is deleted from the outputs of all earlier sessions": "test_consent_registry.py::test_withdraw_scrubs_every_file_of_the_run",
    "annotated videos and reports are deleted": "test_consent_registry.py::test_withdraw_removes_every_row_about_the_student",
    "Later sessions blur you and leave you out": (
        "test_consent_stage.py::test_registry_decides_by_student",
        "test_consent_registry.py::test_an_older_or_undated_consent_does_not_undo_an_opt_out_or_a_withdrawal"),
    "their rows and every mention of their ID are then deleted": (
        "test_consent_registry.py::test_withdraw_scrubs_every_file_of_the_run",
        "test_consent_registry.py::test_withdraw_removes_every_row_about_the_student"),
}
NOT_PROMISES = (
    re.compile(r"_{4,}"),  # a field to fill in (signatures, dates, placeholders)
    re.compile(r"form version"),  # the heading line: course, institution, version
)


@pytest.fixture
def registry_path(tmp_path: Path) -> Path:
    return tmp_path / "registry.sqlite"


def _approved_course(registry: Registry, code: str = "CS101", delete_source: bool = False) -> None:
    registry.add_course(code, "Intro", retention_days=30, delete_source=delete_source)
    registry.add_approval(code, "Dr. Example", "Dean Placeholder", dt.date.today(), "all lectures")


def _rendered(registry_path: Path, tmp_path: Path, kind: str, suffix: str, delete_source: bool) -> str:
    code = "KEEP-1" if not delete_source else "DELETE-1"
    with Registry.open(registry_path) as registry:
        registry.add_course(code, "Intro", delete_source=delete_source)
    out = tmp_path / f"{kind}-{code}{suffix}"
    assert main(["consent", kind, "--course", code, "--out", str(out), "--registry", str(registry_path)]) == 0
    return out.read_text()


def _sentences(text: str, suffix: str) -> list[str]:
    """The form's sentences and bullets, less headings, title, styles and the signature table."""
    if suffix == ".html":
        text = re.sub(r"(?s)<head>.*?</head>|<h[12]>.*?</h[12]>|<table class=\"sign\">.*?</table>", "\n", text)
        text = re.sub(r"</?(?:p|li|ul|div|br)\b[^>]*>", "\n", text)  # blocks end a line; inline tags do not
        text = html.unescape(re.sub(r"<[^>]+>", "", text))
    else:
        text = "\n".join(line for line in text.splitlines() if not line.startswith("#"))
        text = re.sub(r"(?m)^- (\[ \] )?", "", text)
    pieces = (piece.strip() for line in text.splitlines() for piece in re.split(r"(?<=[.;!?])\s+(?=[A-Z])", line))
    return [piece for piece in pieces if piece and not any(pattern.search(piece) for pattern in NOT_PROMISES)]


FORMS = [(kind, suffix, delete) for kind in ("form", "approval") for suffix in (".md", ".html") for delete in (False, True)]


@pytest.mark.parametrize("kind, suffix, delete_source", FORMS)
def test_every_sentence_of_the_forms_is_in_the_table(registry_path: Path, tmp_path: Path, kind: str, suffix: str, delete_source: bool) -> None:
    sentences = _sentences(_rendered(registry_path, tmp_path, kind, suffix, delete_source), suffix)
    assert len(sentences) >= 10
    uncovered = [s for s in sentences if not any(phrase in " ".join(s.split()) for phrase in PROMISES)]
    assert uncovered == [], "promises without a behaviour test: add them to PROMISES"


def test_every_promise_in_the_table_is_in_a_form_and_has_a_test(registry_path: Path, tmp_path: Path) -> None:
    rendered = " ".join(" ".join(_rendered(registry_path, tmp_path / f"{i}", *form).split()) for i, form in enumerate(FORMS))
    for phrase, checks in PROMISES.items():
        assert html.escape(phrase, quote=False) in rendered or phrase in rendered, f"no form says {phrase!r} any more"
        for check in (checks,) if isinstance(checks, str) else checks:
            if check == PEOPLE:
                continue
            file, _, name = check.rpartition("::")
            source = (TESTS / file).read_text() if file else Path(__file__).read_text()
            assert f"\ndef {name}(" in source, f"{check} does not exist"


# Behaviour -------------------------------------------------------------------------------------------------


def test_form_lists_the_classifier_states(registry_path: Path, tmp_path: Path) -> None:
    text = " ".join(_rendered(registry_path, tmp_path, "form", ".md", False).split())
    listed = re.search(r"engagement state \(([^)]*)\)", text).group(1).split(", ")
    assert len(listed) == len(STATES)
    for state in STATES:
        assert any(name in state.replace("_", " ") for name in listed), state


def _people(tracks: list[int]) -> Detections:
    boxes = np.array([[i * 20, 0, i * 20 + 10, 10] for i in range(len(tracks))], np.float32)
    return Detections.from_boxes(boxes, track_id=np.array(tracks))


def test_registry_mode_blurs_and_excludes_everyone_not_consented(registry_path: Path) -> None:
    with Registry.open(registry_path) as registry:
        _approved_course(registry)
        registry.set_consent("S1", "CS101", "consented")
        registry.set_consent("S2", "CS101", "opted_out")
        stage = ConsentStage(ConsentConfig(course="CS101", track_students={1: "S1", 2: "S2", 3: "S-never-signed"}), registry)
    people = stage(_people([1, 2, 3, 4]))  # track 4 is matched to no student
    assert people.data["blur"].tolist() == [False, True, True, True]
    assert analysable(people).tolist() == [True, False, False, False]
    assert track_rows(0, 0.0, people[analysable(people)])["track_id"].tolist() == [1]  # the only row the tables get


def test_the_session_record_maps_only_consenting_students_to_tracks(registry_path: Path) -> None:
    """Tracks mapped (by hand or by seat) to an opted-out or unregistered student are blurred and left out; the
    session's track map, which goes into session.json and the registry, and the config session.json records, must
    not say they were there either."""
    with Registry.open(registry_path) as registry:
        _approved_course(registry)
        registry.set_consent("S1", "CS101", "consented")
        registry.set_consent("S2", "CS101", "opted_out")
        config = PipelineConfig()
        config.consent = ConsentConfig(registry=str(registry_path), course="CS101",
                                       track_students={1: "S1", 2: "S2", 3: "S-never-signed"})
        stage = ConsentStage(config.consent, registry)
    stage(_people([1, 2, 3]))
    assert consent_record(config, SimpleNamespace(consent=stage)).track_students == {1: "S1"}
    assert recorded_config(config, stage.snapshot).consent.track_students == {1: "S1"}  # session.json's config
    assert config.consent.track_students == {1: "S1", 2: "S2", 3: "S-never-signed"}  # the run's own config is left as given


def test_names_stay_in_the_registry(registry_path: Path) -> None:
    """The name a student writes on the form is kept in the registry only: not in what the consent stage hands
    the pipeline, not in the run's session record, not in the track table's columns, not in the audit log."""
    name = "Ada Lovelace-Example"
    with Registry.open(registry_path) as registry:
        _approved_course(registry)
        registry.set_consent("S1", "CS101", "consented", name=name)
        config = PipelineConfig()
        config.consent = ConsentConfig(registry=str(registry_path), course="CS101", track_students={1: "S1"})
        stage = ConsentStage(config.consent, registry)
        audit = json.dumps(list(registry.audit_log()), default=str)
        assert registry.consent("CS101")[0].name == name
    people = stage(_people([1]))
    record = {"config": to_dict(config), "consent": to_json(consent_record(config, SimpleNamespace(consent=stage)))}
    assert name not in json.dumps(record, default=str) and name not in repr(people.data) and name not in audit
    assert "S1" in json.dumps(record) and not {"name", "student_id"} & set(track_rows(0, 0.0, people))


def test_consent_record_keeps_its_history_and_loses_the_name_on_withdrawal(registry_path: Path) -> None:
    with Registry.open(registry_path) as registry:
        registry.add_course("CS101", "Intro")
        registry.set_consent("S1", "CS101", "consented", dt.date(2026, 9, 1), "2026.1", "A3", "Ada Example")
        registry.withdraw("S1")
        (current,) = registry.consent("CS101")
        history = [e["action"] for e in registry.audit_log() if e["subject"] == "S1"]
    assert current.status == "withdrawn" and current.name is None
    assert history == ["student_added", "consent_consented", "consent_withdrawn"]


def _run(run_dir: Path) -> None:
    run_dir.mkdir()
    (run_dir / "session.json").write_text("{}")
    (run_dir / "tracks.csv").write_text("track_id\n1\n")


def test_purge_at_the_retention_age(registry_path: Path, tmp_path: Path) -> None:
    """A session is purged once it is exactly ``retention_days`` old, not a day before."""
    due, young = tmp_path / "due", tmp_path / "young"
    _run(due)
    _run(young)
    with Registry.open(registry_path) as registry:
        registry.add_course("CS101", "Intro", retention_days=30)
        registry.record_session("CS101", dt.date.today() - dt.timedelta(days=30), due, None, {})
        registry.record_session("CS101", dt.date.today() - dt.timedelta(days=29), young, None, {})
        assert main(["consent", "purge", "--course", "CS101", "--registry", str(registry_path)]) == 0
        assert [s.run_dir for s in registry.sessions()] == [young.resolve()]
    assert not due.exists() and (young / "session.json").exists()


def _analysed_recording(registry: Registry, tmp_path: Path, course: str) -> tuple[Path, Path]:
    """A recording file and the run folder of its registered session, as ``engagement process`` leaves them."""
    video, run_dir = tmp_path / "lecture.mp4", tmp_path / "run"
    video.write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video")
    _run(run_dir)
    registry.record_session(course, dt.date.today(), run_dir, file_sha256(video), {})
    return video, run_dir


def test_recording_deleted_under_the_course_policy(registry_path: Path, tmp_path: Path) -> None:
    with Registry.open(registry_path) as registry:
        _approved_course(registry, delete_source=True)
        video, run_dir = _analysed_recording(registry, tmp_path, "CS101")
        (session,) = registry.sessions()
    assert delete_source(registry_path, "CS101", video, run_dir) is True
    assert not video.exists() and (run_dir / "session.json").exists()
    with Registry.open(registry_path) as registry:
        (entry,) = [e for e in registry.audit_log() if e["action"] == "source_deleted"]
    assert entry["subject"] == "CS101" and entry["details"]["session"] == session.id
    assert entry["details"]["video_sha256"] == session.video_sha256 and "Dr. Example" not in json.dumps(entry, default=str)


def test_recording_kept_without_the_course_policy(registry_path: Path, tmp_path: Path) -> None:
    with Registry.open(registry_path) as registry:
        _approved_course(registry, delete_source=False)
        video, run_dir = _analysed_recording(registry, tmp_path, "CS101")
    assert delete_source(registry_path, "CS101", video, run_dir) is False
    assert video.exists()
    with Registry.open(registry_path) as registry:
        assert not [e for e in registry.audit_log() if e["action"] == "source_deleted"]


def test_recording_changed_after_analysis_is_not_deleted(registry_path: Path, tmp_path: Path) -> None:
    with Registry.open(registry_path) as registry:
        _approved_course(registry, delete_source=True)
        video, run_dir = _analysed_recording(registry, tmp_path, "CS101")
    video.write_bytes(b"another recording")
    with pytest.raises(UserError, match="changed after it was analysed"):
        delete_source(registry_path, "CS101", video, run_dir)
    assert video.exists()
