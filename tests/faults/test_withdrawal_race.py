"""A withdrawal recorded while ``engagement process`` analyses a session of that student (the real CLI, a real
registry, the 3-second clip) is applied to that session before the command ends."""

from __future__ import annotations

import datetime as dt
import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pandas as pd
import pytest

from engagement.consent.registry import Registry

pytestmark = pytest.mark.slow
STUDENT = "P7Q"  # an ID no other text of a run contains
TRACKS = {track: STUDENT for track in range(1, 6)}  # the clip's one person, whatever ID the tracker gives them


def test_withdrawal_during_processing_reaches_the_session(clip: Path, tmp_path: Path, engagement: Callable) -> None:
    registry_path, out = tmp_path / "registry.sqlite", tmp_path / "run"
    with Registry.open(registry_path) as registry:
        registry.add_course("CS101", "Intro")
        registry.add_approval("CS101", "Instructor", "Approver", dt.date.today(), "all lectures")
        registry.set_consent(STUDENT, "CS101", "consented")
    mapping = ", ".join(f"{track}: {student}" for track, student in TRACKS.items())
    settings = [f"consent.registry={json.dumps(str(registry_path))}", "consent.course=CS101", f"consent.track_students={{{mapping}}}"]
    process = subprocess.Popen(
        [sys.executable, "-m", "engagement.cli", "process", str(clip), "--out", str(out), "--no-report",  # no --quiet: it hides warnings
         *[arg for setting in settings for arg in ("--set", setting)]],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    partial = out.parent / f".{out.name}.partial-{process.pid}@{socket.gethostname()}"
    deadline = time.monotonic() + 240
    while not (partial / "tracks.parquet").exists():  # the consent was read, frames are being analysed
        assert process.poll() is None, process.communicate()[1][-2000:]
        assert time.monotonic() < deadline, "the run never started writing"
        time.sleep(0.05)
    withdrawn = engagement("consent", "withdraw", STUDENT, "--registry", registry_path)
    assert withdrawn.returncode == 0 and "cleaned 0 session(s)" in withdrawn.stdout  # the session is not registered yet
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr[-2000:]
    assert "withdrew while this session was processed" in stderr and STUDENT not in stderr
    for table in ("tracks.parquet", "states.parquet"):
        assert not set(pd.read_parquet(out / table)["track_id"]) & set(TRACKS), table
    assert not (out / "annotated.mp4").exists() and STUDENT not in (out / "session.json").read_text()
    with Registry.open(registry_path) as registry:
        (scrubbed,) = [entry for entry in registry.audit_log() if entry["action"] == "outputs_scrubbed"]
    assert sum(scrubbed["details"]["rows_removed"].values()) > 0  # the run had analysed the student before the withdrawal
