"""A real ``engagement process`` killed or interrupted mid-run leaves nothing that looks finished."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engagement.sinks import RunDirectory

pytestmark = pytest.mark.slow


def interrupt_mid_run(clip: Path, out: Path, signum: int) -> tuple[subprocess.CompletedProcess, Path]:
    """Start ``engagement process``, send ``signum`` once it is writing frames; the finished process and its partial folder."""
    process = subprocess.Popen([sys.executable, "-m", "engagement.cli", "process", str(clip), "--out", str(out), "--quiet", "--no-report"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    partial = out.parent / f".{out.name}.partial-{process.pid}@{socket.gethostname()}"
    deadline = time.monotonic() + 240
    while not (partial / "tracks.parquet").exists():  # the tables open once the models are loaded
        assert process.poll() is None, process.communicate()[1][-2000:]
        assert time.monotonic() < deadline, "the run never started writing"
        time.sleep(0.05)
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=120)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr), partial


def test_sigkill_leaves_no_run_and_the_next_run_removes_its_partial(clip: Path, tmp_path: Path):
    out = tmp_path / "run"
    result, partial = interrupt_mid_run(clip, out, signal.SIGKILL)
    assert result.returncode == -signal.SIGKILL
    assert not out.exists() and partial.is_dir()
    with RunDirectory(tmp_path / "next"):
        assert not partial.exists()


def test_ctrl_c_exits_130_in_one_line_and_leaves_nothing(clip: Path, tmp_path: Path):
    out = tmp_path / "run"
    result, partial = interrupt_mid_run(clip, out, signal.SIGINT)
    assert result.returncode == 130, result.stderr[-2000:]
    assert "Traceback" not in result.stderr and result.stderr.rstrip().endswith("engagement: interrupted")
    assert os.listdir(tmp_path) == []
