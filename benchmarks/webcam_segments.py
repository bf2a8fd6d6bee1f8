"""Per-segment check of the state classifier on ``webcam_session_p2.mp4`` (person 2, held out of training).

Runs detector -> features -> classifier -> smoothing over every frame with the settings of
``pipelines/webcam.yaml`` and the pipeline's own state stage (the largest person as one track; with
``classifier.baseline: session``, compared with the whole video, as ``engagement process`` does), then compares
the dominant smoothed state of each segment of the ``.segments.csv`` with the segment's mapped label.

    python benchmarks/webcam_segments.py --video ../shared/videos/webcam_session_p2.mp4 [--weights W.npz] \
        [--baseline running|session]

With ``--process`` the video goes through the real ``engagement process --pipeline webcam`` instead (detector, the
webcam pipeline's single-person tracking and face fallback, consent, states) and the drawn state of every frame is
read back from ``states.parquet``; ``--close-up F`` first crops the video around the person's face so that the face
is F of the frame's height (a laptop framing: little or no body). Prints the per-frame accuracy of the drawn state
(a frame without a state counts as wrong) and the number of track IDs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from engagement.classifier.data import WEBCAM, load_label_map
from engagement.config import PipelineConfig, load_pipeline
from engagement.errors import UserError, run_reporting_errors
from engagement.states import STATES


def frame_probabilities(video: Path, config: PipelineConfig) -> np.ndarray:
    """(n_frames, 6) smoothed probabilities of the largest person (NaN where nobody is found), computed by the
    pipeline's own ``StateStage`` (so ``classifier.baseline: session`` settles over the whole video first)."""
    import av

    from engagement.detector import PoseDetector
    from engagement.classifier.stage import StateStage
    from engagement.pipeline.analyse import StageTimer

    detector = PoseDetector(config.detector, config.models_dir)
    stage = StateStage(config)
    timer = StageTimer()
    people = []
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate)
        for index, frame in enumerate(container.decode(stream)):
            image = frame.to_ndarray(format="bgr24")
            found = detector(image)
            if not len(found):
                people.append(None)
                continue
            person = found[int(np.argmax(found.area))]
            person.track_id[:] = 0  # one person: one track
            person.data["opted_out"] = np.zeros(1, bool)
            people.append(stage(image, person, index / fps, timer))
    stage.settle(timer)
    stage.features.close()
    return np.array([np.full(len(STATES), np.nan) if person is None else person.data["state_probs"][0] for person in people])


def close_up(video: Path, face_share: float, out: Path) -> Path:
    """``video`` cropped as ``close_up.py`` crops (16:9 around the median YuNet face of every 10th frame, the face
    ``face_share`` of the height), written to ``out``."""
    from close_up import close_up_box, cropped, face_detector
    from engagement.privacy import read_frames
    from engagement.sinks import VideoWriter
    from engagement.sources import FrameSource

    frames = list(read_frames(video))
    box = close_up_box(frames[::10], face_share, face_detector())
    if box is None:
        raise UserError(f"{video}: no face found to frame a close-up around")
    writer = VideoWriter(out, FrameSource(str(video)).info.fps, 640, 360, crf=18)
    for frame in frames:
        writer.write(cropped(frame, box))
    writer.close()
    return out


def processed_probabilities(video: Path, overrides: list[str]) -> tuple[np.ndarray, dict]:
    """One-hot (n_frames, 6) drawn states from a real ``engagement process --pipeline webcam`` run (NaN rows: no
    state), and the run's tracking record."""
    import tempfile

    from engagement.pipeline import process_video
    from engagement.sources import FrameSource

    frames = FrameSource(str(video)).info.frames
    with tempfile.TemporaryDirectory() as tmp:
        session = process_video(str(video), Path(tmp) / "run", load_pipeline("webcam", overrides), quiet=True, report=False)
        states = pd.read_parquet(Path(tmp) / "run" / "states.parquet")
    probs = np.full((frames, len(STATES)), np.nan)
    for row in states.itertuples():
        if row.state in STATES:
            probs[row.frame] = np.eye(len(STATES))[STATES.index(row.state)]
    return probs, session.tracking


def frame_accuracy(probs: np.ndarray, segments: pd.DataFrame) -> float:
    """Share of the frames of mapped segments whose state is the segment's (no state counts as wrong)."""
    mapping = load_label_map()[WEBCAM]
    right = total = 0
    for segment in segments.itertuples():
        expected = mapping.get(segment.label)
        if expected is None:
            continue
        window = probs[segment.start_frame: segment.end_frame + 1]
        total += len(window)
        right += int(sum(np.isfinite(p).all() and STATES[int(np.argmax(p))] == expected for p in window))
    return right / max(total, 1)


def segment_table(probs: np.ndarray, segments: pd.DataFrame) -> pd.DataFrame:
    """One row per segment: expected state, dominant predicted state (most frequent argmax), share."""
    mapping = load_label_map()[WEBCAM]
    records = []
    for segment in segments.itertuples():
        window = probs[segment.start_frame: segment.end_frame + 1]
        window = window[np.isfinite(window).all(axis=1)]
        expected = mapping.get(segment.label)
        votes = np.bincount(window.argmax(axis=1), minlength=len(STATES)) if len(window) else np.zeros(len(STATES))
        predicted = STATES[int(votes.argmax())] if votes.sum() else "none"
        records.append({
            "start_frame": segment.start_frame, "end_frame": segment.end_frame, "label": segment.label,
            "expected": expected or "(not mapped)", "predicted": predicted,
            "share_of_frames": round(float(votes.max() / max(votes.sum(), 1)), 2),
            "match": None if expected is None else predicted == expected,
        })
    return pd.DataFrame(records)


def markdown(table: pd.DataFrame) -> str:
    """A pipe table for docs and the model card."""
    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", default="../shared/videos/webcam_session_p2.mp4")
    parser.add_argument("--segments", help="default: VIDEO with .segments.csv")
    parser.add_argument("--weights", help="default: the packaged weights")
    parser.add_argument("--smoothing-s", type=float, help="default: the webcam pipeline's smoothing_s")
    parser.add_argument("--baseline", choices=["running", "session"], help="default: the webcam pipeline's baseline")
    parser.add_argument("--process", action="store_true", help="through the real engagement process --pipeline webcam")
    parser.add_argument("--close-up", type=float, metavar="F", help="with --process: crop so the face is F of the height")
    parser.add_argument("--set", action="append", default=[], help="pipeline overrides, e.g. classifier.warmup_frames=0")
    args = parser.parse_args()
    if args.process:
        import tempfile

        video = Path(args.video)
        segments = pd.read_csv(args.segments or video.with_suffix(".segments.csv"))
        with tempfile.TemporaryDirectory() as tmp:
            source = close_up(video, args.close_up, Path(tmp) / "close_up.mp4") if args.close_up else video
            probs, tracking = processed_probabilities(source, args.set)
        table = segment_table(probs, segments)
        scored = table[table["match"].notna()]
        print(markdown(table))
        print(json.dumps({"frame_accuracy": round(frame_accuracy(probs, segments), 3), "segments_scored": len(scored),
                          "segments_matched": int(scored["match"].sum()), "track_ids": tracking.confirmed_tracks}))
        return
    config = load_pipeline("webcam", args.set)
    if args.baseline is not None:
        config.classifier.baseline = args.baseline
    if args.smoothing_s is not None:
        config.classifier.smoothing_s = args.smoothing_s
    video = Path(args.video)
    segments = pd.read_csv(args.segments or video.with_suffix(".segments.csv"))
    if args.weights:
        config.classifier.weights = args.weights
    probs = frame_probabilities(video, config)
    table = segment_table(probs, segments)
    scored = table[table["match"].notna()]
    print(markdown(table))
    print(json.dumps({"segments_scored": len(scored), "segments_matched": int(scored["match"].sum())}))


if __name__ == "__main__":
    raise SystemExit(run_reporting_errors(main, "webcam_segments"))
