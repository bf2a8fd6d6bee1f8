"""The local engine: a bounded pool of worker processes on this machine (the default)."""

from __future__ import annotations

import multiprocessing
import os
import queue
import socket
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from engagement.engines import Job, ProgressCallback, ProgressLedger, TaskProgress, TaskSettings
from engagement.errors import UserError

if TYPE_CHECKING:
    from engagement.config import PipelineConfig

_progress_queue: Any = None  # set in each worker by _init_worker


def _init_worker(progress_queue: Any) -> None:
    global _progress_queue
    _progress_queue = progress_queue


def _send(video: str, key: str, done: int, total: int | None) -> None:
    _progress_queue.put((video, key, done, total))


def _task(job: Job, settings: TaskSettings) -> dict[str, Any]:
    from engagement.batch import run_task

    return run_task(job, settings, socket.gethostname(), TaskProgress(str(job.video), str(os.getpid()), _send))


class LocalEngine:
    """Up to ``workers`` videos at once, each in a spawned worker process; progress comes back on a queue."""

    def __init__(self, workers: int = 1) -> None:
        if workers < 1:
            raise UserError(f"--workers must be at least 1, got {workers}")
        self.workers = workers

    def preflight(self, parent: Path, config: "PipelineConfig") -> None:
        """This machine has the models and can write ``parent``."""
        from engagement.batch import check_nodes, node_facts

        check_nodes({socket.gethostname(): node_facts(parent, config)}, parent)

    def run(self, jobs: list[Job], settings: TaskSettings, progress: ProgressCallback) -> Iterator[dict[str, Any]]:
        """Each job in the pool; rows in the order the videos finish."""
        if not jobs:
            return
        # Spawned, not forked: a fork copies the parent's threads' locks (decoder, MediaPipe, OpenMP) mid-use.
        context = multiprocessing.get_context("spawn")
        updates = context.Queue()
        ledger = ProgressLedger()
        with ProcessPoolExecutor(max_workers=min(self.workers, len(jobs)), mp_context=context, initializer=_init_worker, initargs=(updates,)) as pool:
            running: set[Future] = {pool.submit(_task, job, settings) for job in jobs}
            while running:
                finished, running = wait(running, timeout=0.5, return_when=FIRST_COMPLETED)
                _drain(updates, ledger)
                progress(ledger.state)
                for future in finished:
                    row = future.result()
                    yield {**row, "attempts": ledger.attempts(row["video"])}
        updates.close()

    def close(self) -> None:
        """Nothing held between batches."""


def _drain(updates: Any, ledger: ProgressLedger) -> None:
    while True:
        try:
            ledger.record(*updates.get_nowait())
        except queue.Empty:
            return
