"""The classifier's model card: how the weights were trained and how they scored on held-out data.

Stored as JSON inside the weights file and copied into each run's ``session.json`` (``models.classifier.card``);
``engagement classifier train`` writes it, the report reads it, both through this one dataclass.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engagement.records import from_json, to_json


@dataclass(frozen=True)
class ModelCard:
    """Training choices and held-out figures; a card written before a field existed reads it as empty."""

    augment: str | None = None  # balancing of under-represented states (``classifier train --augment``)
    seed: int | None = None
    rows: dict[str, int] = field(default_factory=dict)  # real, synthetic and settled-baseline rows fitted
    splits: dict[str, str] = field(default_factory=dict)  # dataset -> how it was split into fit and held-out
    # dataset -> ``engagement.classifier.train.evaluate`` report: model, majority and rule figures, coverage
    held_out: dict[str, dict[str, Any]] = field(default_factory=dict)
    held_out_running_baseline: dict[str, dict[str, Any]] = field(default_factory=dict)
    majority_state: dict[str, int] = field(default_factory=dict)  # dataset -> most frequent state index in training
    uncertain_below: float | None = None  # the probability below which the pipelines call a state uncertain
    data: str | None = None  # each dataset's licence, caveat and label map (``train.data_card``)
    # the held-out figures again with rows below ``uncertain_below`` called uncertain (and counted as wrong)
    held_out_with_uncertain: dict[str, dict[str, Any]] = field(default_factory=dict)
    # a classroom the model never saw: the same recipe refitted without one room of a COCO classroom set, scored on
    # that room (name -> evaluate report), once per room; the shipped weights fit every room
    unseen_rooms: dict[str, dict[str, Any]] = field(default_factory=dict)
    not_kept: str | None = None  # what validation tried for this recipe and rejected (``train.NOT_KEPT``)

    @classmethod
    def from_json(cls, data: Any) -> "ModelCard":
        return from_json(cls, data, "model card")

    def to_json(self) -> dict[str, Any]:
        return to_json(self)
