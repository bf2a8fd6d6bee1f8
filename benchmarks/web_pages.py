"""Web app response times with many sessions (issue 15: every page under 300 ms with 100 sessions).

    python benchmarks/web_pages.py RUN_DIR [--sessions 100] [--repeat 20] [--json out.json]

RUN_DIR is a real run folder (``engagement process VIDEO --out RUN_DIR``). Its files are hard-linked (copied across
file systems) into ``--sessions`` run folders of one course under a temporary runs folder, each registered in a
temporary SQLite registry with a 30-student roster and a seat plan; then every page is requested ``--repeat`` times
through Flask's test client (no network: the app's own time) and the median, 95th percentile and slowest are printed.
Charts are separate image requests: timed when drawn for the first time and when drawn before (kept in memory).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from engagement.consent.registry import Registry
from engagement.consent.seatplan import Seat, SeatPlan
from engagement.web.app import create_app
from engagement.errors import run_reporting_errors

COURSE = "BENCH-101"
GOAL_MS = 300.0


def link_tree(source: Path, target: Path) -> None:
    target.mkdir(parents=True)
    for path in source.iterdir():
        if path.is_file():
            try:
                os.link(path, target / path.name)
            except OSError:
                shutil.copy2(path, target / path.name)


def build(run: Path, folder: Path, sessions: int) -> tuple[Path, Path]:
    """A runs folder with ``sessions`` links of ``run``, all of one course, and a registry that knows them."""
    runs, registry_path = folder / "runs", folder / "registry.sqlite"
    record = json.loads((run / "session.json").read_text())
    with Registry.open(registry_path) as registry:
        registry.add_course(COURSE, "Benchmark course", retention_days=365)
        registry.add_approval(COURSE, "Instructor", "Dean", dt.date.today(), "all lectures")
        for student in range(30):
            registry.set_consent(f"S{student:03d}", COURSE, "consented", seat=f"A{student + 1}")
        registry.save_seat_plan(SeatPlan("R1", 1280, 720, tuple(
            Seat(f"A{i + 1}", ((i * 40.0, 600.0), (i * 40.0 + 39, 600.0), (i * 40.0 + 39, 700.0))) for i in range(30))))
        for index in range(sessions):
            target = runs / f"week-{index:03d}"
            link_tree(run, target)
            record["config"]["consent"]["course"] = COURSE
            record["consent"]["course"] = COURSE
            record["created"] = (dt.datetime(2026, 9, 1, 9) + dt.timedelta(days=index)).isoformat() + "Z"
            (target / "session.json").unlink()
            (target / "session.json").write_text(json.dumps(record))
            registry.record_session(COURSE, dt.date(2026, 9, 1) + dt.timedelta(days=index), target, None, {1: "S000"})
    return runs, registry_path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a real run folder from engagement process")
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        runs, registry_path = build(args.run, Path(folder), args.sessions)
        app = create_app(runs, registry_path)
        client = app.test_client()
        pages = {
            "sessions list": "/",
            "session page": "/sessions/week-050",
            "course view": f"/courses/{COURSE}",
            "consent": "/consent/",
            "course roster": f"/consent/courses/{COURSE}",
            "student": f"/consent/courses/{COURSE}/students/S000",
            "withdraw (confirmation)": f"/consent/courses/{COURSE}/students/S000/withdraw",
            "audit log": "/consent/audit",
            "purge preview": "/consent/purge",
            "seat plans": "/seats/",
            "seat editor": "/seats/R1?source=week-050",
            "live": "/live/",
        }
        results = {}
        for name, url in pages.items():
            times = []
            for _ in range(args.repeat + 1):  # the first request (templates compiled, caches filled) is not counted
                start = time.perf_counter()
                response = client.get(url)
                times.append((time.perf_counter() - start) * 1000)
                if response.status_code != 200:
                    raise SystemExit(f"{url}: HTTP {response.status_code}")
            counted = sorted(times[1:])
            results[name] = {"url": url, "first_ms": round(times[0], 1), "median_ms": round(statistics.median(counted), 1),
                             "p95_ms": round(counted[int(0.95 * (len(counted) - 1))], 1), "max_ms": round(counted[-1], 1)}
        for kind, urls in (
            ("session charts, first draw", [f"/charts/week-{i:03d}/-/{name}.png" for i in range(args.repeat) for name in ("timeline", "states", "heatmap")]),
            ("session charts, drawn before", [f"/charts/week-000/-/{name}.png" for name in ("timeline", "states", "heatmap")] * args.repeat),
            ("course charts, first draw", [f"/courses/{COURSE}/charts/scores.png", f"/courses/{COURSE}/charts/states.png"]),
            ("course charts, drawn before", [f"/courses/{COURSE}/charts/scores.png"] * args.repeat),
        ):
            times = []
            for url in urls:
                start = time.perf_counter()
                response = client.get(url)
                times.append((time.perf_counter() - start) * 1000)
                if response.status_code != 200:
                    raise SystemExit(f"{url}: HTTP {response.status_code}")
            counted = sorted(times)
            results[kind] = {"url": urls[0], "first_ms": round(times[0], 1), "median_ms": round(statistics.median(counted), 1),
                             "p95_ms": round(counted[int(0.95 * (len(counted) - 1))], 1), "max_ms": round(counted[-1], 1)}
        app.extensions["registry"].close()
    print(f"{args.sessions} sessions, {args.repeat} requests a page after a first one; goal: under {GOAL_MS:.0f} ms")
    print(f"{'page':26s} {'first':>8s} {'median':>8s} {'p95':>8s} {'max':>8s}")
    for name, row in results.items():
        flag = "" if row["max_ms"] < GOAL_MS else "  over the goal"
        print(f"{name:26s} {row['first_ms']:8.1f} {row['median_ms']:8.1f} {row['p95_ms']:8.1f} {row['max_ms']:8.1f}{flag}")
    if args.json:
        args.json.write_text(json.dumps({"sessions": args.sessions, "repeat": args.repeat, "pages": results}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(run_reporting_errors(main, "web_pages"))
