"""Pipeline stages fed synthetic arrays: schedule, interpolation, tracker, annotators, sinks."""

import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from engagement.annotate import STATE_COLORS, annotate
from engagement.config import TrackerConfig
from engagement.detections import Detections
from engagement.errors import UserError
from engagement.pipeline.analyse import StageTimer, analysis_frames, detected_frames
from engagement.pipeline.render import Keyframe, RenderWorker, interpolate
from engagement.sinks import TRACK_SCHEMA, RunDirectory, TableWriter, VideoWriter, remove_partials, remove_stale_partials, track_rows


def take(schedule, n):
    return [next(schedule) for _ in range(n)]


def test_analysis_schedule_spreads_frames_evenly():
    flags = take(analysis_frames(30.0, 5.0), 60)
    assert sum(flags) == 10 and flags[0] and flags[6] and flags[12]
    assert all(take(analysis_frames(10.0, 25.0), 10))  # never more than every frame
    assert sum(take(analysis_frames(29.92, 5.0), 149)) == 25


def tracked(ids, x, **data):
    boxes = np.array([[xi, 10, xi + 20, 60] for xi in x], np.float32)
    keypoints = np.zeros((len(ids), 17, 3), np.float32)
    keypoints[:, :, 0] = np.array(x)[:, None]
    keypoints[:, :, 2] = 0.9
    return Detections.from_boxes(boxes, keypoints=keypoints, track_id=np.array(ids), **data)


def test_interpolation_moves_shared_tracks_and_holds_the_rest():
    before = Keyframe(0, tracked([1, 2, -1], [0, 100, 300], opted_out=np.array([False, True, False])))
    after = Keyframe(6, tracked([1, 3], [60, 200], opted_out=np.array([False, False])))
    middle = interpolate(before, after, 3)
    by_id = {int(t): i for i, t in enumerate(middle.track_id) if t >= 0}
    assert middle.xyxy[by_id[1], 0] == pytest.approx(30.0)
    assert middle.keypoints[by_id[1], 0, 0] == pytest.approx(30.0)
    assert middle.xyxy[by_id[2], 0] == 100 and middle.xyxy[by_id[3], 0] == 200  # held, one side only
    assert (middle.track_id == -1).sum() == 1  # untracked people stay (they may need blurring)
    assert middle.data["opted_out"][by_id[2]]  # flags travel with the row
    assert not middle.data["detected"].any()


def test_interpolation_hides_a_track_hidden_on_either_side():
    """Shown at one analysis frame and hidden at the next (it walked into an opted-out seat): hidden on every frame
    between, on the shown side of the midpoint too; two shown sides keep the nearer side's data."""
    def keyframe(index, x, opted_out, blur, state):
        return Keyframe(index, tracked([1, 2], x, opted_out=np.array(opted_out), blur=np.array(blur),
                                       consent=["analyzed" if not o else "seat" for o in opted_out], state=state))

    before = keyframe(0, [0, 100], [False, False], [False, False], ["attentive", "bored"])
    after = keyframe(6, [60, 160], [True, False], [True, False], ["", "confused"])
    for index in (1, 3, 5):
        middle = interpolate(before, after, index)
        by_id = {int(t): i for i, t in enumerate(middle.track_id)}
        assert middle.data["opted_out"][by_id[1]] and middle.data["blur"][by_id[1]]
        assert middle.data["consent"][by_id[1]] == "seat" and middle.data["state"][by_id[1]] == ""
        assert middle.xyxy[by_id[1], 0] == pytest.approx(10.0 * index)  # still moving with the track
        assert not middle.data["blur"][by_id[2]]
        assert middle.data["state"][by_id[2]] == ("bored" if index < 3 else "confused")
    blurred_only = Keyframe(6, tracked([1], [60], opted_out=np.array([False]), blur=np.array([True])))
    assert interpolate(Keyframe(0, tracked([1], [0], opted_out=np.array([True]), blur=np.array([True]))),
                       blurred_only, 5).data["opted_out"].tolist() == [True]  # opted out outranks blurred


def test_interpolation_between_empty_frames_is_an_ordinary_frame():
    """Nobody in view on two analysis frames in a row: the frames between keep the consent columns."""
    from engagement.consent.stage import analysable

    nobody = tracked([1], [0], opted_out=np.array([False]))[np.zeros(1, bool)]
    middle = interpolate(Keyframe(0, nobody), Keyframe(6, nobody), 3)
    assert len(middle) == 0 and len(analysable(middle)) == 0


def test_interpolation_at_the_ends():
    only = Keyframe(0, tracked([4], [10], opted_out=np.array([False])))
    held = interpolate(only, None, 2)
    assert held.xyxy.tolist() == only.detections.xyxy.tolist() and not held.data["detected"].any()
    assert len(interpolate(None, None, 0)) == 0


def test_tracker_keeps_ids_for_moving_people():
    from engagement.tracker import Tracker

    tracker = Tracker(TrackerConfig(n_init=2, embedder="none"), analysis_fps=5.0)
    frame = np.zeros((240, 320, 3), np.uint8)
    seen = []
    for step in range(8):
        detections = Detections.from_boxes(np.array([[10 + 4 * step, 20, 50 + 4 * step, 120], [200 - 3 * step, 30, 240 - 3 * step, 140]]), confidence=np.array([0.9, 0.8]))
        result = tracker.update(frame, detections)
        seen.append(result.track_id.tolist())
    assert seen[0] == [-1, -1]  # tentative until n_init frames
    assert len({tuple(ids) for ids in seen[2:]}) == 1 and -1 not in seen[-1]
    assert result.data["confirmed"].all()


def test_detected_frames_batches_analysis_frames_in_order():
    calls = []

    def detect(frames):
        calls.append([int(f[0, 0]) for f in frames])
        return [Detections.from_boxes(np.array([[0, 0, f[0, 0], 1]], np.float32)) for f in frames]

    frames = [(i, np.full((2, 2), i)) for i in range(20)]
    schedule = iter([i % 3 == 0 for i in range(20)])  # analysis frames 0, 3, ..., 18
    out = list(detected_frames(frames, schedule, detect, batch=3))
    assert [index for index, _, _ in out] == list(range(20))
    assert calls == [[0, 3, 6], [9, 12, 15], [18]]
    assert [(i, d.xyxy[0, 2]) for i, _, d in out if d is not None] == [(i, i) for i in range(0, 20, 3)]
    assert all(d is None for i, _, d in out if i % 3)


def test_detected_frames_raise_the_detectors_error_and_stop_when_closed():
    def detect(frames):
        if int(frames[0][0, 0]) == 3:
            raise RuntimeError("out of memory")
        return [Detections.empty() for _ in frames]

    frames = [(i, np.full((2, 2), i)) for i in range(9)]
    found = detected_frames(frames, iter([i % 3 == 0 for i in range(9)]), detect, batch=1)
    with pytest.raises(RuntimeError, match="out of memory"):
        list(found)
    found = detected_frames(frames, iter([i % 3 == 0 for i in range(9)]), lambda f: [Detections.empty()] * len(f), batch=1)
    next(found)
    found.close()
    assert not any(thread.name.startswith("detect") for thread in threading.enumerate())


def test_detected_frames_detects_the_next_batch_while_the_caller_works():
    second_batch = threading.Event()

    def detect(frames):
        if int(frames[0][0, 0]) == 3:
            second_batch.set()
        return [Detections.empty() for _ in frames]

    frames = [(i, np.full((2, 2), i)) for i in range(6)]
    found = detected_frames(frames, iter([i % 3 == 0 for i in range(6)]), detect, batch=1)
    assert next(found)[0] == 0  # the caller now holds frame 0 and asks for nothing more
    assert second_batch.wait(timeout=10)  # frame 3 is detected meanwhile
    assert [index for index, _, _ in found] == [1, 2, 3, 4, 5]


def test_render_worker_pairs_each_frame_with_its_own_faces():
    class Renderer:
        def faces(self, image, index):
            return np.array([[index, image[0, 0]]])

        def __call__(self, image, detections, faces):
            assert faces[0, 0] == faces[0, 1] == image[0, 0]  # found on this very frame
            return image

    class Writer:
        written = []

        def frame(self, index, time_s, image, detections):
            self.written.append((index, int(image[0, 0])))

    worker = RenderWorker(Renderer(), Writer(), StageTimer(), buffer=2)
    frames = [(i, np.full((2, 2), i, np.int64)) for i in range(12)]
    read = list(worker.prefetching(frames[:8]))  # faces start as frames are read ...
    for index, image in read + frames[8:]:  # ... and the last frames without prefetching
        worker.submit(index, index / 10, image, Detections.empty())
    worker.close()
    assert Writer.written == [(i, i) for i in range(12)]


@pytest.mark.slow
def test_appearance_embedder_shapes_and_norm():
    from engagement.tracker import AppearanceEmbedder

    embedder = AppearanceEmbedder()
    frame = np.random.default_rng(0).integers(0, 255, (200, 300, 3), np.uint8)
    features = embedder(frame, np.array([[10, 10, 60, 150], [280, 190, 400, 260]], np.float32))  # second box mostly outside
    assert features.shape == (2, 1280)
    np.testing.assert_allclose(np.linalg.norm(features, axis=1), 1.0, rtol=1e-4)
    assert embedder(frame, np.zeros((0, 4))).shape == (0, 1280)


@pytest.mark.slow
def test_openvino_embedder_matches_torch_and_is_cached(tmp_path, monkeypatch, classroom_frame):
    from engagement.tracker import AppearanceEmbedder

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    boxes = np.array([[100, 100, 220, 400], [600, 200, 700, 420], [0, 0, 40, 90]], np.float32)
    fast = AppearanceEmbedder(backend="openvino")
    reference = AppearanceEmbedder(backend="torch")
    assert (fast.backend, reference.backend) == ("openvino", "torch")
    cached = list((tmp_path / "classroom-engagement" / "embedders").iterdir())
    assert len(cached) == 1 and (cached[0] / "model.xml").exists() and (cached[0] / "model.bin").exists()
    np.testing.assert_allclose(fast(classroom_frame, boxes), reference(classroom_frame, boxes), atol=1e-4)
    again = AppearanceEmbedder(backend="openvino")  # loads the cached model
    np.testing.assert_allclose(again(classroom_frame, boxes), fast(classroom_frame, boxes), atol=1e-6)
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(not_a_folder))  # a cache that cannot be written still embeds
    uncached = AppearanceEmbedder(backend="openvino")
    np.testing.assert_allclose(uncached(classroom_frame, boxes), fast(classroom_frame, boxes), atol=1e-6)


def test_annotators_draw_tracked_people_only():
    frame = np.zeros((200, 300, 3), np.uint8)
    detections = tracked([7, -1, 9], [10, 120, 220], opted_out=np.array([False, False, True]))
    detections.data["state"] = ["attentive", "", "bored"]
    detections.data["score"] = np.array([80.0, np.nan, 20.0])
    out = annotate(frame.copy(), detections)
    assert out[10:60, 10:31].any()  # track 7 drawn
    assert not out[:, 120:141][60:].any() and not out[60:, 215:245].any()  # untracked and opted-out: nothing
    assert tuple(out[35, 10]) == STATE_COLORS["attentive"]  # boxes take their state's colour


def test_run_directory_is_atomic(tmp_path: Path):
    final = tmp_path / "run"
    with pytest.raises(RuntimeError):
        with RunDirectory(final) as work:
            (work / "half.txt").write_text("x")
            raise RuntimeError("crash")
    assert not final.exists() and list(tmp_path.iterdir()) == []
    with RunDirectory(final) as work:
        (work / "session.json").write_text('{"engagement_version": "0"}')
    assert (final / "session.json").exists()
    with pytest.raises(UserError, match="already exists"):
        RunDirectory(final)
    with RunDirectory(final, overwrite=True) as work:
        (work / "new.txt").write_text("x")
    assert sorted(p.name for p in final.iterdir()) == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["run"]


def _run_folder(folder: Path, session: str = '{"engagement_version": "0"}') -> Path:
    folder.mkdir()
    (folder / "session.json").write_text(session)
    (folder / "tracks.parquet").write_bytes(b"old")
    return folder


def test_overwrite_replaces_a_run_or_an_empty_folder(tmp_path: Path):
    for final in (_run_folder(tmp_path / "run"), tmp_path / "empty"):
        final.mkdir(exist_ok=True)
        with RunDirectory(final, overwrite=True) as work:
            (work / "new.txt").write_text("x")
        assert sorted(p.name for p in final.iterdir()) == ["new.txt"]


@pytest.mark.parametrize(
    "make",
    [
        lambda f: (f.mkdir(), (f / "thesis.txt").write_text("years of work"), (f / "chapters").mkdir()),
        lambda f: (f.mkdir(), (f / "chapters").mkdir()),
        lambda f: _run_folder(f, "not json {"),
        lambda f: _run_folder(f, '{"title": "someone else\'s session.json"}'),
        lambda f: _run_folder(f, '["engagement_version"]'),
        lambda f: (f.mkdir(), (f / "session.json").mkdir()),
    ],
    ids=["user-files", "subfolder", "bad-json", "foreign-session", "json-list", "session-folder"],
)
def test_overwrite_refuses_a_folder_that_is_not_a_run(tmp_path: Path, make, webcam_video: Path, capsys: pytest.CaptureFixture[str]):
    from engagement.cli import main

    folder = tmp_path / "userfolder"
    make(folder)
    before = sorted((p.relative_to(folder), p.is_dir() or p.read_bytes()) for p in folder.rglob("*"))
    with pytest.raises(UserError, match=r"userfolder is not a run"):
        RunDirectory(folder, overwrite=True)
    # The CLI refuses in one line before any model is loaded.
    assert main(["process", str(webcam_video), "--out", str(folder), "--overwrite"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and f"{folder} is not a run" in error
    assert sorted((p.relative_to(folder), p.is_dir() or p.read_bytes()) for p in folder.rglob("*")) == before
    assert [p.name for p in tmp_path.iterdir()] == ["userfolder"]


def _dead_pid() -> int:
    child = subprocess.Popen(["sleep", "0"])
    child.wait()
    return child.pid


def test_partials_of_dead_processes_are_removed_by_the_next_run(tmp_path: Path):
    dead, alive = _dead_pid(), os.getpid()
    stale = [tmp_path / f".old.partial-{dead}", tmp_path / f".clip.mp4.partial-{dead}.mp4"]
    here = socket.gethostname()
    stale.append(tmp_path / f".killed.partial-{dead}@{here}")
    stale.append(tmp_path / f".run.old.partial-{dead}@{here}")  # the replaced run of an overwrite killed half-way
    kept = [tmp_path / f".busy.partial-{alive}", tmp_path / f".live.mp4.partial-{alive}.mp4",
            tmp_path / f"notes.partial-{dead}", tmp_path / f".other.old-{dead}",
            tmp_path / f".elsewhere.partial-{dead}@another-{here}"]  # another machine's PID: not judged here
    for path in stale + kept:
        if path.suffix == ".mp4":
            path.write_bytes(b"no moov")
        else:
            path.mkdir()
            (path / "tracks.parquet").write_bytes(b"PAR1")
    with RunDirectory(tmp_path / "run") as work:
        assert work.exists()
        assert not any(path.exists() for path in stale)
        assert all(path.exists() for path in kept)
    assert remove_stale_partials(tmp_path / "missing") == []


def test_a_finished_batch_removes_every_partial_of_its_runs(tmp_path: Path):
    mine = [tmp_path / f".run.partial-{os.getpid()}@elsewhere", tmp_path / ".run.partial-1"]
    others = [tmp_path / ".run2.partial-1", tmp_path / "run"]
    for path in mine + others:
        path.mkdir()
    assert sorted(remove_partials(tmp_path / "run")) == sorted(mine)
    assert all(path.exists() for path in others)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="zombies are recognised through /proc")
def test_partial_of_an_exited_but_unreaped_process_is_removed(tmp_path: Path):
    child = subprocess.Popen(["true"])  # not waited for: a zombie once it exits, and os.kill(pid, 0) still succeeds
    try:
        while Path(f"/proc/{child.pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z":
            time.sleep(0.01)
        partial = tmp_path / f".run.partial-{child.pid}"
        partial.mkdir()
        assert remove_stale_partials(tmp_path) == [partial] and not partial.exists()
    finally:
        child.wait()


def test_video_writer_writes_h264_with_every_frame(tmp_path: Path):
    import av

    path = tmp_path / "out.mp4"
    writer = VideoWriter(path, 12.5, 161, 120)  # odd width is trimmed to even for yuv420p
    for i in range(20):
        writer.write(np.full((120, 161, 3), i * 10, np.uint8))
    writer.close()
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.format.name == "yuv420p"
        # The default ultrafast preset alone writes Constrained Baseline; X264_PARAMS turns CABAC and B-frames on
        # (a default preset with 8x8 transforms, superfast and slower, would write High).
        assert stream.codec_context.profile == "Main"
        assert sum(1 for _ in container.decode(stream)) == 20
        assert float(stream.average_rate) == pytest.approx(12.5)


def test_video_writer_keeps_colours(tmp_path: Path):
    import av

    path = tmp_path / "out.mp4"
    image = np.zeros((64, 96, 3), np.uint8)
    image[:, :32] = (255, 0, 0)  # BGR: blue, green, red stripes
    image[:, 32:64] = (0, 255, 0)
    image[:, 64:] = (0, 0, 255)
    writer = VideoWriter(path, 10, 96, 64)
    for _ in range(3):
        writer.write(image)
    writer.close()
    with av.open(str(path)) as container:
        decoded = next(container.decode(video=0)).to_ndarray(format="bgr24")
    for column, expected in ((16, (255, 0, 0)), (48, (0, 255, 0)), (80, (0, 0, 255))):
        assert np.abs(decoded[32, column].astype(int) - expected).max() <= 12


def test_table_writer_streams_row_groups(tmp_path: Path):
    path = tmp_path / "tracks.parquet"
    writer = TableWriter(path, TRACK_SCHEMA, rows_per_group=5)
    for frame in range(4):
        writer.append(track_rows(frame, frame / 10, tracked([1, 2], [0, 50])))
    writer.append(track_rows(4, 0.4, Detections.empty()))
    writer.close()
    table = pd.read_parquet(path)
    assert len(table) == 8 and table.track_id.tolist()[:2] == [1, 2]
    assert {"nose_x", "right_ankle_score", "detected"} <= set(table.columns)


def test_table_writer_bounds_small_appends(tmp_path: Path):
    import pyarrow.parquet as pq

    path = tmp_path / "tracks.parquet"
    writer = TableWriter(path, TRACK_SCHEMA, rows_per_group=1000, appends_per_group=3)
    for frame in range(7):  # one person: one row per frame never reaches rows_per_group
        writer.append(track_rows(frame, frame / 10, tracked([1], [0])))
    writer.close()
    metadata = pq.ParquetFile(path).metadata
    assert [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)] == [3, 3, 1]


class _FakeFeatures:
    """Frame features = the track id in every column, faces on every row; fresh on all but every third call."""

    def __init__(self) -> None:
        from engagement.features import FRAME_FEATURES

        self.width = len(FRAME_FEATURES)
        self.calls = 0

    def frame_features(self, frame: np.ndarray, detections: Detections, time_s: float) -> tuple[np.ndarray, np.ndarray]:
        from engagement.features import FRAME_FEATURES

        self.calls += 1
        rows = np.repeat(detections.track_id[:, None].astype(np.float32), self.width, axis=1) + self.calls
        rows[:, FRAME_FEATURES.index("has_face")] = 1.0
        return rows, np.full(len(detections), self.calls % 3 != 0)


def test_session_baseline_compares_each_track_with_its_whole_session():
    from engagement.config import PipelineConfig
    from engagement.features import FRAME_FEATURES, session_relative
    from engagement.classifier.stage import StateStage

    config = PipelineConfig()
    config.classifier.baseline = "session"
    stage = StateStage(config)
    stage.features = _FakeFeatures()
    seen: list[np.ndarray] = []
    classify = stage.classifier.predict_proba
    stage.classifier.predict_proba = lambda rows, warming=None: seen.append(rows) or classify(rows, warming)
    frames = []
    for step in range(15):
        people = Detections.from_boxes(np.array([[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10]], np.float32))
        people.track_id[:] = [1, 2, -1]  # the third is not a confirmed track: never analysed
        people.data["opted_out"] = np.array([False, step % 2 == 0, False])  # track 2 opts out on even frames
        frames.append(stage(np.zeros((60, 60, 3), np.uint8), people, step * 0.1, StageTimer()))
    assert "state" not in frames[0].data  # nothing is classified before the whole session is known
    stage.settle(StageTimer())
    (rows,) = seen
    ids = np.concatenate([f.track_id[(f.track_id >= 0) & ~f.data["opted_out"]] for f in frames])
    for track_id in (1, 2):
        mine = rows[ids == track_id]
        fresh = np.array([(i + 1) % 3 != 0 for i, f in enumerate(frames) for t in f.track_id
                          if t == track_id and not f.data["opted_out"][list(f.track_id).index(t)]])
        expected = session_relative(mine[:, :len(FRAME_FEATURES)], fresh)
        np.testing.assert_allclose(mine[:, len(FRAME_FEATURES):], expected, rtol=1e-5)
    assert len(rows) == 15 + 7
    for f in frames:
        assert f.data["state"][2] == "" and np.isnan(f.data["score"][2])
        assert (f.data["state"][1] == "") == bool(f.data["opted_out"][1])
        assert f.data["state"][0] != ""


class _FakeRunningFeatures(_FakeFeatures):
    """Frame features of ``_FakeFeatures`` with a real running baseline; the second person never shows a face."""

    def __init__(self) -> None:
        from engagement.features import TrackCalibration

        super().__init__()
        self.calibration = TrackCalibration()

    def __call__(self, frame: np.ndarray, detections: Detections, time_s: float) -> np.ndarray:
        from engagement.features import FRAME_FEATURES

        rows, fresh = self.frame_features(frame, detections, time_s)
        rows[detections.track_id == 2, FRAME_FEATURES.index("has_face")] = 0.0
        return np.concatenate([rows, self.calibration(detections.track_id, rows, learn=fresh)], axis=1)

    def forget(self, track_id: int) -> None:
        self.calibration.forget(track_id)


def _warming_masks(baseline: str, warmup_frames: int) -> np.ndarray:
    """The warm-up masks a StateStage gives its classifier over 9 frames of tracks 1 and 2, as (frames, 2)."""
    from engagement.classifier.stage import StateStage
    from engagement.config import PipelineConfig

    config = PipelineConfig()
    config.classifier.baseline = baseline
    config.classifier.warmup_frames = warmup_frames
    stage = StateStage(config)
    stage.features = _FakeRunningFeatures() if baseline == "running" else _FakeFeatures()
    masks: list[np.ndarray] = []
    classify = stage.classifier.predict_proba
    stage.classifier.predict_proba = lambda rows, warming=None: masks.append(warming) or classify(rows, warming)
    for step in range(9):
        people = Detections.from_boxes(np.array([[0, 0, 10, 10], [20, 0, 30, 10]], np.float32))
        people.track_id[:] = [1, 2]
        people.data["opted_out"] = np.zeros(2, bool)
        stage(np.zeros((60, 60, 3), np.uint8), people, step * 0.1, StageTimer())
    stage.settle(StageTimer())
    return np.concatenate(masks).reshape(9, 2)


def test_young_baselines_go_to_the_warm_up_model():
    # running: track 1's baseline learns on 2 frames of 3 (fresh faces), so it holds 1, 2, 2, 3, 4, ... face frames
    running = _warming_masks("running", 4)
    assert running[:, 0].tolist() == [True] * 4 + [False] * 5
    assert not running[:, 1].any()  # no face, no baseline to be young: the main model
    assert not _warming_masks("running", 0).any()  # 0: never
    # session: every row of a track against its 6 fresh face frames (the fake gives both tracks a face)
    assert not _warming_masks("session", 6).any() and _warming_masks("session", 7).all()


def test_single_person_tracking_keeps_the_largest_person_as_track_1():
    from engagement.tracker import single_person

    people = Detections.from_boxes(np.array([[0, 0, 10, 10], [0, 0, 100, 80], [50, 50, 60, 90]], np.float32))
    tracked = single_person(people)
    assert tracked.track_id.tolist() == [-1, 1, -1] and tracked.data["confirmed"].tolist() == [False, True, False]
    assert len(single_person(Detections.empty())) == 0
    # someone leaning in at more than a quarter of the largest box's area: nobody is confirmed (blurred, not analysed)
    leaning_in = Detections.from_boxes(np.array([[0, 0, 100, 80], [100, 0, 160, 70]], np.float32))
    doubtful = single_person(leaning_in)
    assert doubtful.track_id.tolist() == [1, -1] and not doubtful.data["confirmed"].any()


def test_face_fallback_makes_a_person_of_the_largest_face_only_when_nobody_is_found():
    from engagement.detector import FaceFallback
    from engagement.features import head_boxes

    faces = np.array([[300, 100, 340, 150], [100, 120, 220, 240]], np.float32)
    fallback = FaceFallback(lambda frame: faces)
    frame = np.zeros((360, 640, 3), np.uint8)
    (person,) = [fallback(frame, Detections.empty())]
    assert len(person) == 1 and not person.keypoints[..., 2].any()  # pose unknown, not invented
    head = head_boxes(person.keypoints, person.xyxy)[0]
    assert box_iou_of(head, [100, 120, 220, 240]) > 0.7  # the features find the face where they look for a head
    someone = Detections.from_boxes(np.array([[0, 0, 50, 50]], np.float32))
    assert fallback(frame, someone) is someone
    assert len(FaceFallback(lambda frame: np.empty((0, 4), np.float32))(frame, Detections.empty())) == 0


def box_iou_of(a, b) -> float:
    from engagement.anonymize import box_iou

    return float(box_iou(np.array([a]), np.array([b]))[0, 0])


def test_frame_source_skips_the_conversion_of_unwanted_frames(tmp_path: Path):
    from engagement.sources import FrameSource

    video = tmp_path / "ramp.mp4"
    writer = VideoWriter(video, 10, 64, 48)
    for i in range(9):
        writer.write(np.full((48, 64, 3), i * 25, np.uint8))
    writer.close()
    source = FrameSource(str(video))
    got = list(source.frames(wanted=iter([True, False, False] * 3)))
    assert [index for index, _ in got] == list(range(9))
    assert [image is not None for _, image in got] == [True, False, False] * 3
    assert abs(int(got[3][1][0, 0, 0]) - 75) <= 3  # the wanted frames are the right ones
    assert [round(source.time_of(i), 2) for i in range(9)] == [round(i / 10, 2) for i in range(9)]


def test_run_directory_is_readable_by_its_owner_only(tmp_path: Path):
    import stat

    with RunDirectory(tmp_path / "run") as folder:
        (folder / "tracks.csv").write_text("track_id\n1\n")
    assert stat.S_IMODE((tmp_path / "run").stat().st_mode) == 0o700


def test_state_of_tracks_gone_longer_than_the_tracker_keeps_them_is_freed():
    from engagement.classifier.stage import StateStage
    from engagement.config import PipelineConfig

    config = PipelineConfig()
    stage = StateStage(config)
    step_s = 1 / config.analysis_fps
    lifetime = 5  # analysis frames each synthetic student is seen for
    frame = np.zeros((120, 400, 3), np.uint8)
    held = []
    for step in range(600):  # 120 s, a new pair of short-lived tracks every second
        first = step // lifetime * 2
        # people 20 px wide: their faces are below min_face_px, so no landmarker is loaded
        people = Detections.from_boxes(np.array([[10, 10, 30, 70], [200, 10, 220, 70]], np.float32))
        people.track_id[:] = [first, first + 1]
        people.data["opted_out"] = np.zeros(2, bool)
        stage(frame, people, step * step_s, StageTimer())
        features = stage.features
        held.append(len(set(features._history) | set(features._faces) | set(features.calibration._stats)
                        | set(stage.smoother._state)))
    assert held[-1] > 0 and first + 2 == 240
    # the tracks analysed within the last max_age_s (and the pair in view), not the 240 seen
    most = 2 * (config.tracker.max_age_s / (lifetime * step_s) + 2)
    assert max(held) <= most, (max(held), most)


def test_the_configuration_is_fitted_to_the_source_before_any_work() -> None:
    """An analysis rate above the video's made the tracker's memory (counted in analysis frames) many times
    ``max_age_s`` and DeepSORT take minutes a frame; a seat zone drawn off the frame hid nobody."""
    from engagement.config import SeatZone, load_pipeline
    from engagement.pipeline.run import for_source
    from engagement.sources import VideoInfo

    info = VideoInfo("lecture.mp4", fps=10.0, width=640, height=360, frames=100, is_live=False)
    assert for_source(load_pipeline("lecture", ["analysis_fps=1000000000.0"]), info).analysis_fps == 10.0
    assert for_source(load_pipeline("lecture", ["analysis_fps=2"]), info).analysis_fps == 2.0
    config = load_pipeline("lecture")
    for inside in ([[0, 0], [640, 0], [640, 360], [0, 360]],  # the whole frame
                   [[-100, 100], [740, 100], [740, 200], [-100, 200]],  # a band across it, no corner inside
                   [[600, 300], [900, 300], [900, 900]]):  # over one edge
        config.consent.opted_out_seats = [SeatZone("door", inside)]
        for_source(config, info)
    config.consent.opted_out_seats = [SeatZone("door", [[5000, 5000], [6000, 5000], [6000, 6000]])]
    with pytest.raises(UserError, match="opted-out seat zone 'door' lies outside the 640x360 frame"):
        for_source(config, info)
