"""Per-segment check of the state classifier on ``webcam_session_p2.mp4`` (person 2, held out of training).

Runs detector -> features -> classifier -> smoothing over every frame with the settings of
``pipelines/webcam.yaml`` and the pipeline's own state stage (the largest person as one track; with
``classifier.baseline: session``, compared with the whole video, as ``engagement process`` does), then compares
the dominant smoothed state of each segment of the ``.segments.csv`` with the segment's mapped label.

    python benchmarks/webcam_segments.py --video ../shared/videos/webcam_session_p2.mp4 [--weights W.npz] \
        [--baseline running|session]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from engagement.classifier.data import WEBCAM, load_label_map
from engagement.config import PipelineConfig, load_pipeline
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
    args = parser.parse_args()
    config = load_pipeline("webcam")
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
    main()
