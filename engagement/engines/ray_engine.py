"""The Ray engine: one Ray core task per video on a running cluster; the only module that imports ``ray``.

Each task runs in a fresh worker process (``max_calls=1``: no native-library or GPU state carries over to the next
video) with ``num_cpus``/``num_gpus``/``memory`` reserved; Ray reruns a task whose worker crashed or whose node was
lost, up to ``retries`` times, while a pipeline error comes back as a ``failed`` row and is not rerun. A small
actor collects every task's progress (and counts its attempts) for the driver's bar; tasks only send to it, never
wait on it (a task blocked in ``ray.get`` lends its CPUs to the next task, and two videos would share one CPU).
"""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from engagement.engines import Job, ProgressCallback, ProgressLedger, TaskProgress, TaskSettings
from engagement.errors import UserError

if TYPE_CHECKING:
    from engagement.config import PipelineConfig

PREFLIGHT_TIMEOUT_S = 120


@ray.remote(num_cpus=0)
class ProgressBoard:
    """The batch's ``ProgressLedger``, filled by the tasks (fire and forget) and read by the driver."""

    def __init__(self) -> None:
        self.ledger = ProgressLedger()

    def record(self, video: str, key: str, done: int, total: int | None) -> None:
        self.ledger.record(video, key, done, total)

    def snapshot(self) -> ProgressLedger:
        return self.ledger


def node_name() -> str:
    """This worker's node as the summary table shows it: address and the start of Ray's node ID (several nodes
    can share one address, as in the tests)."""
    context = ray.get_runtime_context()
    return f"{ray.util.get_node_ip_address()}/{context.get_node_id()[:8]}"


def _video_task(job: Job, settings: TaskSettings, board: Any) -> dict[str, Any]:
    from engagement.batch import run_task

    attempt = ray.get_runtime_context().get_worker_id()  # max_calls=1: one worker process per attempt
    return run_task(job, settings, node_name(), TaskProgress(str(job.video), attempt, lambda *update: board.record.remote(*update)))


def parse_address(address: str) -> tuple[str, int]:
    """``HOST:PORT`` of a Ray head; anything else is a one-line error."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"--address must be HOST:PORT of the Ray head (e.g. 10.0.0.5:6379), got {address!r}")
    return host, int(port)


class RayEngine:
    """Runs a batch on the Ray cluster at ``address`` (None: the one in ``RAY_ADDRESS``, else a local one)."""

    def __init__(self, address: str | None, cpus: float = 1, gpus: float = 0, memory: int | None = None, retries: int = 2) -> None:
        if cpus <= 0 or gpus < 0 or retries < 0 or (memory is not None and memory <= 0):
            raise UserError(f"--cpus-per-video must be positive and --gpus-per-video, --memory-per-video and --retries not negative (got {cpus}, {gpus}, {memory}, {retries})")
        if address is not None:
            host, port = parse_address(address)
            try:  # Ray would keep retrying an address that does not answer; say so at once
                socket.create_connection((host, port), timeout=5).close()
            except OSError as error:
                raise UserError(f"cannot reach the Ray head at {address}: {error.strerror or error}") from None
        try:
            ray.init(address=address, logging_level="ERROR", log_to_driver=False, configure_logging=False)
        except (ConnectionError, RuntimeError, ValueError) as error:
            raise UserError(f"cannot join the Ray cluster at {address}: {str(error).splitlines()[0]}") from None
        self.task = ray.remote(max_calls=1, num_cpus=cpus, num_gpus=gpus, memory=memory, max_retries=retries, retry_exceptions=False)(_video_task)

    def preflight(self, parent: Path, config: "PipelineConfig") -> None:
        """Ask every live node (one small task pinned to each) for its package version, model hashes and whether
        it can write ``parent``; refuse the batch on the first difference."""
        from engagement.batch import check_nodes, node_facts

        probe = ray.remote(node_facts)
        nodes = {f"{node['NodeManagerAddress']}/{node['NodeID'][:8]}": node["NodeID"] for node in ray.nodes() if node["Alive"]}
        refs = {name: probe.options(num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False)).remote(parent, config)
                for name, node in nodes.items()}
        deadline = time.monotonic() + PREFLIGHT_TIMEOUT_S
        answers = {}
        for name, ref in refs.items():
            try:
                answers[name] = ray.get(ref, timeout=max(0.0, deadline - time.monotonic()))
            except ray.exceptions.GetTimeoutError:
                raise UserError(f"node {name} did not answer the preflight check within {PREFLIGHT_TIMEOUT_S} s") from None
            except ray.exceptions.RayError as error:  # e.g. the package is missing there or cannot be imported
                cause = getattr(error, "cause", None) or error
                raise UserError(f"node {name} failed the preflight check: {type(cause).__name__}: {str(cause).splitlines()[0]}") from None
        check_nodes(answers, parent)

    def run(self, jobs: list[Job], settings: TaskSettings, progress: ProgressCallback) -> Iterator[dict[str, Any]]:
        """One task per job; rows in the order the videos finish. A task that exhausted its retries is a failed row."""
        if not jobs:
            return
        board = ProgressBoard.remote()
        shared = ray.put(settings)
        running = {self.task.remote(job, shared, board): job for job in jobs}
        while running:
            finished, _ = ray.wait(list(running), num_returns=1, timeout=0.5)
            ledger = ray.get(board.snapshot.remote())
            progress(ledger.state)
            for ref in finished:
                job = running.pop(ref)
                try:
                    row = ray.get(ref)
                except ray.exceptions.RayError as error:  # worker crashed or node lost more often than --retries
                    row = {"video": str(job.video), "run_dir": str(job.out), "node": "", "status": "failed",
                           "error": f"{type(error).__name__}: {str(error).splitlines()[0]}"}
                yield {**row, "attempts": ledger.attempts(str(job.video))}
        ray.kill(board)

    def close(self) -> None:
        """Leave the cluster (it keeps running)."""
        ray.shutdown()
