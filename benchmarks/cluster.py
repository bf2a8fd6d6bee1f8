"""Ray engine on one machine: cluster start time, per-task overhead, and one batch on 1 node, 2 nodes and the local pool.

    unshare --net sh -c 'ip link set lo up && python benchmarks/cluster.py FOLDER [--set key=value ...] [--json out.json]'

Nodes are ``ray start`` processes on 127.0.0.1 (``engagement.engines.loopback``), one CPU and 2 GiB each; every
batch is the real CLI (``engagement process FOLDER --engine ray|local``, ``--no-report``) into a fresh folder. Run it
in a loopback-only network namespace (root) so that Ray binds to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# This script is a driver too: Ray reads the token once, when it is imported; LoopbackCluster uses the same one.
os.environ.setdefault("RAY_AUTH_MODE", "token")
os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))

import ray  # noqa: E402

from engagement.engines.loopback import LoopbackCluster
from engagement.errors import run_reporting_errors


def wait_for_nodes(count: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while sum(node["Alive"] for node in ray.nodes()) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"fewer than {count} Ray nodes after {timeout} s")
        time.sleep(0.05)


@ray.remote(max_calls=1, num_cpus=1)
def empty() -> None:
    """A task that does nothing, in a fresh worker process like a video's task."""


@ray.remote(max_calls=1, num_cpus=1)
def import_pipeline() -> None:
    """A task that only imports what a video's task imports before its first frame."""
    import engagement.batch  # noqa: F401
    import engagement.pipeline  # noqa: F401


def per_task_seconds(task: Any, repeat: int = 4) -> float:
    """Mean wall time of ``repeat`` calls one after another (each on a new worker process)."""
    started = time.perf_counter()
    for _ in range(repeat):
        ray.get(task.remote())
    return (time.perf_counter() - started) / repeat


def batch_seconds(folder: Path, options: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall time of the CLI batch, and the sum of its videos' own wall times (``wall_s`` in the summary table)."""
    import pandas as pd

    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "engagement.cli", "--quiet", "process", str(folder), "--out", f"{out}/runs", "--no-report", *options],
                       env=env, check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - started
        return wall, float(pd.read_csv(f"{out}/runs/batch_summary.csv").wall_s.sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="folder of videos: the batch")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="pipeline overrides for every batch")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    overrides = [item for pair in args.set for item in ("--set", pair)]
    figures: dict[str, float] = {}
    started = time.perf_counter()
    with LoopbackCluster(cpus=1, memory=2 << 30, pythonpath=str(Path(__file__).resolve().parent.parent)) as cluster:
        ray.init(address=cluster.address, logging_level="ERROR", log_to_driver=False)
        wait_for_nodes(1)
        figures["head_start_s"] = time.perf_counter() - started
        figures["empty_task_s"] = per_task_seconds(empty)
        figures["import_task_s"] = per_task_seconds(import_pipeline)
        ray.shutdown()
        ray_options = ["--engine", "ray", "--address", cluster.address, "--cpus-per-video", "1", *overrides]
        figures["batch_1_node_s"], videos_s = batch_seconds(args.folder, ray_options, cluster.env)
        # One node runs one video at a time: what the batch took beyond its videos' own runs is the engine's share.
        figures["overhead_per_video_1_node_s"] = (figures["batch_1_node_s"] - videos_s) / len(list(args.folder.iterdir()))
        added = time.perf_counter()
        cluster.add_node()
        ray.init(address=cluster.address, logging_level="ERROR", log_to_driver=False)
        wait_for_nodes(2)
        figures["node_join_s"] = time.perf_counter() - added
        ray.shutdown()
        figures["batch_2_nodes_s"] = batch_seconds(args.folder, ray_options, cluster.env)[0]
    figures["local_pool_2_workers_s"] = batch_seconds(args.folder, ["--workers", "2", *overrides], cluster.env)[0]
    figures["ratio_1_to_2_nodes"] = figures["batch_1_node_s"] / figures["batch_2_nodes_s"]
    for name, value in figures.items():
        print(f"{name:>24}  {value:7.2f}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    raise SystemExit(run_reporting_errors(main, "cluster"))
