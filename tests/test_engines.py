"""Batch engines: the local pool, --resume and preflight without Ray, and a real two-node Ray cluster on loopback.

The cluster test re-runs itself inside a new network namespace with only loopback up (``unshare --net``, root, as
in CI), so Ray binds to 127.0.0.1 and no traffic leaves the machine. Every process it starts is stopped by PID.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

import pandas as pd
import pytest

from engagement.batch import check_nodes
from engagement.cli import main
from engagement.engines.loopback import LoopbackCluster
from engagement.errors import UserError

REPO = Path(__file__).resolve().parent.parent
IN_NETNS = "ENGAGEMENT_TEST_NETNS"
FAST = ["--no-report", "--set", "classifier.enabled=false", "--analysis-fps", "2"]


@pytest.fixture(scope="module")
def clips(webcam_video: Path, tmp_path_factory: pytest.TempPathFactory, ffmpeg: Callable[..., None]) -> Path:
    """A folder of two 3 s cuts of the webcam video and a file that is not a video."""
    folder = tmp_path_factory.mktemp("videos")
    for name, start in (("a", 0), ("b", 3)):
        ffmpeg("-ss", start, "-i", webcam_video, "-t", 3, "-an", "-c:v", "libx264", "-preset", "ultrafast", "-movflags", "+faststart", folder / f"{name}.mp4")
    (folder / "broken.mp4").write_text("not a video")
    return folder


def test_local_engine_and_resume(clips: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "runs"
    assert main(["process", str(clips / "a.mp4"), str(clips / "broken.mp4"), "--out", str(out), "--workers", "2", "--cpus-per-video", "3", *FAST]) == 1
    table = pd.read_parquet(out / "batch_summary.parquet").set_index("video")
    assert table.status.to_dict() == {str(clips / "a.mp4"): "ok", str(clips / "broken.mp4"): "failed"}
    assert table.attempts.tolist() == [1, 1] and table.node.tolist() == [socket.gethostname()] * 2
    assert pd.read_csv(out / "batch_summary.csv").shape == (2, len(table.columns) + 1)
    assert json.loads((out / "a" / "session.json").read_text())["config"]["detector"]["threads"] == 2  # 3 CPUs: 2 for the detector
    session = (out / "a" / "session.json").stat().st_mtime_ns
    capsys.readouterr()

    assert main(["process", str(clips / "a.mp4"), str(clips / "broken.mp4"), "--out", str(out), "--resume", *FAST]) == 1
    table = pd.read_csv(out / "batch_summary.csv").set_index("video")
    assert table.loc[str(clips / "a.mp4"), "status"] == "skipped" and table.loc[str(clips / "a.mp4"), "attempts"] == 0
    assert (out / "a" / "session.json").stat().st_mtime_ns == session  # not redone
    assert "cannot be opened as a video" in capsys.readouterr().err


def test_resume_redoes_unregistered_runs_and_refuses_runs_with_other_privacy_settings(clips: Path, tmp_path: Path) -> None:
    """A run an earlier batch finished but never registered (here: a registry the run was never recorded in) is
    deleted and processed again; a run made with other consent settings is not skipped as if it were this batch's."""
    import datetime as dt

    from engagement.consent.registry import Registry

    def registry_with_course(path: Path) -> Path:
        with Registry.open(path) as registry:
            registry.add_course("CS101", "Intro")
            registry.add_approval("CS101", "I-1", "A-1", dt.date.today(), "all sessions")
        return path

    out = tmp_path / "runs"
    course = ["--set", "consent.course=CS101", "--set", "consent.track_students={1: S1}"]
    first, second = registry_with_course(tmp_path / "first.sqlite"), registry_with_course(tmp_path / "second.sqlite")
    videos = [str(clips / "a.mp4"), str(clips / "b.mp4")]
    assert main(["process", *videos, "--out", str(out), *FAST, *course, "--set", f"consent.registry={first}"]) == 0
    made = (out / "a" / "session.json").stat().st_mtime_ns
    assert main(["process", *videos, "--out", str(out), "--resume", *FAST, *course, "--set", f"consent.registry={second}"]) == 0
    assert (out / "a" / "session.json").stat().st_mtime_ns != made  # processed again
    with Registry.open(second) as registry:
        assert sorted(session.run_dir for session in registry.sessions("CS101")) == [(out / "a").resolve(), (out / "b").resolve()]
    assert main(["process", *videos, "--out", str(out), "--resume", *FAST, *course, "--set", f"consent.registry={second}"]) == 0
    assert pd.read_csv(out / "batch_summary.csv").status.tolist() == ["skipped", "skipped"]  # registered, same settings
    assert main(["process", *videos, "--out", str(out), "--resume", *FAST, "--set", "consent.blur=all"]) == 1
    row = pd.read_csv(out / "batch_summary.csv").iloc[0]
    assert row.status == "failed" and row.error == f"{out / 'a'} was made with other consent settings; --overwrite processes it again"


def test_the_registry_is_read_and_written_by_the_driver_only(clips: Path, tmp_path: Path) -> None:
    """A task gets the consent decisions as data and leaves the registry alone (opening it would create its
    folder); the batch reads the registry before the tasks and records each finished session after them."""
    import datetime as dt

    from engagement.batch import run_task
    from engagement.config import load_pipeline
    from engagement.consent.registry import Registry
    from engagement.consent.stage import RegistrySnapshot
    from engagement.engines import Job, TaskProgress, TaskSettings

    registry_path = tmp_path / "registry.sqlite"
    with Registry.open(registry_path) as registry:
        registry.add_course("CS101", "Intro")
        registry.add_approval("CS101", "I-1", "A-1", dt.date.today(), "all sessions")
        registry.set_consent("S1", "CS101", "consented")
    course = ["consent.course=CS101", "consent.track_students={1: S1}", "classifier.enabled=false", "analysis_fps=2"]
    config = load_pipeline("lecture", [f"consent.registry={registry_path}", *course])
    snapshot = RegistrySnapshot.read(config.consent)
    elsewhere = load_pipeline("lecture", [f"consent.registry={tmp_path / 'not-here' / 'registry.sqlite'}", *course])
    row = run_task(Job(clips / "a.mp4", tmp_path / "task"), TaskSettings(elsewhere, report=False, consent=snapshot), "node", TaskProgress("a", "test", lambda *update: None))
    assert row["status"] == "ok", row
    assert not (tmp_path / "not-here").exists()
    assert json.loads((tmp_path / "task" / "session.json").read_text())["consent"]["status_counts"] == {"consented": 1}

    out = tmp_path / "runs"
    args = [item for pair in course for item in ("--set", pair)]
    assert main(["process", str(clips / "a.mp4"), str(clips / "broken.mp4"), "--out", str(out), "--no-report", "--set", f"consent.registry={registry_path}", *args]) == 1
    with Registry.open(registry_path) as registry:
        assert [session.run_dir for session in registry.sessions("CS101")] == [(out / "a").resolve()]  # the failed video is not recorded


def test_a_run_the_registry_cannot_record_is_deleted_and_the_next_still_registered(
        clips: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import datetime as dt

    from engagement.consent.registry import Registry

    registry_path = tmp_path / "registry.sqlite"
    with Registry.open(registry_path) as registry:
        registry.add_course("CS101", "Intro")
        registry.add_approval("CS101", "I-1", "A-1", dt.date.today(), "all sessions")
    record_session = Registry.record_session

    def failing_for_a(self, course, date, run_dir, *rest):
        if Path(run_dir).name == "a":
            raise UserError("registry lost its connection")
        return record_session(self, course, date, run_dir, *rest)

    monkeypatch.setattr(Registry, "record_session", failing_for_a)
    out = tmp_path / "runs"
    course = ["--set", f"consent.registry={registry_path}", "--set", "consent.course=CS101", "--set", "consent.track_students={1: S1}"]
    assert main(["process", str(clips / "a.mp4"), str(clips / "b.mp4"), "--out", str(out), *FAST, *course]) == 1
    table = pd.read_parquet(out / "batch_summary.parquet").set_index("video")
    assert table.status.to_dict() == {str(clips / "a.mp4"): "failed", str(clips / "b.mp4"): "ok"}
    assert table.loc[str(clips / "a.mp4"), "error"] == f"registry lost its connection; run {out / 'a'} deleted: the registry could not record it"
    assert not (out / "a").exists() and (out / "b" / "session.json").exists()
    with Registry.open(registry_path) as registry:
        assert [session.run_dir for session in registry.sessions("CS101")] == [(out / "b").resolve()]


def test_an_output_folder_that_cannot_be_written_is_one_line_and_writes_nothing(clips: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["process", str(clips), "--out", str(blocker / "runs"), *FAST]) == 2
    assert capsys.readouterr().err.strip() == f"engagement: error: cannot write the output folder {blocker / 'runs'}: {blocker} is not a folder"
    assert sorted(tmp_path.iterdir()) == [blocker]


def test_engine_ray_without_ray_is_an_install_hint(clips: Path, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else find_spec(name, *a))
    assert main(["process", str(clips), "--out", str(tmp_path / "runs"), "--engine", "ray"]) == 2
    assert capsys.readouterr().err.strip() == 'engagement: error: --engine ray needs Ray: pip install "classroom-engagement[cluster]"'
    assert not (tmp_path / "runs").exists()


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="ray is not installed (pip install -e '.[dev]')")
def test_an_unreachable_ray_address_is_one_line(clips: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with socket.socket() as probe:  # a port nobody listens on once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert main(["process", str(clips), "--out", str(tmp_path / "runs"), "--engine", "ray", "--address", f"127.0.0.1:{port}"]) == 2
    assert capsys.readouterr().err.strip() == f"engagement: error: cannot reach the Ray head at 127.0.0.1:{port}: Connection refused"
    assert main(["process", str(clips), "--out", str(tmp_path / "runs"), "--engine", "ray", "--address", "head"]) == 2
    assert "--address must be HOST:PORT" in capsys.readouterr().err and not (tmp_path / "runs").exists()


def _facts(version: str = "0.1.0", output: str | None = None, **models: str | None) -> dict:
    return {"version": version, "output": output, "models": {"yolo": "a" * 64, **models}}


@pytest.mark.parametrize(("facts", "message"), [
    ({"n1": _facts(), "n2": _facts(version="0.0.9")}, "node n2 runs classroom-engagement 0.0.9, this machine 0.1.0"),
    ({"n1": _facts(), "n2": _facts(yolo=None)}, "node n2 has no model 'yolo'"),
    ({"n1": _facts(), "n2": _facts(yolo="b" * 64)}, "node n2 has a different model 'yolo' than node n1 (sha256 bbbbbbbbbbbb… against aaaaaaaaaaaa…)"),
    ({"n1": _facts(output="cannot write in /runs (Read-only file system)"), "n2": _facts()}, "node n1 cannot write the output folder /runs: cannot write in /runs (Read-only file system)"),
])
def test_preflight_names_the_node_and_the_difference(facts: dict, message: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("engagement.__version__", "0.1.0")
    with pytest.raises(UserError, match="^" + message.replace("(", r"\(").replace(")", r"\)").replace("…", ".")):
        check_nodes(facts, Path("/runs"))
    check_nodes({"n1": _facts(), "n2": _facts()}, Path("/runs"))


def test_detector_uses_cuda_when_the_task_got_a_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """With a GPU share Ray makes the GPU visible and ``auto`` picks it; without one it stays on the CPU."""
    import torch

    from engagement.detector import select_device
    from engagement.pipeline_cli import detector_threads

    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert select_device("auto") == "cuda:0"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert select_device("auto") == "cpu"
    assert [detector_threads(cpus) for cpus in (1, 2, 4, 0.5)] == [1, 1, 3, 1]


def test_progress_counts_attempts_and_drops_late_messages_of_a_killed_one() -> None:
    from engagement.engines import ProgressLedger, TaskProgress

    ledger = ProgressLedger()
    first = TaskProgress("a.mp4", "worker-1", ledger.record, interval=0)
    first.reset(60)
    first.update(10)
    second = TaskProgress("a.mp4", "worker-2", ledger.record, interval=0)  # the rerun after worker-1 was killed
    first.update(5)  # a late message of the killed attempt
    second.reset(60)
    assert ledger.state == {"a.mp4": (2, 0, 60)} and ledger.attempts("a.mp4") == 2 and ledger.attempts("b.mp4") == 1


def test_a_rerun_task_keeps_a_run_its_lost_attempt_finished(tmp_path: Path) -> None:
    """A node finished the run, then died before its result came back: the rerun reads the run instead of redoing
    it, but only for a run folder that did not exist when the batch began."""
    from engagement.batch import run_task
    from engagement.config import PipelineConfig
    from engagement.engines import Job, TaskProgress, TaskSettings

    out = tmp_path / "lecture"
    out.mkdir()
    session = {"engagement_version": "0.1.0", "timings_s": {"total": 20.0}, "tracking": {"confirmed_tracks": 3}, "consent": {"people_excluded": 1},
               "input": {"input_complete": True, "frames": 300, "duration_s": 30.0, "frames_decoded": 300, "frames_expected": 300}}
    (out / "session.json").write_text(json.dumps(session))
    progress = TaskProgress("lecture.mp4", "rerun", lambda *update: None)
    row = run_task(Job(tmp_path / "lecture.mp4", out, fresh=True), TaskSettings(PipelineConfig()), "node", progress)
    assert (row["status"], row["wall_s"], row["real_time_factor"]) == ("ok", 20.0, 1.5)
    row = run_task(Job(tmp_path / "lecture.mp4", out, fresh=False), TaskSettings(PipelineConfig()), "node", progress)
    assert row["status"] == "failed"  # an old run is never taken for this batch's: the video is processed (here: missing)


def test_memory_per_video_sizes() -> None:
    import argparse

    from engagement.pipeline_cli import parse_size

    assert [parse_size(text) for text in ("3GiB", "500MB", "1024", "1.5 gib")] == [3 << 30, 500 * 10**6, 1024, 3 << 29]
    with pytest.raises(argparse.ArgumentTypeError, match="not a size: '3 lots'"):
        parse_size("3 lots")


def test_consent_stage_takes_the_consent_facts_as_data(tmp_path: Path) -> None:
    """A task gets the course's consent facts from the CLI and never opens the registry (opening it would create
    its folder)."""
    import numpy as np

    from engagement.config import ConsentConfig
    from engagement.consent.stage import ConsentStage, RegistrySnapshot
    from engagement.detections import Detections

    config = ConsentConfig(registry=str(tmp_path / "not-here" / "registry.sqlite"), course="CS101", track_students={1: "S1", 2: "S2"})
    stage = ConsentStage(config, snapshot=RegistrySnapshot(consented=frozenset({"S1"})))
    people = stage(Detections.from_boxes(np.array([[0, 0, 10, 10], [20, 0, 30, 10]], float), track_id=np.array([1, 2])))
    assert people.data["blur"].tolist() == [False, True] and stage.excluded_track_ids == {2}
    assert not (tmp_path / "not-here").exists()


# --- a real Ray cluster ----------------------------------------------------------------------------------------------

@pytest.fixture
def cluster() -> Iterator[LoopbackCluster]:
    """A Ray head and a second node, one CPU and 2 GiB each, token auth, on 127.0.0.1; stopped by PID."""
    with LoopbackCluster(cpus=1, memory=2 << 30, pythonpath=str(REPO)) as cluster:
        cluster.add_node()
        yield cluster


def _wait_for(condition: Callable[[], object], seconds: float, message: str) -> object:
    deadline = time.monotonic() + seconds
    while not (result := condition()):
        assert time.monotonic() < deadline, message
        time.sleep(0.1)
    return result


def _netns_ready() -> str | None:
    """Why the cluster test cannot run here, or None."""
    if importlib.util.find_spec("ray") is None:
        return "ray is not installed (pip install -e '.[dev]')"
    if os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("ip") is None:
        return "needs root, unshare and ip for a loopback-only network namespace"
    return None


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_ray_cluster_retries_a_killed_worker_and_fails_a_bad_video_once(request: pytest.FixtureRequest) -> None:
    """Re-run this test's body (``_cluster_body``) inside a new network namespace with only loopback up."""
    if (reason := _netns_ready()) is not None:
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    body = f"{__file__}::test_cluster_body"
    command = f"ip link set lo up && exec {sys.executable} -m pytest -q -p no:cacheprovider {body}"
    result = subprocess.run(["unshare", "--net", "sh", "-c", command], env={**os.environ, IN_NETNS: "1"},
                            cwd=REPO, capture_output=True, text=True, timeout=170)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert "1 passed" in result.stdout


@pytest.mark.skipif(not os.environ.get(IN_NETNS), reason="runs inside the network namespace of the test above")
def test_cluster_body(cluster: LoopbackCluster, clips: Path, tmp_path: Path) -> None:
    address, env = cluster.address, cluster.env
    # --quiet: Ray's native core warns on stderr that it found no external network, true in this namespace
    cli = [sys.executable, "-m", "engagement.cli", "--quiet", "process", "--engine", "ray", "--address", address]

    unknown = subprocess.run([*cli, str(clips), "--out", str(tmp_path / "none"), "--set", "detector.model=no-such-model"],
                             env=env, capture_output=True, text=True, timeout=120)
    assert unknown.returncode == 2 and not (tmp_path / "none").exists(), unknown.stderr
    assert unknown.stderr.strip().startswith("engagement: error: node 127.0.0.1/") and "has no model 'no-such-model'" in unknown.stderr

    out = tmp_path / "runs"
    driver = subprocess.Popen([*cli, str(clips), "--out", str(out), "--cpus-per-video", "1", "--memory-per-video", "1GiB",
                               "--retries", "2", *FAST], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # The partial run folder names the worker process writing it: kill that worker once it writes frames.
        partial = _wait_for(lambda: next((p for p in out.glob(".a.partial-*") if (p / "tracks.parquet").exists()), None), 120,
                            "video a never started writing")
        os.kill(int(partial.name.split("partial-")[1].split("@")[0]), signal.SIGKILL)
        stdout, stderr = driver.communicate(timeout=150)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == 1, stderr[-3000:]
    table = pd.read_csv(out / "batch_summary.csv").set_index("video")
    assert table.status.to_dict() == {str(clips / name): status for name, status in (("a.mp4", "ok"), ("b.mp4", "ok"), ("broken.mp4", "failed"))}
    assert table.attempts.to_dict() == {str(clips / "a.mp4"): 2, str(clips / "b.mp4"): 1, str(clips / "broken.mp4"): 1}
    assert table.node.nunique() == 2, table.node  # both nodes ran videos
    session = json.loads((out / "a" / "session.json").read_text())
    assert session["input"]["input_complete"] and session["config"]["detector"]["threads"] == 1  # the one CPU Ray gave the task
    assert sorted(p.name for p in out.iterdir()) == ["a", "b", "batch_summary.csv", "batch_summary.parquet"]  # the killed attempt's partial is gone
