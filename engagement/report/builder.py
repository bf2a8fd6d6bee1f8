"""Build the per-session report (``report.html`` + ``report.pdf``) and the course comparison from run directories.

One Jinja2 template in ``reports/`` renders both formats: the browser shows it as a page, WeasyPrint lays the
same HTML out on A4 with the print CSS. Charts and stills are embedded as base64 data URIs so that the HTML is
a single file that opens offline.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import math
from pathlib import Path
from typing import Any

import pandas as pd
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from engagement.consent.stage import BLURRED_BY_POLICY
from engagement.errors import UserError
from engagement.files import SUMMARY_JSON, write_atomic
from engagement.states import STATES, UNCERTAIN
from engagement.report import charts
from engagement.report.charts import TimeAxis
from engagement.report.card import CardSummary, load_card
from engagement.report.run import Run, load_run, readable_name
from engagement.report.stills import read_still
from engagement.resources import resource_dir
from engagement.scoring import PROBABILITY_COLUMNS, engagement_score
from engagement.session import ModelRecord, SessionRecord

FORMATS = ("html", "pdf")
MOMENTS_LISTED = 3
MOMENT_MIN_PRESENT = 0.5  # share of the most students present at once
MAX_BARS = 60  # state-share bars; longer sessions merge periods
SHARE_COLUMNS = [*STATES, UNCERTAIN]  # the state shares and the share of uncertain student-time add up to 1
SHORT_SESSION_S = 300.0  # shorter sessions are charted in periods of a few seconds
SHORT_PERIODS_S = (1.0, 2.0, 5.0, 10.0, 15.0, 30.0)
MAX_SHORT_PERIODS = 30


def build_report(run_dir: Path, formats: tuple[str, ...] = FORMATS, out_dir: Path | None = None) -> dict[str, Path]:
    """Write ``report.html`` and/or ``report.pdf`` for one run into ``out_dir`` (default: the run directory).

    Returns the written paths by format. Raises UserError when ``run_dir`` is not a run directory, or when it is a
    session of a course in the consent registry and ``out_dir`` is elsewhere: a withdrawal or the retention purge
    deletes the reports in the run folder only, as the consent form promises.
    """
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise UserError(f"unknown report format {unknown[0]!r}; choose from {', '.join(FORMATS)}")
    run = load_run(run_dir)
    target = Path(out_dir or run.path)
    if run.course and target.resolve() != run.path.resolve():
        raise UserError(f"{run_dir} is a session of course {run.course} in the consent registry: its "
                        "report is written into the run folder only, where a withdrawal or the retention purge finds it")
    html = _render("session.html.j2", session_context(run))
    return _write_outputs(html, target, "report", formats, base_url=run.path)


def build_comparison(run_dirs: list[Path], out_dir: Path) -> dict[str, Path]:
    """Write a course view (``compare.html`` + ``compare.pdf``; one page up to about 15 sessions) of several runs into
    ``out_dir``. A run given twice, or runs of different pipelines (their scores do not compare), are refused."""
    if not run_dirs:
        raise UserError("--compare needs at least one run directory")
    resolved = [Path(path).resolve() for path in run_dirs]
    twice = sorted({str(path) for path in run_dirs if resolved.count(Path(path).resolve()) > 1})
    if twice:
        raise UserError(f"--compare got the same run more than once: {', '.join(twice)}")
    runs = sorted((load_run(path) for path in run_dirs), key=lambda run: run.session.created)
    pipelines = sorted({run.session.config.name for run in runs})
    if len(pipelines) > 1:
        raise UserError(f"--compare needs runs of one pipeline, got {', '.join(pipelines)}: their scores come from "
                        "different camera views and labels and do not compare")
    html = _render("compare.html.j2", comparison_context(runs))
    return _write_outputs(html, Path(out_dir), "compare", FORMATS, base_url=Path(out_dir))


# --- context: plain data for the templates ------------------------------------------------------------------


def session_context(run: Run) -> dict[str, Any]:
    """Everything the session template shows, computed from the run's files."""
    session = run.session
    time_axis = _time_axis(run)
    scores, timeline = _period_scores(run, time_axis)
    status, status_message = _status(run, timeline)
    card = load_card(session)
    context: dict[str, Any] = {
        "title": run.title,
        "generated": _now(),
        "facts": _facts(run),
        "session_score": _round(run.summary.get("session_score")),
        "students_analysed": len(run.students),
        "people_excluded": run.people_excluded,
        "duration": _duration(run.duration_s),
        "status": status,
        "status_message": status_message,
        "framing_notice": framing_notice(run),
        "input_notice": input_notice(run),
        "approach": _approach(run, card),
        "approach_card": card,
        "formula": _formula(run.summary.get("formula") or {}),
        "ethics": _ethics(run),
        "provenance": _provenance(session),
        "charts": {},
        "state_table": [],
        "moments": [],
        "moment_rows": [],
    }
    if status == "ok":
        context.update(_results(run, scores, timeline, time_axis))
    return context


def comparison_context(runs: list[Run], draw_charts: bool = True) -> dict[str, Any]:
    """The course view: one row per session, a score line and state-share bars across sessions (drawn as data URIs
    when ``draw_charts``; ``comparison_charts`` draws them on their own)."""
    rows = [_comparison_row(run) for run in runs]
    courses = sorted({run.course for run in runs} - {None, ""})
    scored = [row["score"] for row in rows if row["score"] is not None]
    drawn = {name: _data_uri(png, "image/png") for name, png in _comparison_pngs(rows).items()} if draw_charts else {}
    return {
        "title": ", ".join(courses) if courses else f"Sessions of the {runs[0].session.config.name} pipeline" if runs else "Sessions",
        "generated": _now(),
        "rows": rows,
        "charts": drawn,
        "chart_names": ["scores"] + (["states"] if _comparison_shares(rows).to_numpy().sum() > 0 else []),
        "mean_score": _round(sum(scored) / len(scored)) if scored else None,
    }


def comparison_charts(runs: list[Run]) -> dict[str, bytes]:
    """The course view's charts as PNG bytes by name: ``scores`` and, when any state was seen, ``states``."""
    return _comparison_pngs([_comparison_row(run) for run in runs])


def _comparison_row(run: Run) -> dict[str, Any]:
    share = _summary_shares(run.summary)
    dominant = max(share, key=share.get) if share else None
    return {
        "label": _session_label(run),
        "date": run.session.created[:10] or "unknown",
        "duration": _duration(run.duration_s),
        "students": len(run.students),
        "excluded": run.people_excluded,
        "score": _round(run.summary.get("session_score")),
        "dominant": readable_name(dominant) if dominant else "no data",
        "share": share,
        "reported": _reported(run),
    }


def _comparison_shares(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """State shares by session, in the columns of the states that any of the sessions could report (``_reported``)."""
    columns = [column for column in SHARE_COLUMNS if any(column in row["reported"] for row in rows)]
    return pd.DataFrame([row["share"] for row in rows], index=[row["label"] for row in rows], columns=columns).fillna(0.0)


def _comparison_pngs(rows: list[dict[str, Any]]) -> dict[str, bytes]:
    pngs = {"scores": charts.session_scores_chart([row["label"] for row in rows], [row["score"] for row in rows])}
    shares = _comparison_shares(rows)
    if shares.to_numpy().sum() > 0:
        pngs["states"] = charts.state_share_chart(shares)
    return pngs


def _status(run: Run, timeline: pd.DataFrame) -> tuple[str, str]:
    """``ok``, ``all_excluded``, ``not_analysed`` or ``no_students``, with the sentence shown when not ``ok``."""
    if run.students and not timeline.empty:
        return "ok", ""
    tracked = run.people_tracked - len(run.instructors)
    if not run.summary and not run.states.empty:
        return "not_analysed", (
            f"This run folder has no {SUMMARY_JSON} although its states table holds {len(run.states)} rows (a run "
            "that stopped before it finished, or a file deleted by hand), so this report has no engagement figures: "
            "process the video again.")
    if run.people_excluded and run.people_excluded >= tracked:
        return "all_excluded", (
            f"Everyone seen in this session ({run.people_excluded} people) was excluded by the consent policy "
            "(opted out, withdrawn, or not placed on the roster). Nobody was analysed, so this report has no "
            "engagement figures.")
    if tracked:
        classifier_on = run.session.config.classifier.enabled
        reason = "no engagement states were recorded" if classifier_on else "the classifier was disabled for this run"
        return "not_analysed", (
            f"{tracked} people were tracked, but {reason}, so this report has no engagement figures.")
    return "no_students", (
        "No students were detected in this session, so this report has no engagement figures. Check that the "
        "camera shows the class and that the right video was processed.")


def framing_notice(run: Run) -> str:
    """The sentence that warns of a framing closer than the states were measured to hold in, or ``""``."""
    framing = run.summary.get("framing") or {}
    if not framing.get("close"):
        return ""
    return (f"The students' heads fill {100 * float(framing['head_share']):.0f}% of the frame's height (median). The "
            "states were measured to hold with the face up to about half the frame's height; closer than that, raised "
            "hands leave the picture and resting faces are misread, so read these states with care (model card, "
            "\"How close is too close\"). Move the camera back so that the shoulders and hands are in view.")


def _time_axis(run: Run) -> TimeAxis:
    """Minutes, as summary.json and scores.csv have them; for sessions of a few minutes, periods of a few
    seconds recomputed from the states table with the pipeline's own score, so a short clip is more than one dot."""
    if run.duration_s >= SHORT_SESSION_S or run.states.empty or not set(PROBABILITY_COLUMNS) <= set(run.states.columns):
        return TimeAxis()
    bin_s = next((seconds for seconds in SHORT_PERIODS_S if run.duration_s / seconds <= MAX_SHORT_PERIODS),
                 SHORT_PERIODS_S[-1])
    return TimeAxis(bin_s=bin_s, unit_s=1.0)


def _period_scores(run: Run, time_axis: TimeAxis) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Scores per student and period (track_id, bin, score) and the class timeline (bin, score, n_students)."""
    if time_axis.bin_s == 60:
        scores = run.scores.rename(columns={"minute": "bin"})
        timeline = pd.DataFrame(run.summary.get("timeline") or [], columns=["minute", "score", "n_students"])
        timeline = timeline.rename(columns={"minute": "bin"})
    else:
        frames = run.states.assign(score=engagement_score(run.states[list(PROBABILITY_COLUMNS)].to_numpy()),
                                   bin=(run.states["time_s"] // time_axis.bin_s).astype(int))
        scores = frames.groupby(["track_id", "bin"])["score"].mean().reset_index()
        timeline = scores.groupby("bin").agg(score=("score", "mean"), n_students=("track_id", "nunique")).reset_index()
    timeline["n_students"] = timeline["n_students"].fillna(0)
    return scores, timeline.dropna(subset=["score"]).sort_values("bin").reset_index(drop=True)


def _ranked(timeline: pd.DataFrame) -> tuple[pd.DataFrame, int, int | None]:
    """Periods by score, best first, and the highest and lowest one. Top moments come from periods with at least
    half the class in view: a minute with two early arrivals says little about the lecture."""
    well_attended = timeline[timeline["n_students"] >= MOMENT_MIN_PRESENT * timeline["n_students"].max()]
    ranked = well_attended.sort_values(["score", "bin"], ascending=[False, True])
    return ranked, int(ranked.iloc[0]["bin"]), int(ranked.iloc[-1]["bin"]) if len(ranked) > 1 else None


def _chart_pngs(run: Run, scores: pd.DataFrame, timeline: pd.DataFrame, time_axis: TimeAxis) -> dict[str, bytes]:
    _, high, low = _ranked(timeline)
    pngs = {"timeline": charts.timeline_chart(timeline, time_axis, run.duration_s, high, low)}
    period_shares = _state_shares(run, time_axis)
    if not period_shares.empty:
        pngs["states"] = charts.state_share_chart(period_shares)
    if not scores.empty:
        pngs["heatmap"] = charts.heatmap_chart(scores, time_axis)
    return pngs


def session_charts(run: Run) -> dict[str, bytes]:
    """The session's charts as PNG bytes by name (``timeline``, ``states``, ``heatmap``): the report's, drawn on their
    own for the web app; none when the session has no results to chart."""
    time_axis = _time_axis(run)
    scores, timeline = _period_scores(run, time_axis)
    if _status(run, timeline)[0] != "ok":
        return {}
    return _chart_pngs(run, scores, timeline, time_axis)


def session_overview(run: Run) -> dict[str, Any]:
    """What the web app's session page shows besides its charts, without drawing them: the facts, the score, the
    status, the state shares and which charts ``session_charts`` draws."""
    time_axis = _time_axis(run)
    scores, timeline = _period_scores(run, time_axis)
    status, status_message = _status(run, timeline)
    chart_names: list[str] = []
    if status == "ok":
        chart_names = ["timeline"] + (["states"] if not _state_shares(run, time_axis).empty else []) + (["heatmap"] if not scores.empty else [])
    return {"facts": _facts(run), "session_score": _round(run.summary.get("session_score")), "status_message": status_message,
            "framing_notice": framing_notice(run), "input_notice": input_notice(run),
            "state_table": _state_table(run) if status == "ok" else [], "period": time_axis.period, "chart_names": chart_names}


def _state_table(run: Run) -> list[dict[str, Any]]:
    overall = _summary_shares(run.summary)
    shown = _reported(run)
    return [dict(entry, share=f"{100 * float(overall.get(entry['state'], 0.0)):.0f} %")
            for entry in _state_legend() if entry["state"] in shown]


def _reported(run: Run) -> list[str]:
    """The states this run's classifier could give, and uncertain: with ``classifier.labels_of`` (the webcam
    pipeline) only the states that dataset's labels map to, so that the report never lists a state the pipeline
    cannot report as if it had measured 0 % of it."""
    labels_of = run.session.config.classifier.labels_of
    states = set(STATES)
    if labels_of:
        from engagement.classifier.data import load_label_map

        states = {state for state in load_label_map().get(labels_of, {}).values() if state} or states
    return [column for column in SHARE_COLUMNS if column in states or column == UNCERTAIN]


def _results(run: Run, scores: pd.DataFrame, timeline: pd.DataFrame, time_axis: TimeAxis) -> dict[str, Any]:
    ranked, _, low = _ranked(timeline)
    result_charts = {name: _data_uri(png, "image/png") for name, png in _chart_pngs(run, scores, timeline, time_axis).items()}
    moments = [_moment(run, ranked.iloc[0], time_axis, "Highest engagement")]
    if low is not None:
        moments.append(_moment(run, ranked.iloc[-1], time_axis, "Lowest engagement"))
    moment_rows = [
        {"kind": kind, "periods": ", ".join(f"{_clock(row.bin * time_axis.bin_s)} ({row.score:.0f})"
                                            for row in rows.itertuples())}
        for kind, rows in (("highest", ranked.head(MOMENTS_LISTED)), ("lowest", ranked.tail(MOMENTS_LISTED)[::-1]))
    ]
    return {"charts": result_charts, "moments": moments, "moment_rows": moment_rows, "state_table": _state_table(run),
            "period": time_axis.period}


def _summary_shares(summary: dict[str, Any]) -> dict[str, float]:
    """summary.json's state shares with the share of uncertain student-time beside them (empty when none)."""
    shares = dict(summary.get("state_share") or {})
    if shares and summary.get("uncertain_share") is not None:
        shares[UNCERTAIN] = float(summary["uncertain_share"])
    return shares


def _state_shares(run: Run, time_axis: TimeAxis) -> pd.DataFrame:
    """Share of student frames in each state per period (periods merged so that at most 60 bars remain).

    Falls back to the whole-session shares from summary.json when ``states.parquet`` is absent.
    """
    states = run.states
    if states.empty:
        overall = _summary_shares(run.summary)
        if not overall:
            return pd.DataFrame()
        return pd.DataFrame([overall], index=pd.Index(["whole session"]), columns=_reported(run)).fillna(0.0)
    periods = (states["time_s"] // time_axis.bin_s).astype(int)
    span = int(periods.max()) + 1
    merged = max(1, math.ceil(span / MAX_BARS))
    bins = pd.Series(periods // merged * merged, name="bin")
    shares = pd.crosstab(bins, states["state"], normalize="index").reindex(columns=_reported(run), fill_value=0.0)
    shares = shares.reindex(range(0, span, merged), fill_value=0.0)
    shares.index = pd.Index([f"{value:g}" for value in time_axis.position(shares.index.to_numpy())], name=time_axis.label)
    return shares


def _moment(run: Run, row: pd.Series, time_axis: TimeAxis, kind: str) -> dict[str, Any]:
    """A top-moment card: the period, its score and a still from the anonymized annotated video."""
    start = int(row["bin"]) * time_axis.bin_s
    end = min(start + time_axis.bin_s, run.duration_s) if run.duration_s > start else start + time_axis.bin_s
    still = read_still(run.video, (start + end) / 2) if run.video else None
    return {
        "kind": kind,
        "time": f"{_clock(start)}-{_clock(end)}",
        "score": f"{float(row['score']):.0f}",
        "n_students": int(row["n_students"]),
        "still": _data_uri(still, "image/jpeg") if still else None,
        "still_time": _clock((start + end) / 2),
    }


def _facts(run: Run) -> list[tuple[str, str]]:
    session, video = run.session, run.session.input
    in_view = session.tracking.max_people_in_frame
    size = f"{video.width}x{video.height}" if video.width else "size unknown"
    fps = f"{video.fps:.1f} fps" if video.fps else "fps unknown"
    return [
        ("Course", run.course or "not set"),
        ("Session", session.config.consent.session or "not set"),
        ("Date processed", session.created[:10] or "unknown"),
        ("Duration", _duration(run.duration_s)),
        ("Video", f"{Path(video.path or 'unknown').name} ({size}, {fps})"),
        ("People tracked", f"{run.people_tracked} (at most {in_view} in view at once)" if in_view else str(run.people_tracked)),
        ("Instructor", ", ".join(f"track #{track}" for track in run.instructors) + ", not analysed"
         if run.instructors else "none marked"),
        ("Students analysed", str(len(run.students))),
        ("People excluded by consent", str(run.people_excluded)),
    ]


def input_notice(run: Run) -> str:
    """The sentence that says the input decoded to fewer frames than it declares, or ``""``."""
    video = run.session.input
    if video.input_complete is not False:
        return ""
    return (f"The video decoded to {video.frames_decoded} of the {video.frames_expected} frames its file declares "
            "(truncated or corrupt): every figure here covers the decoded part only.")


def _approach(run: Run, card: CardSummary) -> list[dict[str, str]]:
    """The models and stages used, each with its settings from this run and why it was chosen."""
    models, config = run.session.models, run.session.config
    detector, tracker, classifier = config.detector, config.tracker, config.classifier

    def model_name(model: ModelRecord | None) -> str:
        return model.name if model is not None and model.name else "not recorded"

    unused = None if classifier.enabled else "not used: the classifier was disabled for this run"

    return [
        {
            "stage": "Person detector",
            "choice": f"{models.detector.name or detector.model}, {detector.imgsz} px input, "
                      f"confidence >= {detector.confidence}, {config.analysis_fps} analysed frames/s",
            "why": "One pass gives each person's box and 17 body keypoints; the nano model runs on a classroom CPU.",
        },
        {
            "stage": "Tracker",
            "choice": "one person: the largest in each frame is the one track (tracker.single_person)"
                      if tracker.single_person else f"DeepSORT, {tracker.embedder} appearance embeddings, "
                                                    f"tracks kept {tracker.max_age_s} s without a detection",
            "why": "Appearance keeps a student's pseudonymous ID through occlusions, so per-student minutes add up."
                   if not tracker.single_person else "A webcam shows one person; a tracker could lose them in a "
                                                     "close-up and split their minutes over several IDs.",
        },
        {
            "stage": "Face detector",
            "choice": model_name(models.face_detector),
            "why": "Finds small and angled faces in wide classroom views: the blur masks start from it.",
        },
        {
            "stage": "Features",
            "choice": unused or (
                f"body pose keypoints + face landmarks and blendshapes ({model_name(models.face_landmarker)}, "
                f"faces >= {classifier.min_face_px} px)"
                + (f"; wrists the pose model misses from the hands ({model_name(models.palm_detector)}, confirmed by "
                   f"{model_name(models.hand_landmarker)})" if models.palm_detector else "")),
            "why": "Geometry, not pixels: no face image is stored, and the features work at a distance.",
        },
        {
            "stage": "Classifier",
            "choice": unused or f"{model_name(models.classifier)}, {classifier.view} camera view, smoothed over "
                                f"{classifier.smoothing_s} s"
                                + (f", {classifier.labels_of} labels only" if classifier.labels_of else "")
                                + (f", mixed {1 - classifier.crop_weight:g} to {classifier.crop_weight:g} with the "
                                   f"{model_name(models.crop_model)} (each student's upper-body pixels, never stored)"
                                   if models.crop_model else "")
                                + f", uncertain below {classifier.uncertain_below:g}",
            "why": "Small and fast on CPU; its held-out figures are below."
                   + (" The crop model sees a pen, a book or a raised hand that the pose keypoints of a seated, "
                      "half-hidden student miss, and transfers better to a classroom it never saw (model card)."
                      if models.crop_model else ""),
        },
    ]


def _formula(formula: dict[str, Any]) -> dict[str, Any]:
    weights = formula.get("weights") or {}
    return {
        "text": formula.get("text") or "not recorded in this run",
        "weights": [{"state": readable_name(state), "weight": f"{float(weight):+g}"} for state, weight in weights.items()],
    }


def _ethics(run: Run) -> dict[str, Any]:
    consent, config = run.session.consent, run.session.config
    blur = consent.policy or config.consent.blur
    unknown = consent.unknown or config.consent.unknown
    counts = consent.status_counts
    not_recorded = [
        "No names or student IDs: students appear only as pseudonymous track IDs.",
        "No face images in any table: only pose and face-geometry features and state probabilities.",
        f"People excluded by consent ({run.people_excluded} in this session) got no state and no score; "
        "they are left out of every figure.",
    ]
    if not config.output.keep_audio:
        not_recorded.insert(0, "No audio: the annotated video was written without sound.")
    blurred = [BLURRED_BY_POLICY.get(blur, blur)] if blur != "none" else []
    if blur == "opted_out" and unknown == "blur":
        blurred.append("people the pipeline could not place on the roster")
    return {
        "counts": [(readable_name(key), value) for key, value in counts.items()] if counts else None,
        "form_version": consent.form_version or "not recorded",
        "retention_until": consent.retention_until or "not set",
        "blurred": f"Faces of {' and '.join(blurred)} are blurred." if blurred else "This session's policy blurs no faces.",
        "policy": f"blur: {blur}, unknown people: {unknown}",
        "not_recorded": not_recorded,
    }


def _provenance(session: SessionRecord) -> dict[str, Any]:
    video, versions, timings = session.input, session.versions, session.timings_s
    roles = [(field.name, getattr(session.models, field.name)) for field in dataclasses.fields(session.models)]
    models = [
        {"role": readable_name(role), "name": model.name, "file": Path(model.file or "").name,
         "sha256": model.sha256 or "not recorded"}
        for role, model in roles if model is not None
    ]
    return {
        "input": Path(video.path or "unknown").name,
        "input_sha256": video.sha256 or "not recorded",
        "frames": video.frames,
        "frames_analysed": session.frames_analysed,
        "models": models,
        "package": session.engagement_version or versions.get("classroom-engagement") or "unknown",
        "versions": ", ".join(f"{name} {version}" for name, version in sorted(versions.items())),
        "pipeline": session.config.name,
        "created": session.created or "unknown",
        "processing": _duration(timings["total"]) if "total" in timings else "not recorded",
    }


def _state_legend() -> list[dict[str, str]]:
    return [{"state": state, "label": readable_name(state), "colour": colour} for state, colour in charts.STATE_COLOURS.items()]


def _session_label(run: Run) -> str:
    """The session's name as configured, else its run folder's: runs processed on one day must tell apart."""
    return run.session.config.consent.session or run.path.name


# --- formatting and output ----------------------------------------------------------------------------------


def _round(value: Any) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else round(float(value), 1)


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s" if secs else f"{minutes} min"
    return f"{secs} s"


def _clock(seconds: float) -> str:
    minutes, secs = divmod(max(0, round(seconds)), 60)
    return f"{minutes}:{secs:02d}"


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _render(template: str, context: dict[str, Any]) -> str:
    folder = resource_dir("reports")
    environment = Environment(loader=FileSystemLoader(folder), autoescape=True, undefined=StrictUndefined,
                              trim_blocks=True, lstrip_blocks=True)
    css = Markup((folder / "report.css").read_text())
    return environment.get_template(template).render(css=css, **context)


def _write_outputs(html: str, out_dir: Path, stem: str, formats: tuple[str, ...], base_url: Path) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    if "html" in formats:
        written["html"] = write_atomic(out_dir / f"{stem}.html", lambda stream: stream.write(html.encode("utf-8")))
    if "pdf" in formats:
        from weasyprint import HTML  # heavy import, only when a PDF is asked for

        written["pdf"] = write_atomic(out_dir / f"{stem}.pdf", HTML(string=html, base_url=str(base_url)).write_pdf)
    return written
