"""Track-level decisions over a whole recording, between the two passes: pure functions of the analysis frames.

1. Stitch tracklets into one ID per person (``engagement.stitch``) and rewrite the IDs of every analysis frame,
   so the tables, the states and the annotated video all use the final IDs.
2. Settle the states: with ``classifier.baseline: session`` each track is compared with its whole (stitched)
   session, classified and smoothed (``StateStage.settle``); with the running baseline pass 1 already did it.
"""

from __future__ import annotations

from dataclasses import replace

from engagement.detections import Detections
from engagement.pipeline.analyse import Analyzer
from engagement.session import TrackingRecord
from engagement.stitch import relabel, stitch


def decide(keyframes: dict[int, Detections], analyzer: Analyzer) -> TrackingRecord:
    """Apply the track-level decisions to ``keyframes`` in place; returns the stitching record for session.json."""
    online = analyzer.tracklets.tracking_record()
    mapping: dict[int, int] = {}
    if analyzer.config.tracker.stitch:
        with analyzer.timer("stitch"):
            mapping = stitch(analyzer.tracklets.by_id.values(), analyzer.config.tracker)
            relabel((keyframes[index] for index in sorted(keyframes)), mapping)
    if analyzer.states is not None:
        analyzer.states.settle(analyzer.timer)
    return replace(analyzer.tracklets.tracking_record(mapping), tracklets_before_stitching=online.confirmed_tracks,
                   id_ratio_before_stitching=online.id_ratio, stitched=analyzer.config.tracker.stitch)
