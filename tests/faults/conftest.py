"""Helpers of the fault-injection suite: the real CLI in a subprocess, and tmpfs mounts (a disk that fills up, a
read-only place). The fixtures of ``tests/conftest.py`` (assets, ``clip``, ``registry_location``) apply here too."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Callable, Iterator

import pytest


def _engagement(*args: str | os.PathLike, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``python -m engagement.cli ARGS`` as a user would; stdout and stderr as text."""
    return subprocess.run([sys.executable, "-m", "engagement.cli", *map(str, args)], capture_output=True, text=True, timeout=timeout)


def _one_line_error(result: subprocess.CompletedProcess, exit_code: int = 2) -> str:
    """The single ``engagement: error:`` line a fault must end with (no traceback), checked and returned."""
    lines = [line for line in result.stderr.splitlines() if not _library_noise(line)]
    assert result.returncode == exit_code, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("engagement: error: "), result.stderr[-3000:]
    return lines[0]


def _library_noise(line: str) -> bool:
    """Lines MediaPipe and TensorFlow Lite print on their own (C++ logging), which this project cannot silence."""
    return line.startswith(("W0000", "I0000", "INFO: ", "WARNING: Logging before InitGoogle"))


@pytest.fixture
def engagement() -> Callable[..., subprocess.CompletedProcess]:
    """``engagement(*args)``: the real CLI in a subprocess."""
    return _engagement


@pytest.fixture
def one_line_error() -> Callable[..., str]:
    """``one_line_error(result, exit_code=2)``: the fault's single error line, after checking there is nothing else."""
    return _one_line_error


@contextlib.contextmanager
def _tmpfs(path: Path, options: str) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN): {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)


@pytest.fixture
def tmpfs(tmp_path: Path) -> Callable[..., contextlib.AbstractContextManager[Path]]:
    """``with tmpfs(size="2m", read_only=False, free=None) as folder``: a small file system, unmounted afterwards;
    ``free`` bytes are left free by a filler file. Skips when mounting is not permitted."""

    @contextlib.contextmanager
    def mount(size: str = "2m", read_only: bool = False, free: int | None = None) -> Iterator[Path]:
        with _tmpfs(tmp_path / "mnt", f"{'ro,' if read_only else ''}size={size},mode=0755") as folder:
            if free is not None:
                stat = os.statvfs(folder)
                (folder / "filler").write_bytes(b"\0" * (stat.f_bavail * stat.f_frsize - free))
            yield folder

    return mount
