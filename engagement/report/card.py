"""The classifier's model card, read defensively: from session.json when the run recorded it, else from the
shipped classifier (only when the run used the shipped weights), else "not available".

The card is a loose dict written by the classifier stage; this module picks out what the report shows and
ignores the rest, so a card that grows new keys never breaks a report.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

METRIC_KEYS = ("held_out", "heldout", "metrics", "evaluation", "validation")
DATA_KEYS = ("training_data", "data", "datasets", "dataset")
HEADLINE_KEYS = ("accuracy", "balanced_accuracy", "macro_f1", "f1", "auc", "level_auc", "uncertain_share", "coverage")
SKIPPED_KEYS = {"per_class", "confusion_matrix", "majority_state"}
MAX_ROWS = 24
# Further figure tables of a card, shown after the held-out ones with this suffix on their rows: the live view of
# the same held-out data, and the same with low-probability rows called uncertain (counted as wrong).
EXTRA_TABLES = {"held_out_running_baseline": "running baseline", "held_out_with_uncertain": "uncertain counted wrong"}


@dataclass
class ModelCard:
    """What the report shows about the classifier; empty fields mean the card does not say."""

    source: str = "not available"
    name: str = ""
    metric_columns: list[str] = field(default_factory=list)
    metrics: list[dict[str, Any]] = field(default_factory=list)  # {"label": str, "values": [str per column]}
    augmentation: str = ""
    data: str = ""
    features: str = ""
    why: str = ""


def load_card(session: dict[str, Any]) -> ModelCard:
    """The card recorded in ``session.json``, else the shipped classifier's card when this run used it."""
    if ((session.get("config") or {}).get("classifier") or {}).get("enabled") is False:
        return ModelCard(source="the classifier was disabled for this run")
    recorded = ((session.get("models") or {}).get("classifier") or {}).get("card")
    if isinstance(recorded, dict):
        return summarize_card(recorded, "model card recorded with this run")
    weights = ((session.get("config") or {}).get("classifier") or {}).get("weights")
    if weights is None:
        shipped = _shipped_card()
        if shipped:
            return summarize_card(shipped, "model card of the shipped classifier")
    return ModelCard()


def summarize_card(card: dict[str, Any], source: str) -> ModelCard:
    """Pick the report's fields out of a model card dict."""
    metrics = next((card[key] for key in METRIC_KEYS if key in card), card)
    for key, suffix in EXTRA_TABLES.items():
        if isinstance(metrics, dict) and isinstance(card.get(key), dict):
            metrics = {**metrics, **{f"{name} ({suffix})": report for name, report in card[key].items()}}
    columns, rows = _figure_table(metrics)
    return ModelCard(
        source=source,
        name=str(card.get("name") or ""),
        metric_columns=columns,
        metrics=rows,
        augmentation=_text(card.get("augmentation")),
        data=_text(next((card[key] for key in DATA_KEYS if key in card), None)),
        features=_text(card.get("features")),
        why=_text(card.get("why") or card.get("rationale")),
    )


def _shipped_card() -> dict[str, Any] | None:
    try:
        from engagement.classifier.model import StateClassifier

        card = StateClassifier.load(None).model_card()
    except Exception as error:  # the classifier stage may be absent or broken: the report still renders
        log.debug("no shipped model card: %s", error)
        return None
    return card if isinstance(card, dict) else None


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


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict):
        return "; ".join(f"{str(key).replace('_', ' ')}: {_text(item)}" for key, item in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(_text(item) for item in value)
    return str(value)
