"""A Ray cluster of several nodes on this machine, on 127.0.0.1 only: for the tests, the benchmark and an IT team
trying ``--engine ray`` before it touches a real cluster. Each node is a ``ray start --block`` process with its own
CPUs and memory; every process it starts is stopped by its PID (``ray stop`` would kill every Ray process on the
machine, other people's included).

Ray binds to the machine's network address when it has one: run inside a network namespace with only loopback up
(``unshare --net sh -c 'ip link set lo up && ...'``) to keep every packet on 127.0.0.1.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType


class LoopbackCluster:
    """``with LoopbackCluster() as cluster:`` a head node; ``cluster.add_node()`` adds another; ``cluster.env`` is
    what a driver needs (token, PATH, PYTHONPATH); ``cluster.address`` is ``127.0.0.1:PORT``. The token is
    ``RAY_AUTH_TOKEN`` when set (a driver in this process: Ray reads it once, at import), else a new one."""

    def __init__(self, cpus: int = 1, memory: int = 2 << 30, pythonpath: str | None = None) -> None:
        self.cpus, self.memory = cpus, memory
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"
        python_dir = str(Path(sys.executable).parent)  # workers run `python` from PATH: the same interpreter as here
        self.env = {**os.environ, "PATH": f"{python_dir}{os.pathsep}{os.environ.get('PATH', '')}", "RAY_USAGE_STATS_ENABLED": "0",
                    "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": os.environ.get("RAY_AUTH_TOKEN") or secrets.token_hex(32)}
        if pythonpath:
            self.env["PYTHONPATH"] = pythonpath
        self.temp = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # Ray's socket paths must stay short
        self.nodes: list[subprocess.Popen] = []

    def _start(self, *args: str) -> None:
        command = [str(Path(sys.executable).parent / "ray"), "start", "--block", "--num-cpus", str(self.cpus), "--memory", str(self.memory),
                   "--object-store-memory", str(100 << 20), "--node-ip-address", "127.0.0.1", "--disable-usage-stats", *args]
        self.nodes.append(subprocess.Popen(command, env=self.env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    def __enter__(self) -> "LoopbackCluster":
        try:
            self._start("--head", "--port", str(self.port), "--temp-dir", self.temp, "--include-dashboard=false")
            deadline = time.monotonic() + 60
            while not _listening(self.port):
                if time.monotonic() > deadline or self.nodes[0].poll() is not None:
                    raise RuntimeError(f"the Ray head on {self.address} did not start (logs: {self.temp})")
                time.sleep(0.1)
        except BaseException:
            self.stop()
            raise
        return self

    def add_node(self) -> None:
        """Start one more node joining the head (it registers within a few seconds)."""
        self._start("--address", self.address)

    def stop(self) -> None:
        """SIGTERM each ``ray start`` (it drains its node), then SIGKILL what is left of its session, by PID."""
        for node in reversed(self.nodes):
            node.send_signal(signal.SIGTERM)
            try:
                node.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
            for pid in _session_pids(node.pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            node.wait()
        self.nodes.clear()
        shutil.rmtree(self.temp, ignore_errors=True)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def _session_pids(sid: int) -> list[int]:
    """The processes of session ``sid`` (Linux /proc): a ``ray start`` and everything it started."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[3]) == sid:
            pids.append(int(stat.parent.name))
    return pids
