"""What the report shows about the classifier, from its model card (``engagement.classifier.card.ModelCard``): the
card recorded in session.json, else the shipped classifier's (only when the run used the shipped weights), else
"not available".
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from engagement.classifier.card import ModelCard
from engagement.session import SessionRecord

log = logging.getLogger(__name__)

LEVEL_KEYS = ("coverage", "level_auc", "level_rules")
HEADLINE_KEYS = ("accuracy", "balanced_accuracy", "macro_f1", "f1", "auc", "level_auc", "uncertain_share", "coverage")
SKIPPED_KEYS = {"per_class", "confusion_matrix", "majority_state", "model_own_labels"}  # own labels: within 0.01 of "model"
MAX_ROWS = 24


@dataclass(frozen=True)
class CardSummary:
    """What the report shows about the classifier; empty fields mean the card does not say."""

    source: str = "not available"
    metric_columns: list[str] = field(default_factory=list)
    metrics: list[dict[str, Any]] = field(default_factory=list)  # {"label": str, "values": [str per column]}
    augmentation: str = ""
    data: str = ""
    not_kept: str = ""


def load_card(session: SessionRecord) -> CardSummary:
    """The card recorded in ``session.json``, else the shipped classifier's card when this run used it."""
    classifier = session.config.classifier
    if not classifier.enabled:
        return CardSummary(source="the classifier was disabled for this run")
    crop_rows = _crop_model_rows(session)
    recorded = session.models.classifier.card if session.models.classifier is not None else None
    if recorded is not None:
        return summarize_card(recorded, "model card recorded with this run", crop_rows)
    if classifier.weights is None:
        shipped = _shipped_card()
        if shipped is not None:
            return summarize_card(shipped, "model card of the shipped classifier", crop_rows)
    return CardSummary()


def _crop_model_rows(session: SessionRecord) -> dict[str, Any]:
    """A classroom never seen, as the run's crop model's card gives it, mixed with the feature network at the card's
    weight, when the run used one and its file is still there (the other mixes are in the model card)."""
    from engagement.classifier.crops import read_metadata

    record = session.models.crop_model
    if record is None or not record.file:
        return {}
    try:
        card = json.loads(read_metadata(record.file).get("card", "{}"))
    except Exception as error:  # moved or replaced since the run: the report still renders
        log.debug("no crop model card: %s", error)
        return {}
    return {f"{room}, {how} with the crop model": {"model": {"macro_f1": figure}}
            for room, figures in card.get("unseen_rooms", {}).items() for how, figure in figures.items()
            if how.startswith("crop weight")}


def summarize_card(card: ModelCard, source: str, crop_rows: dict[str, Any] | None = None) -> CardSummary:
    """The report's view of a model card: held-out figures, a classroom the recipe never saw (one room out), then
    the same held-out data against the running baseline (as a live view sees it) and with low-probability rows
    called uncertain (counted as wrong); the augmentation, the data (licences, label maps) and how it was split.
    ``crop_rows`` (``_crop_model_rows``) follow the unseen classrooms."""
    # The two further views show the model's row only (its baselines are the held-out table's). An engagement-level
    # set shows its ranking only: its two fitted ends as states are in the model card, and the pages are few. A
    # set's coverage goes into its model row rather than a row of its own.
    held_out = {name: {key: value for key, value in report.items() if key in LEVEL_KEYS} if "level_auc" in report
                else _with_coverage(report, ("model", "majority", "rules")) for name, report in card.held_out.items()}
    unseen = {name: _with_coverage(report, ("model", "rules")) for name, report in card.unseen_rooms.items()}
    running = {f"{name} (running baseline{_warmup(report)})": {"model": report["model"]}
               for name, report in card.held_out_running_baseline.items()}
    uncertain = {f"{name} (uncertain counted wrong)": {"model": report["model"]} for name, report in card.held_out_with_uncertain.items()}
    columns, rows = _figure_table({**held_out, **unseen, **(crop_rows or {}), **running, **uncertain})
    splits = "; ".join(f"{dataset.replace('_', ' ')}: {how}" for dataset, how in card.splits.items())
    return CardSummary(
        source=source,
        metric_columns=columns,
        metrics=rows,
        augmentation=card.augment.replace("_", " ") if card.augment else "",
        data=". ".join(part for part in (card.data, f"Split: {splits}" if splits else "") if part),
        not_kept=card.not_kept or "",
    )


def _warmup(report: dict[str, Any]) -> str:
    """How a held-out report's young baselines were classified, when a warm-up model took them."""
    return f", {report['warmup_frames']}-frame warm-up" if report.get("warmup_frames") else ""


def _with_coverage(report: dict[str, Any], contenders: tuple[str, ...]) -> dict[str, Any]:
    """The ``contenders``' figures of an evaluate report, the detector's coverage in the model's row."""
    return {name: {**report[name], "coverage": report["coverage"]} if name == "model" else report[name]
            for name in contenders}


def _shipped_card() -> ModelCard | None:
    try:
        from engagement.classifier.model import StateClassifier

        return StateClassifier.load(None).model_card()
    except Exception as error:  # the classifier stage may be absent or broken: the report still renders
        log.debug("no shipped model card: %s", error)
        return None


def _headline_figures(metrics: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], str, str]]:
    """The headline figures anywhere in ``metrics`` as (key path above it, metric name, formatted value).

    Per-class tables and confusion matrices are left to the model card itself: the report has room for a few
    numbers per dataset and model, not for every cell.
    """
    if isinstance(metrics, dict):
        rows = []
        for key, value in metrics.items():
            if str(key) not in SKIPPED_KEYS:
                rows.extend(_headline_figures(value, (*path, str(key))))
        return rows
    if path and path[-1] in HEADLINE_KEYS and isinstance(metrics, (int, float)) and not isinstance(metrics, bool):
        return [(path[:-1], path[-1], f"{metrics:.3f}" if isinstance(metrics, float) else str(metrics))]
    return []


def _figure_table(metrics: Any) -> tuple[list[str], list[dict[str, Any]]]:
    """Headline figures as a table: one row per key path (dataset, model), one column per metric."""
    figures = _headline_figures(metrics)
    columns = [name for name in HEADLINE_KEYS if any(metric == name for _, metric, _ in figures)]
    rows: dict[tuple[str, ...], dict[str, str]] = {}
    for path, metric, value in figures:
        rows.setdefault(path, {})[metric] = value
    table = [{"label": " / ".join(part.replace("_", " ") for part in path) or "held-out", "values": values}
             for path, values in list(rows.items())[:MAX_ROWS]]
    return [name.replace("_", " ") for name in columns], [
        {"label": row["label"], "values": [row["values"].get(name, "") for name in columns]} for row in table]

