"""``session.json`` and the model card through their dataclasses: same keys as the files other tools read, older
files (missing keys) and newer ones (unknown keys) still read."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from engagement.classifier.card import ModelCard
from engagement.classifier.model import PACKAGED_WEIGHTS, StateClassifier
from engagement.config import PipelineConfig, SeatZone
from engagement.errors import UserError
from engagement.session import (ClassifierRecord, ConsentRecord, InputRecord, ModelRecord, ModelsRecord, SessionRecord,
                                TrackingRecord)

TOP_LEVEL_KEYS = {"engagement_version", "created", "input", "models", "config", "timings_s", "frames_analysed",
                  "tracking", "consent", "versions"}


def a_session() -> SessionRecord:
    config = PipelineConfig()
    config.consent.track_students = {3: "STU-1"}
    config.consent.opted_out_seats = [SeatZone("door", [[0.0, 0.0], [9.0, 0.0], [9.0, 9.0]])]
    return SessionRecord(
        engagement_version="0.1.0", created="2026-12-03T10:00:00+00:00",
        input=InputRecord(path="/videos/a.mp4", fps=25.0, frames=250, width=640, height=360, duration_s=10.0,
                          sha256="ab" * 32, frames_expected=250, frames_decoded=250),
        models=ModelsRecord(detector=ModelRecord("yolov8n-pose", "/m/yolo", "d1" * 32),
                            classifier=ClassifierRecord("state classifier", "/w.npz", "c1" * 32,
                                                        card=ModelCard(augment="smote", splits={"cctv_headstate": "val"}))),
        config=config, timings_s={"detect": 1.5, "total": 4.0}, frames_analysed=50,
        tracking=TrackingRecord(confirmed_tracks=4, max_people_in_frame=4, id_ratio=1.0, tracklets_before_stitching=6,
                                id_ratio_before_stitching=1.5, stitched=True),
        consent=ConsentRecord(policy="unconsented", unknown="blur", people_excluded=1, retention_days=30,
                              status_counts={"consented": 2}, retention_until="2027-01-02"),
        versions={"python": "3.12"},
    )


def test_a_record_survives_writing_and_reading(tmp_path: Path) -> None:
    session = a_session()
    session.write(tmp_path / "session.json")
    assert SessionRecord.read(tmp_path / "session.json") == session
    data = json.loads((tmp_path / "session.json").read_text())
    assert set(data) == TOP_LEVEL_KEYS
    assert data["config"]["consent"]["track_students"] == {"3": "STU-1"}
    assert data["models"]["classifier"]["card"]["augment"] == "smote"
    assert set(data["models"]) == {"detector", "classifier"}  # stages that did not run have no entry


def test_a_live_run_writes_no_stitching_keys() -> None:
    tracking = TrackingRecord(confirmed_tracks=2, max_people_in_frame=1, id_ratio=2.0)
    assert "stitched" in a_session().to_json()["tracking"]
    assert SessionRecord(tracking=tracking).to_json()["tracking"] == {"confirmed_tracks": 2, "max_people_in_frame": 1,
                                                                      "id_ratio": 2.0}


def test_an_older_file_reads_with_defaults_and_unknown_keys_are_ignored() -> None:
    data = a_session().to_json()
    for key in ("frames_expected", "frames_decoded", "input_complete"):  # written since the completeness check
        del data["input"][key]
    del data["tracking"]
    del data["config"]["anonymizer"]["turned_faces_every_s"]
    data["written_by"] = "a newer version"
    data["consent"]["witnesses"] = 2
    session = SessionRecord.from_json(data)
    assert (session.input.frames_expected, session.input.frames_decoded, session.input.input_complete) == (None, 0, True)
    assert session.tracking == TrackingRecord() and session.config.anonymizer.turned_faces_every_s == 1.0
    assert session.input.frames == 250 and session.consent.people_excluded == 1


@pytest.mark.parametrize("text", ["[]", '{"input": 3}'])
def test_a_malformed_record_is_a_user_error(tmp_path: Path, text: str) -> None:
    (tmp_path / "session.json").write_text(text)
    with pytest.raises(UserError):
        SessionRecord.read(tmp_path / "session.json")


def test_the_packaged_card_reads_every_key_it_holds() -> None:
    with np.load(PACKAGED_WEIGHTS) as weights:
        raw = json.loads(str(weights["card"]))
    card = StateClassifier.load(None).model_card()
    assert card.to_json() == raw  # nothing in the shipped card is dropped by the typed reader
    assert card.augment == raw["augment"] and card.held_out == raw["held_out"]


def test_docs_outputs_name_every_column_and_key() -> None:
    """docs/outputs.md documents what a run writes: every column of the tables and every key of summary.json."""
    import pandas as pd

    from engagement.pipeline.render import states_schema
    from engagement.scoring import summarize
    from engagement.sinks import TRACK_SCHEMA, keypoint_columns
    from engagement.states import STATES

    text = (Path(__file__).parents[1] / "docs" / "outputs.md").read_text()
    columns = [name for name in TRACK_SCHEMA.names if name not in keypoint_columns()] + list(states_schema().names)
    states = pd.DataFrame({"frame": [0], "time_s": [0.0], "track_id": [1], **{f"p_{s}": [1 / 6] for s in STATES},
                           "state": ["attentive"]})
    scores, summary = summarize(states, 1.0, 0)
    keys = [*scores.columns, *summary, *summary["students"][0], "frames_expected", "frames_decoded", "input_complete",
            "framing", "head_share", "close"]
    assert [name for name in [*columns, *keys] if f"`{name}`" not in text] == []
