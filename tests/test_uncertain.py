"""``uncertain``: below ``classifier.uncertain_below`` a person's state is not guessed, in the pipeline's rows,
the states table, the summary, and ``engagement classifier evaluate`` (where it counts as wrong)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from engagement.classifier.data import FeatureSet
from engagement.classifier.stage import set_states
from engagement.classifier.train import evaluate
from engagement.config import ClassifierConfig, PipelineConfig
from engagement.detections import Detections
from engagement.errors import UserError
from engagement.features import FEATURE_NAMES
from engagement.pipeline.render import state_rows
from engagement.scoring import summarize
from engagement.states import STATE_INDEX, STATES, UNCERTAIN


def probabilities(top: list[float], state: str = "attentive") -> np.ndarray:
    """Rows whose most probable state is ``state`` at each ``top`` probability, the rest spread evenly."""
    probs = np.array([[(1 - p) / (len(STATES) - 1)] * len(STATES) for p in top], np.float32)
    probs[:, STATE_INDEX[state]] = top
    return probs


def test_below_the_threshold_the_state_is_uncertain_in_rows_table_and_summary() -> None:
    frame = Detections.from_boxes(np.array([[0, 0, 10, 10]] * 4, np.float32))
    frame.track_id = np.arange(4)
    set_states(frame, np.array([True, True, True, False]), probabilities([0.9, 0.4, 0.5, 0.9]), uncertain_below=0.5)
    assert frame.data["state"] == ["attentive", UNCERTAIN, "attentive", ""]  # at the threshold: sure enough
    assert np.isfinite(frame.data["score"][1])  # the score still comes from the probabilities
    table = pd.DataFrame(state_rows(0, 0.0, frame))
    assert table["state"].tolist() == ["attentive", UNCERTAIN, "attentive"]
    _, summary = summarize(table, 1.0, 0)
    assert summary["uncertain_share"] == pytest.approx(1 / 3, abs=1e-4)
    assert sum(summary["state_share"].values()) + summary["uncertain_share"] == pytest.approx(1.0)
    assert {s["track_id"]: s["uncertain_share"] for s in summary["students"]} == {0: 0.0, 1: 1.0, 2: 0.0}
    set_states(frame, np.ones(4, bool), probabilities([0.9, 0.4, 0.5, 0.2]))  # default: never uncertain
    assert UNCERTAIN not in frame.data["state"]


def test_uncertain_has_the_grey_of_no_state() -> None:
    from engagement.annotate import NO_STATE_COLOR, STATE_COLORS

    assert STATE_COLORS[UNCERTAIN] == NO_STATE_COLOR


def test_threshold_must_be_a_probability() -> None:
    with pytest.raises(UserError, match="uncertain_below"):
        PipelineConfig(classifier=ClassifierConfig(uncertain_below=1.5)).validate()


class FixedModel:
    """Returns the given probabilities whatever the features (a stand-in classifier)."""

    output_labels: list[str] = []
    output_states = np.empty(0, np.int64)
    card: dict = {}

    def __init__(self, probs: np.ndarray) -> None:
        self.probs = probs

    def for_view(self, view: str) -> "FixedModel":
        return self

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        return self.probs[: len(features)]


def test_evaluate_counts_uncertain_as_wrong_and_reports_its_share() -> None:
    y = np.array([STATE_INDEX[s] for s in ["attentive", "attentive", "taking_notes", "taking_notes"]])
    rows = FeatureSet(np.zeros((4, len(FEATURE_NAMES)), np.float32), y, np.array(["up", "up", "down", "down"]),
                      np.array(["f"] * 4), np.array(["f"] * 4), np.ones(4, bool), "cctv_headstate")
    probs = np.concatenate([probabilities([0.9, 0.3]), probabilities([0.8, 0.35], "taking_notes")])
    sure = evaluate(FixedModel(probs), rows, majority_state=0)["model"]
    assert sure["accuracy"] == 1.0 and sure["uncertain_share"] == 0.0
    report = evaluate(FixedModel(probs), rows, majority_state=0, uncertain_below=0.4)
    model = report["model"]
    assert report["uncertain_below"] == 0.4
    assert model["accuracy"] == 0.5 and model["uncertain_share"] == 0.5
    columns = model["confusion_matrix"]["columns"]
    assert columns[-2:] == [UNCERTAIN, "missed"]
    assert [row[columns.index(UNCERTAIN)] for row in model["confusion_matrix"]["counts"]] == [1, 0, 1]
    assert report["rules"]["uncertain_share"] == 0.0  # the baselines always answer


@pytest.mark.slow
def test_shipped_weights_give_the_six_states_or_uncertain_on_a_real_classroom_still(assets: Path, tmp_path: Path) -> None:
    from engagement.classifier.model import StateClassifier
    from engagement.cli import main

    model = StateClassifier.load()
    assert sorted(set(model.output_states.tolist())) == list(range(len(STATES)))
    still = assets / "datasets" / "clabehavior" / "images" / "train_0353.jpg"
    columns = [f"p_{s}" for s in STATES]

    def predicted(threshold: float) -> pd.DataFrame:
        out = tmp_path / f"below_{threshold}.csv"
        assert main(["classifier", "predict", str(still), "--out", str(out), "--tiles", "3x3",
                     "--uncertain-below", str(threshold)]) == 0
        table = pd.read_csv(out)
        return table[table["person_found"]]

    sure = predicted(0.0)
    assert len(sure) > 10 and set(sure["state"]) <= set(STATES)
    median = float(sure[columns].max(axis=1).median())  # about half the people fall below it
    unsure = predicted(median)
    top = unsure[columns].max(axis=1)
    below, clear = top < median - 1e-4, top > median + 1e-4  # the table's probabilities are rounded to 4 places
    assert below.any() and clear.any()
    assert (unsure["state"][below] == UNCERTAIN).all() and set(unsure["state"][clear]) <= set(STATES)
