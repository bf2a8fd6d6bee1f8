"""Tracklet stitching on synthetic tracklets: what it must join (a gap) and must not (a crossing, two similar
students in different seats, different consent outcomes), and the analyse -> decide data flow with fake stages."""

from __future__ import annotations

import numpy as np
import pytest

from engagement.config import ConsentConfig, PipelineConfig, SeatZone, TrackerConfig
from engagement.consent.stage import ConsentStage
from engagement.detections import Detections
from engagement.pipeline.analyse import Analyzer
from engagement.pipeline.decide import decide
from engagement.session import TrackingRecord
from engagement.stitch import Tracklet, Tracklets, relabel, stitch

CONFIG = TrackerConfig()
RNG = np.random.default_rng(0)
LOOKS = {name: v / np.linalg.norm(v) for name, v in (("ann", RNG.normal(size=64)), ("bob", RNG.normal(size=64)))}


def tracklet(track_id: int, start: float, end: float, x: float, look: str, consent=("analyzed", None), drift: float = 0.0) -> Tracklet:
    """A seated person whose box is 100 px tall at ``x``; ``drift`` moves the box by the end."""
    first = np.array([x, 100, x + 50, 200], np.float32)
    return Tracklet(track_id, start, end, first, first + np.array([drift, 0, drift, 0], np.float32),
                    LOOKS[look] * (end - start + 1), {consent})


def test_a_gap_is_bridged_and_the_smallest_id_kept() -> None:
    mapping = stitch([tracklet(3, 0, 10, 100, "ann"), tracklet(9, 15, 30, 105, "ann"), tracklet(12, 40, 50, 102, "ann")], CONFIG)
    assert mapping == {3: 3, 9: 3, 12: 3}


def test_overlapping_tracklets_are_never_joined() -> None:
    """Two people crossing: same look, same place, but seen at the same time."""
    mapping = stitch([tracklet(1, 0, 10, 100, "ann"), tracklet(2, 5, 20, 100, "ann")], CONFIG)
    assert mapping == {1: 1, 2: 2}


def test_similar_students_in_different_seats_stay_apart() -> None:
    """Uniforms look alike: the appearance matches, the seat does not."""
    mapping = stitch([tracklet(1, 0, 10, 100, "ann"), tracklet(2, 12, 20, 400, "ann")], CONFIG)
    assert mapping == {1: 1, 2: 2}


def test_different_looks_stay_apart_and_each_tracklet_continues_once() -> None:
    tracklets = [tracklet(1, 0, 10, 100, "ann"), tracklet(2, 12, 20, 100, "bob"), tracklet(3, 12, 20, 110, "ann")]
    assert stitch(tracklets, CONFIG) == {1: 1, 2: 2, 3: 1}


def test_gap_limit_and_consent_outcomes_are_respected() -> None:
    late = stitch([tracklet(1, 0, 10, 100, "ann"), tracklet(2, 10 + CONFIG.stitch_max_gap_s + 1, 200, 100, "ann")], CONFIG)
    assert late == {1: 1, 2: 2}
    opted_out = stitch([tracklet(1, 0, 10, 100, "ann"), tracklet(2, 12, 20, 100, "ann", consent=("seat", None))], CONFIG)
    assert opted_out == {1: 1, 2: 2}


def test_relabel_rewrites_ids_and_keeps_untracked_rows() -> None:
    frame = Detections.from_boxes(np.zeros((3, 4), np.float32), track_id=np.array([9, -1, 4]))
    relabel([frame], {9: 3})
    assert frame.track_id.tolist() == [3, -1, 4]


class FakeDetector:
    """Returns the given people per call, as the pose adapter would."""

    batch_size = 1

    def __init__(self, frames: list[np.ndarray]) -> None:
        self.frames = iter(frames)

    def detect_batch(self, images: list[np.ndarray]) -> list[Detections]:
        return [Detections.from_boxes(next(self.frames)) for _ in images]


class FakeTracker:
    """Gives the boxes of each call the next list of IDs, with one appearance for everyone."""

    def __init__(self, ids: list[list[int]]) -> None:
        self.ids = iter(ids)

    def update(self, frame: np.ndarray, detections: Detections) -> Detections:
        result = detections[np.arange(len(detections))]
        result.track_id = np.array(next(self.ids), np.int64)
        result.data["confirmed"] = np.ones(len(result), bool)
        result.data["embedding"] = np.tile(LOOKS["ann"], (len(result), 1))
        return result


def test_analyse_then_decide_gives_one_id_to_a_person_seen_twice() -> None:
    """Track 1 is lost for a while and comes back as track 3 in the same seat: after decide, one ID everywhere."""
    seated = np.array([[100, 100, 150, 200]], np.float32)
    nobody = np.zeros((0, 4), np.float32)
    boxes = [seated] * 3 + [nobody] * 2 + [seated + 2] * 3
    ids = [[1]] * 3 + [[]] * 2 + [[3]] * 3
    analyzer = Analyzer(PipelineConfig(), FakeDetector(boxes), FakeTracker(ids), ConsentStage(ConsentConfig()))
    frame = np.zeros((10, 10, 3), np.uint8)
    keyframes = {index: analyzer(frame, index / 5) for index in range(len(boxes))}
    assert {int(t) for d in keyframes.values() for t in d.track_id} == {1, 3}
    record = decide(keyframes, analyzer)
    assert {int(t) for d in keyframes.values() for t in d.track_id} == {1}
    assert record.tracklets_before_stitching == 2 and record.confirmed_tracks == 1
    assert record.id_ratio_before_stitching == pytest.approx(2.0) and record.id_ratio == pytest.approx(1.0)
    assert all("embedding" not in d.data for d in keyframes.values())  # appearance stays in the tracklet log
    assert all(d.data["blur"].all() for d in keyframes.values())  # the default policy: every face hidden


def test_decide_opts_out_a_whole_track_that_entered_an_opted_out_seat_late() -> None:
    """Track 1 is analysed for three frames, then its anchor enters an opted-out seat zone: after decide, none of
    its rows is analysed or shown, the first three included; track 2 never enters it and keeps its rows."""
    walker = [np.array([[0, 0, 40, 100], [200, 0, 240, 100]], np.float32) + [30 * i, 0, 30 * i, 0] for i in range(3)]
    seated = np.array([[100, 0, 140, 100], [200, 0, 240, 100]], np.float32)  # track 1's anchor (120, 100) in the zone
    zone = SeatZone("left out", [[110, 90], [130, 90], [130, 110], [110, 110]])
    config = PipelineConfig(consent=ConsentConfig(blur="opted_out", opted_out_seats=[zone]))
    analyzer = Analyzer(config, FakeDetector([*walker, seated]), FakeTracker([[1, 2]] * 4), ConsentStage(config.consent))
    frame = np.zeros((10, 10, 3), np.uint8)
    keyframes = {index: analyzer(frame, index / 5) for index in range(4)}
    assert [d.data["opted_out"].tolist() for d in keyframes.values()] == [[False, False]] * 3 + [[True, False]]
    decide(keyframes, analyzer)
    assert [d.data["opted_out"].tolist() for d in keyframes.values()] == [[True, False]] * 4
    assert [d.data["blur"].tolist() for d in keyframes.values()] == [[True, False]] * 4
    assert {d.data["consent"][0] for d in keyframes.values()} == {"seat"}


def test_tracklets_skip_unconfirmed_rows_and_count_people() -> None:
    log = Tracklets()
    log.add(0.0, Detections.from_boxes(np.zeros((2, 4), np.float32), track_id=np.array([-1, 5])))
    assert set(log.by_id) == {5} and log.tracking_record() == TrackingRecord(confirmed_tracks=1, max_people_in_frame=2, id_ratio=0.5)
