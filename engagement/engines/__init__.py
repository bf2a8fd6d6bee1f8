"""Where a batch's videos run: ``local`` (a process pool on this machine, the default) or ``ray`` (one Ray task per
video on a cluster). Both take the same jobs and yield the same summary rows; only ``ray_engine`` imports ``ray``.

An engine runs ``engagement.batch.run_task`` once per video (more often after a crashed worker), feeds the batch's
progress bar with each video's ``(attempts, frames done, frames total)`` and yields one row per video, with its
``attempts``. A task never waits on the engine: Ray lends a blocked task's CPUs to the next task.
"""

from __future__ import annotations

import importlib.util
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Protocol

from engagement.errors import UserError

if TYPE_CHECKING:
    from engagement.config import PipelineConfig
    from engagement.consent.stage import RegistrySnapshot

# video -> (attempts so far, frames done, frames total or None until the task has opened the video)
ProgressState = dict[str, tuple[int, int, "int | None"]]
ProgressCallback = Callable[[ProgressState], None]


@dataclass(frozen=True)
class Job:
    """One video and the run directory it goes into; ``fresh``: that directory did not exist when the batch began,
    so a complete run found there by a rerun task is an earlier attempt's, whose result was lost with its node."""

    video: Path
    out: Path
    fresh: bool = True


@dataclass(frozen=True)
class TaskSettings:
    """What every task of a batch runs with; ``consent`` is the registry's decisions, read by the CLI."""

    config: "PipelineConfig"
    overwrite: bool = False
    report: bool = True
    allow_partial: bool = False
    consent: "RegistrySnapshot | None" = None


class Engine(Protocol):
    """Runs a batch's jobs somewhere; see the module docstring."""

    def preflight(self, parent: Path, config: "PipelineConfig") -> None:
        """Refuse (UserError, one line naming the machine) a batch some machine could not run; writes nothing."""

    def run(self, jobs: list[Job], settings: TaskSettings, progress: ProgressCallback) -> Iterator[dict[str, Any]]:
        """Run every job; yield each one's summary row as it ends."""

    def close(self) -> None:
        """Release what the engine holds (pool, cluster connection)."""


class TaskProgress:
    """The tqdm-like object a task hands ``process_video``: sends ``(video, attempt key, frames done, frames total)``
    through ``send`` when created and then at most every ``interval`` seconds, so a lost or late message costs
    nothing. ``key`` names this attempt (a worker process runs one attempt)."""

    def __init__(self, video: str, key: str, send: Callable[[str, str, int, "int | None"], None], interval: float = 0.5) -> None:
        self.video, self.key, self.send, self.interval = video, key, send, interval
        self.n, self.total, self._sent = 0, None, 0.0
        self.flush()  # counts the attempt even if it dies before its first frame

    def reset(self, total: int | None = None) -> None:
        self.n, self.total = 0, total
        self.flush()

    def update(self, n: int = 1) -> None:
        self.n += n
        if time.monotonic() - self._sent >= self.interval:
            self.flush()

    def flush(self) -> None:
        self._sent = time.monotonic()
        self.send(self.video, self.key, self.n, self.total)


class ProgressLedger:
    """Every video's ``(attempts, frames done, frames total)`` from its tasks' messages: a new attempt key counts
    an attempt and restarts the count; a late message of an earlier attempt is dropped."""

    def __init__(self) -> None:
        self.state: ProgressState = {}
        self._keys: dict[str, list[str]] = {}

    def record(self, video: str, key: str, done: int, total: int | None) -> None:
        keys = self._keys.setdefault(video, [])
        if key not in keys:
            keys.append(key)
        elif key != keys[-1]:
            return
        self.state[video] = (len(keys), done, total)

    def attempts(self, video: str) -> int:
        """Attempts seen for ``video``; at least 1 for a video whose result is in."""
        return max(1, len(self._keys.get(video, ())))


def make_engine(name: str, workers: int = 1, address: str | None = None, cpus: float = 1, gpus: float = 0,
                memory: int | None = None, retries: int = 2) -> Engine:
    """The engine called ``name``: ``local`` uses ``workers``; ``ray`` the rest."""
    if name == "local":
        from engagement.engines.local import LocalEngine

        return LocalEngine(workers)
    if importlib.util.find_spec("ray") is None:
        raise UserError('--engine ray needs Ray: pip install "classroom-engagement[cluster]"')
    from engagement.engines.ray_engine import RayEngine

    return RayEngine(address, cpus=cpus, gpus=gpus, memory=memory, retries=retries)
