"""Many videos: one run directory each, run by an engine (``engagement.engines``: a local process pool or a Ray
cluster), one progress bar and a summary table.

Engine-neutral: run directories, the task body (``run_task``), the summary row and table, ``--resume``, the
preflight checks every machine answers (``node_facts``), the consent registry (read before and written after the
tasks, here on the driver) and exit codes. A video that fails is reported in the table and the others go on.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from engagement.config import PipelineConfig
from engagement.engines import Engine, Job, ProgressState, TaskProgress, TaskSettings
from engagement.errors import EXIT_INCOMPLETE_INPUT, UserError
from engagement.files import SESSION_JSON
from engagement.session import SessionRecord
from engagement.sinks import is_run, remove_partials


SUMMARY_COLUMNS = ["video", "node", "status", "attempts", "wall_s", "real_time_factor", "duration_s", "frames", "track_ids",
                   "people_excluded", "run_dir", "error"]


def session_row(session: SessionRecord, allow_partial: bool) -> dict[str, Any]:
    """The summary columns of a finished run."""
    seconds = session.timings_s["total"]
    complete = session.input.input_complete
    return {
        "status": "ok" if complete or allow_partial else "partial",
        "error": "" if complete else f"decoded {session.input.frames_decoded} of {session.input.frames_expected} frames",
        "frames": session.input.frames,
        "duration_s": round(session.input.duration_s, 2),
        "wall_s": round(seconds, 2),
        "real_time_factor": round(session.input.duration_s / seconds, 2),
        "track_ids": session.tracking.confirmed_tracks,
        "people_excluded": session.consent.people_excluded,
    }


def read_session(out: Path) -> SessionRecord:
    return SessionRecord.read(out / SESSION_JSON)


def run_task(job: Job, settings: TaskSettings, node: str, progress: TaskProgress) -> dict[str, Any]:
    """One video into its run directory, on whichever machine the engine chose; returns its summary row (the engine
    adds ``attempts``). A pipeline error (bad video, missing model) is a ``failed`` row, not an exception: it would
    fail again."""
    from engagement.pipeline import process_video

    row: dict[str, Any] = {"video": str(job.video), "run_dir": str(job.out), "node": node}
    if job.fresh and is_run(job.out):  # an earlier attempt finished but its result was lost with its node
        return {**row, **session_row(read_session(job.out), settings.allow_partial)}
    try:
        session = process_video(str(job.video), job.out, settings.config, overwrite=settings.overwrite, quiet=True,
                                report=settings.report, progress=progress, consent=settings.consent, register=False)
    except UserError as error:
        return {**row, "status": "failed", "error": str(error)}
    except Exception as error:  # one broken video must not stop the batch; the table says what happened
        return {**row, "status": "failed", "error": f"{type(error).__name__}: {error}"}
    finally:
        progress.flush()  # the last frames, held back by the throttle
    return {**row, **session_row(session, settings.allow_partial)}


def run_dirs(videos: list[Path], parent: Path) -> list[Path]:
    """One run directory per video, named after the file; clashing names get a numeric suffix."""
    seen: dict[str, int] = {}
    dirs = []
    for video in videos:
        count = seen.get(video.stem, 0)
        seen[video.stem] = count + 1
        dirs.append(parent / (video.stem if count == 0 else f"{video.stem}-{count + 1}"))
    return dirs


def model_names(config: PipelineConfig) -> list[str]:
    """The models a run of ``config`` loads."""
    names = [config.detector.model]
    if config.consent.blur != "none":
        names.append(config.anonymizer.face_model)
    if config.classifier.enabled:
        names.append(config.classifier.face_landmarker)
    if config.hands.enabled:
        names += [config.hands.palm_model, config.hands.landmark_model]
    return names


def output_problem(parent: Path) -> str | None:
    """Why this machine could not write runs into ``parent`` (created if missing), or None. Probes with an
    unnamed temporary file, so nothing is left behind."""
    existing = parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is not a folder"
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        return f"cannot write in {existing} ({error.strerror})"
    return None


def node_facts(parent: Path, config: PipelineConfig) -> dict[str, Any]:
    """What preflight compares across machines: package version, model hashes (None: missing), output folder."""
    from engagement import __version__
    from engagement.models import file_sha256, find_model

    models = {}
    for name in model_names(config):
        path = find_model(name, config.models_dir)
        models[name] = file_sha256(path) if path else None
    return {"version": __version__, "models": models, "output": output_problem(parent)}


def check_nodes(facts: dict[str, dict[str, Any]], parent: Path) -> None:
    """Refuse, in one line naming the machine and the difference, a batch that some machine could not run or would
    run differently: another package version than this one, a missing or different model, no way to write ``parent``."""
    from engagement import __version__

    reference: dict[str, tuple[str, str]] = {}  # model -> (node, sha256) of the first node that has it
    for node, fact in sorted(facts.items()):
        if fact["version"] != __version__:
            raise UserError(f"node {node} runs classroom-engagement {fact['version']}, this machine {__version__}: install one version everywhere")
        if fact["output"] is not None:
            raise UserError(f"node {node} cannot write the output folder {parent}: {fact['output']}")
        for name, sha in fact["models"].items():
            if sha is None:
                raise UserError(f"node {node} has no model {name!r}: copy it into ENGAGEMENT_MODELS (or models_dir) there")
            first, expected = reference.setdefault(name, (node, sha))
            if sha != expected:
                raise UserError(f"node {node} has a different model {name!r} than node {first} (sha256 {sha[:12]}… against {expected[:12]}…)")


class BatchProgress:
    """One bar over every video of the batch (frames done / frames total, as far as the started tasks know it)."""

    def __init__(self, videos: int, show: bool) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=0, unit="frame", desc=f"{videos} videos", disable=not show, dynamic_ncols=True)

    def __call__(self, state: ProgressState) -> None:
        self.bar.total = sum(total or 0 for _, _, total in state.values())
        self.bar.n = sum(done for _, done, _ in state.values())
        self.bar.set_postfix(started=len(state), retried=sum(attempt > 1 for attempt, _, _ in state.values()), refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()


PRIVACY_SECTIONS = ("consent", "anonymizer")  # a run made with other settings of these may show or keep other people


def resumed_row(job: Job, allow_partial: bool, config: PipelineConfig) -> dict[str, Any]:
    """The row of a run completed by an earlier batch (``--resume``); ``failed`` when that run was made with other
    consent or anonymizer settings than ``config``: skipping it would keep outputs this batch would not make."""
    from engagement.config import to_dict

    session = read_session(job.out)
    row = {"video": str(job.video), "run_dir": str(job.out), "node": "", "attempts": 0, **session_row(session, allow_partial)}
    changed = [name for name in PRIVACY_SECTIONS if to_dict(getattr(session.config, name)) != to_dict(getattr(config, name))]
    if changed:
        return {**row, "status": "failed",
                "error": f"{job.out} was made with other {' and '.join(changed)} settings; --overwrite processes it again"}
    return {**row, "status": "skipped" if row["status"] == "ok" else row["status"]}


def unregistered(jobs: list[Job], config: PipelineConfig) -> list[Job]:
    """Of the runs an earlier batch finished, those the consent registry does not hold (that batch stopped between
    a task and its registration): no withdrawal or purge could find them."""
    from engagement.consent.registry import Registry

    with Registry.open(config.consent.registry, create=False) as registry:
        known = {session.run_dir for session in registry.sessions(config.consent.course)}
    return [job for job in jobs if job.out.resolve() not in known]


def process_many(
    videos: list[Path], parent: Path, config: PipelineConfig, engine: Engine, overwrite: bool = False, report: bool = True,
    allow_partial: bool = False, resume: bool = False, show_progress: bool = False,
) -> int:
    """Process ``videos`` into ``parent/<name>/`` on ``engine`` (one progress bar with ``show_progress``); writes
    ``parent/batch_summary.csv`` and ``.parquet`` and prints the table; returns the exit code (``exit_code``).
    Nothing is written before every machine passed preflight."""
    from engagement.consent.stage import RegistrySnapshot
    from engagement.pipeline.record import recorded_config, register_session

    problem = output_problem(parent)
    if problem is not None:
        raise UserError(f"cannot write the output folder {parent}: {problem}")
    engine.preflight(parent, config)
    snapshot_taken = datetime.now(timezone.utc)  # consent changes after this are applied to the runs when registered
    consent = RegistrySnapshot.read(config.consent) if config.consent.course is not None else None
    jobs = [Job(video, out, fresh=not out.exists()) for video, out in zip(videos, run_dirs(videos, parent))]
    done = [job for job in jobs if resume and not overwrite and is_run(job.out)]
    if consent is not None and done:
        for job in unregistered(done, config):  # deleted and processed again, as a run the registry could not record
            shutil.rmtree(job.out)
            done.remove(job)
            jobs[jobs.index(job)] = replace(job, fresh=True)
    recorded = recorded_config(config, consent)  # as this batch's runs record it in session.json
    rows = [resumed_row(job, allow_partial, recorded) for job in done]
    pending = [job for job in jobs if job not in done]
    parent.mkdir(parents=True, exist_ok=True)
    settings = TaskSettings(config, overwrite, report, allow_partial, consent)
    progress = BatchProgress(len(pending), show_progress)
    try:
        for row in engine.run(pending, settings, progress):
            if consent is not None and row["status"] != "failed":
                try:
                    register_session(config, Path(row["run_dir"]), read_session(Path(row["run_dir"])), snapshot_taken)
                except UserError as error:  # that run is deleted; the runs after it still get registered
                    row = {**row, "status": "failed", "error": str(error)}
            rows.append(row)
            progress.bar.write(f"{row['status']:>6}  {row['video']}" + (f": {row['error']}" if row["error"] else ""), file=sys.stderr)
    finally:
        progress.close()
    for job in pending:  # every task has ended: what is left half-written is a killed attempt's
        remove_partials(job.out)
    table = pd.DataFrame(rows, columns=SUMMARY_COLUMNS).sort_values("video")
    for suffix, write in ((".csv", lambda path: table.to_csv(path, index=False)), (".parquet", lambda path: table.to_parquet(path, index=False))):
        partial = parent / f".batch_summary{suffix}.partial"
        write(partial)
        partial.replace(parent / f"batch_summary{suffix}")
    print(table.to_string(index=False))
    return exit_code(table.status)


def exit_code(statuses: pd.Series) -> int:
    """A batch's exit code, as a single video's: 1 if a video failed; else EXIT_INCOMPLETE_INPUT if one decoded to
    fewer frames than it declares (its row says ``partial`` unless ``--allow-partial``); else 0."""
    if (statuses == "failed").any():
        return 1
    return EXIT_INCOMPLETE_INPUT if (statuses == "partial").any() else 0
