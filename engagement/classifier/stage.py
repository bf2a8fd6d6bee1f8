"""State stage: features -> classifier -> per-track smoothing -> engagement score, for consenting tracks only.
The twin of ``engagement.consent.stage.ConsentStage``: both run on each analysis frame's detections."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from engagement.config import PipelineConfig
from engagement.consent.stage import analysable
from engagement.detections import Detections
from engagement.features import head_boxes, warming_up
from engagement.models import file_sha256
from engagement.session import ClassifierRecord, ModelRecord
from engagement.states import STATES, mixed

if TYPE_CHECKING:
    from engagement.pipeline.analyse import StageTimer


class StateStage:
    """Features -> classifier -> per-track smoothing -> engagement score, for consenting tracks only.

    With ``classifier.baseline: session`` each analysis frame's rows are only recorded; ``settle`` then
    compares every track with its whole session and fills in the states (the first pass of a recorded video).
    """

    def __init__(self, config: PipelineConfig) -> None:
        from engagement.classifier.crops import crop_model_for
        from engagement.classifier.model import load_classifier
        from engagement.features import FeatureExtractor
        from engagement.states import StateSmoother

        self.features = FeatureExtractor(config.classifier, config.models_dir)
        self.classifier = load_classifier(config.classifier)
        self.crops = crop_model_for(config.classifier)
        self.crop_weight = config.classifier.crop_weight
        self.crop_weights = config.classifier.crop_weights
        self.crop_refresh_s = config.classifier.crop_refresh_s
        self._crop_cache: dict[int, tuple[float, np.ndarray]] = {}  # track id -> (time, crop-model probabilities)
        self.smoother = StateSmoother(config.classifier.smoothing_s)
        self.weights = config.classifier.weights
        self.session_baseline = config.classifier.baseline == "session"
        self.max_age_s = config.tracker.max_age_s
        self._last_seen: dict[int, float] = {}  # track id -> time it was last analysed
        self.uncertain_below = config.classifier.uncertain_below
        self.warmup_frames = config.classifier.warmup_frames
        # (detections, analysable rows, their frame features, fresh-face flags, crop-model probabilities or None, time)
        # per analysis frame
        self._recorded: list[tuple[Detections, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, float]] = []

    def classifier_record(self) -> ClassifierRecord:
        """Provenance of the state classifier, with its model card for the report."""
        from engagement.classifier.model import PACKAGED_WEIGHTS

        path = Path(self.weights) if self.weights else PACKAGED_WEIGHTS
        return ClassifierRecord(name="engagement state classifier", file=str(path), sha256=file_sha256(path), card=self.classifier.model_card())

    def crop_record(self) -> ModelRecord | None:
        """Provenance of the upper-body crop model, when this view runs one."""
        if self.crops is None:
            return None
        from engagement.classifier.crops import PACKAGED_CROP_WEIGHTS

        path = Path(self.crop_weights) if self.crop_weights else PACKAGED_CROP_WEIGHTS
        return ModelRecord(name="upper-body crop model", file=str(path), sha256=file_sha256(path))

    def __call__(self, frame: np.ndarray, detections: Detections, time_s: float, timer: StageTimer) -> Detections:
        rows = analysable(detections)
        self._forget_gone(detections.track_id[rows], time_s)
        if self.session_baseline:
            with timer("features"):
                frame_features, fresh = self.features.frame_features(frame, detections[rows], time_s)
            self._recorded.append((detections, rows, frame_features, fresh,
                                   self._crop_probs(frame, detections[rows], time_s, timer), time_s))
            return detections
        probs = np.full((len(detections), len(STATES)), np.nan, np.float32)
        if rows.any():
            subset = detections[rows]
            with timer("features"):
                features = self.features(frame, subset, time_s)
            with timer("classify"):
                warming = warming_up(features, self.features.calibration.baseline_frames(subset.track_id),
                                     self.warmup_frames)
                raw = self.classifier.predict_proba(features, warming)
            crop_probs = self._crop_probs(frame, subset, time_s, timer)
            if crop_probs is not None:
                raw = mixed(raw, crop_probs, self.crop_weight)
            probs[rows] = self.smoother.update(subset.track_id, raw, time_s)
        set_states(detections, rows, probs, self.uncertain_below)
        return detections

    def _crop_probs(self, frame: np.ndarray, people: Detections, time_s: float, timer: StageTimer) -> np.ndarray | None:
        """The crop model's state probabilities of the tracked ``people`` (None without a crop model): a track's
        last ones while younger than ``classifier.crop_refresh_s``, else its crop classified now."""
        if self.crops is None:
            return None
        probs = np.empty((len(people), len(STATES)), np.float32)
        stale = np.ones(len(people), bool)
        for row, track_id in enumerate(people.track_id.tolist()):
            cached = self._crop_cache.get(track_id)
            if cached is not None and 0 <= time_s - cached[0] < self.crop_refresh_s:
                probs[row], stale[row] = cached[1], False
        if stale.any():
            with timer("crops"):
                probs[stale] = self.crops.predict_proba(frame, head_boxes(people.keypoints[stale], people.xyxy[stale]))
            self._crop_cache.update({track_id: (time_s, row_probs) for track_id, row_probs
                                     in zip(people.track_id[stale].tolist(), probs[stale])})
        return probs

    def _forget_gone(self, track_ids: np.ndarray, time_s: float) -> None:
        """Free the per-track state (feature history, running baseline, smoothing) of tracks not analysed for
        longer than the tracker keeps a lost track: their IDs never come back, so a lecture-long run holds state
        for the people recently in view, not for everyone it has seen."""
        self._last_seen.update(dict.fromkeys(track_ids.tolist(), time_s))
        for track_id in [t for t, seen in self._last_seen.items() if time_s - seen > self.max_age_s]:
            del self._last_seen[track_id]
            self.features.forget(track_id)
            self.smoother.forget(track_id)
            self._crop_cache.pop(track_id, None)

    def settle(self, timer: StageTimer) -> None:
        """Classify the recorded rows against each track's whole-session baseline, then smooth them per track
        in time order, as the running mode would have: states for every recorded analysis frame."""
        from engagement.features import RELATIVE_FEATURES, face_rows, session_relative
        self._recorded = [self._still_analysable(*entry) for entry in self._recorded]
        if not self._recorded:
            return
        with timer("classify"):
            track_ids = np.concatenate([detections.track_id[rows] for detections, rows, *_ in self._recorded])
            frame_features = np.concatenate([features for _, _, features, *_ in self._recorded])
            fresh = np.concatenate([flags for _, _, _, flags, _, _ in self._recorded])
            relative = np.full((len(track_ids), len(RELATIVE_FEATURES)), np.nan, np.float32)
            baseline_frames = np.zeros(len(track_ids), int)
            for track_id in np.unique(track_ids):
                mine = track_ids == track_id
                relative[mine] = session_relative(frame_features[mine], fresh[mine])
                baseline_frames[mine] = (face_rows(frame_features[mine]) & fresh[mine]).sum()
            warming = warming_up(frame_features, baseline_frames, self.warmup_frames)
            raw = self.classifier.predict_proba(np.concatenate([frame_features, relative], axis=1), warming)
            if self.crops is not None:
                raw = mixed(raw, np.concatenate([crop_probs for *_, crop_probs, _ in self._recorded]), self.crop_weight)
            start = 0
            for detections, rows, features, *_, time_s in self._recorded:
                probs = np.full((len(detections), len(STATES)), np.nan, np.float32)
                if len(features):
                    probs[rows] = self.smoother.update(detections.track_id[rows], raw[start:start + len(features)], time_s)
                start += len(features)
                set_states(detections, rows, probs, self.uncertain_below)
        self._recorded.clear()

    @staticmethod
    def _still_analysable(detections: Detections, rows: np.ndarray, features: np.ndarray, fresh: np.ndarray,
                          crop_probs: np.ndarray | None, time_s: float) -> tuple:
        """A recorded frame less the rows that a track-level decision (the instructor's role) took out of analytics."""
        keep = analysable(detections)[rows]
        return (detections, rows & analysable(detections), features[keep], fresh[keep],
                None if crop_probs is None else crop_probs[keep], time_s)

    @staticmethod
    def drop_unanalysable(detections: Detections) -> None:
        """Clear the states of rows no longer analysable (the instructor), so no table or score holds them; the
        other rows keep the states already set (``uncertain`` included)."""
        if "state" not in detections.data:
            return
        dropped = ~analysable(detections)
        detections.data["state_probs"] = np.where(dropped[:, None], np.nan, detections.data["state_probs"]).astype(np.float32)
        detections.data["state"] = ["" if gone else state for state, gone in zip(detections.data["state"], dropped)]
        detections.data["score"] = np.where(dropped, np.nan, detections.data["score"])


def set_states(detections: Detections, rows: np.ndarray, probs: np.ndarray, uncertain_below: float = 0.0) -> None:
    """Attach smoothed state probabilities, the state and the engagement score to the analysable ``rows``; a row
    whose most probable state is below ``uncertain_below`` is ``uncertain`` (no guess is shown)."""
    from engagement.scoring import engagement_score
    from engagement.states import named_state

    detections.data["state_probs"] = probs
    detections.data["state"] = [named_state(p, uncertain_below) if ok else "" for p, ok in zip(probs, rows)]
    detections.data["score"] = np.where(rows, engagement_score(np.nan_to_num(probs)), np.nan)
