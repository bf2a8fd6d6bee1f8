"""Track-level decisions over a whole recording, between the two passes: pure functions of the analysis frames.

1. Stitch tracklets into one ID per person (``engagement.stitch``) and rewrite the IDs of every analysis frame,
   so the tables, the states and the annotated video all use the final IDs; with a seat plan, only tracklets
   that sat in the same seat are joined.
2. Seats: with a room's seat plan, each track gets its seat and, through the roster, its student; consent is
   decided again for every row (``ConsentStage.place``, ``engagement.consent.seatplan``). A track opted out at
   any time is then opted out on all its rows, those before it was included (``ConsentStage.exclude_whole_tracks``).
3. Roles: the instructor's tracks are marked and leave the analytics (``engagement.roles``).
4. Settle the states: with ``classifier.baseline: session`` each student's track is compared with its whole
   (stitched) session, classified and smoothed (``StateStage.settle``); with the running baseline pass 1 already
   did it, and only the instructor's states are dropped.
"""

from __future__ import annotations

from dataclasses import replace

from engagement.detections import Detections
from engagement.pipeline.analyse import Analyzer
from engagement.roles import instructor_tracks, mark_roles
from engagement.session import TrackingRecord
from engagement.stitch import relabel, stitch


def decide(keyframes: dict[int, Detections], analyzer: Analyzer, frame_size: tuple[int, int] | None = None) -> TrackingRecord:
    """Apply the track-level decisions to ``keyframes`` (from a video of ``frame_size`` (width, height), needed with
    a seat plan) in place; returns the stitching record for session.json."""
    config = analyzer.config
    frames = [keyframes[index] for index in sorted(keyframes)]
    online = analyzer.tracklets.tracking_record()
    mapping: dict[int, int] = {}
    by_seat = analyzer.consent.pending
    if by_seat and frame_size is None:
        raise ValueError("a seat-plan run needs the video's frame size to place its tracks")
    if config.tracker.stitch:
        with analyzer.timer("stitch"):
            if by_seat:
                analyzer.consent.keep_seats_apart(analyzer.tracklets, sorted(keyframes.items()), *frame_size)
            mapping = stitch(analyzer.tracklets.by_id.values(), config.tracker)
            relabel(frames, mapping)
    if by_seat:
        with analyzer.timer("seats"):
            analyzer.consent.place(sorted(keyframes.items()), *frame_size)
    analyzer.consent.exclude_whole_tracks(frames, mapping)
    instructors = instructor_tracks(frames, config.classifier.instructor, config.classifier.instructor_zone)
    mark_roles(frames, instructors)
    if analyzer.states is not None:
        analyzer.states.settle(analyzer.timer)
        for detections in frames:
            analyzer.states.drop_unanalysable(detections)
    return replace(analyzer.tracklets.tracking_record(mapping), tracklets_before_stitching=online.confirmed_tracks,
                   id_ratio_before_stitching=online.id_ratio, stitched=bool(config.tracker.stitch),
                   instructor_tracks=sorted(instructors))
