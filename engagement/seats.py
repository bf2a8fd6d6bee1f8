"""``engagement seats``: seat plans (``propose``, ``import``, ``export``; see ``engagement.consent.seatplan``) and
``check``, one frame of a video with the opted-out seat zones drawn on it, every face blurred.

Seat-zone polygons are typed as pixel coordinates; this picture lets the instructor see where they really lie
before a session is analysed. Every face is hidden (YuNet faces and pose head regions, as ``consent.blur: all``)
whatever the pipeline's blur policy, because the picture is meant to be looked at and passed around. A dot marks
each person's anchor, the point the consent stage tests against the zones: filled when it lies in a zone.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

import numpy as np

from engagement.arguments import not_negative
from engagement.config import PipelineConfig
from engagement.errors import UserError
from engagement.files import out_path

if TYPE_CHECKING:
    from engagement.consent.seatplan import SeatPlan
    from engagement.detections import Detections

ANCHOR_INSIDE = (255, 0, 255)  # the zone colour: this person would be opted out
ANCHOR_OUTSIDE = (255, 255, 255)


def read_frame(video: str, time_s: float) -> tuple[np.ndarray, float]:
    """The frame of ``video`` at ``time_s`` seconds and its frame rate; an unreadable video or a time past its
    end is a UserError."""
    from engagement.sources import read_frame_at

    if time_s < 0:
        raise UserError(f"--frame-time must be 0 or more seconds, got {time_s}")
    frame, fps, frames = read_frame_at(video, time_s)
    if frame is None:
        length = f" (it is {frames / fps:.1f} s long)" if frames > 0 else ""
        raise UserError(f"{video}: no frame could be read at {time_s:g} s{length}")
    return frame, fps


def blurred_frame(frame: np.ndarray, fps: float, config: PipelineConfig) -> tuple[np.ndarray, "Detections"]:
    """``frame`` with every face blurred (YuNet faces and pose head regions), and the people found in it."""
    from engagement.anonymize import Anonymizer
    from engagement.detector import PoseDetector

    people = PoseDetector(config.detector, config.models_dir)(frame)
    return Anonymizer(config.anonymizer, fps, config.models_dir).annotate(frame, people, blur_all_faces=True), people


def seat_check_image(frame: np.ndarray, fps: float, config: PipelineConfig) -> tuple[np.ndarray, int]:
    """``frame`` with every face blurred, then the opted-out seat zones and each person's anchor drawn on it;
    also the number of people found."""
    import cv2

    from engagement.annotate import SeatZoneAnnotator
    from engagement.consent.stage import in_seat_zones

    image, people = blurred_frame(frame, fps, config)
    zones = config.consent.opted_out_seats
    image = SeatZoneAnnotator(zones).annotate(image, people)
    radius = max(3, round(min(frame.shape[:2]) / 150))
    for (x, y), inside in zip(np.round(people.anchor).astype(int), in_seat_zones(people.anchor, zones)):
        cv2.circle(image, (x, y), radius + 1, (0, 0, 0), -1)
        cv2.circle(image, (x, y), radius, ANCHOR_INSIDE if inside else ANCHOR_OUTSIDE, -1 if inside else 2)
    return image, len(people)


def _check(args: argparse.Namespace) -> int:
    from engagement.pipeline_cli import config_from_args
    from engagement.sinks import write_png

    config = config_from_args(args)
    out = out_path(args.out, ".png", (".png",))
    frame, fps = read_frame(args.video, args.frame_time)
    image, people = seat_check_image(frame, fps, config)
    write_png(out, image)
    zones = ", ".join(zone.name for zone in config.consent.opted_out_seats) or "none configured"
    print(f"{out}: frame at {args.frame_time:g} s ({frame.shape[1]}x{frame.shape[0]} px), every face blurred; "
          f"{people} people found; seat zones: {zones}")
    return 0


def propose_plan(video: str, room: str, config: PipelineConfig, seconds: float) -> "SeatPlan":
    """A first seat plan for ``room`` from where the people tracked in the first ``seconds`` of ``video`` sit."""
    from engagement.consent.seatplan import checked_room, propose_seats
    from engagement.detector import PoseDetector
    from engagement.pipeline.analyse import analysis_frames
    from engagement.pipeline.run import for_source
    from engagement.sources import FrameSource
    from engagement.tracker import Tracker

    if not seconds > 0:
        raise UserError(f"--seconds must be positive, got {seconds:g}")
    checked_room(room, "--room")
    source = FrameSource(video)
    config = for_source(config, source.info)
    detector = PoseDetector(config.detector, config.models_dir)
    tracker = Tracker(config.tracker, config.analysis_fps)
    tracked = []
    try:
        for index, frame in source.frames(wanted=analysis_frames(source.info.fps, config.analysis_fps)):
            if source.time_of(index) > seconds:
                break
            if frame is not None:
                (people,) = detector.detect_batch([frame])
                tracked.append(tracker.update(frame, people))
    finally:
        source.close()
    if not tracked:
        raise UserError(f"{video}: no analysis frame in the first {seconds:g} s")
    return propose_seats(tracked, source.info.width, source.info.height, room)


def _propose(args: argparse.Namespace) -> int:
    from engagement.pipeline_cli import config_from_args

    config = config_from_args(args)
    out = out_path(args.out, ".yaml", (".yaml", ".yml"))
    if out.exists():
        raise UserError(f"--out {out}: already exists (a plan you may have edited); choose another name or delete it")
    plan = propose_plan(args.video, args.room, config, args.seconds)
    plan.write(out)
    print(f"{out}: {len(plan.seats)} seats proposed for room {plan.room} on a {plan.width}x{plan.height} frame "
          f"(every seat participating: mark the others, then 'engagement seats import {out}')")
    return 0


def _import(args: argparse.Namespace) -> int:
    from engagement.consent.registry import Registry
    from engagement.consent.seatplan import SeatPlan

    plan = SeatPlan.read(args.plan)
    with Registry.open(args.registry) as registry:
        registry.save_seat_plan(plan)
    out = sum(not seat.participating for seat in plan.seats)
    print(f"room {plan.room}: seat plan saved ({len(plan.seats)} seats, {out} non-participating)")
    return 0


def _export(args: argparse.Namespace) -> int:
    from engagement.consent.registry import Registry

    out = out_path(args.out, ".yaml", (".yaml", ".yml"))
    with Registry.open(args.registry, create=False) as registry:
        plan = registry.seat_plan(args.room)
    plan.write(out)
    print(f"{out}: seat plan of room {plan.room} ({len(plan.seats)} seats)")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``seats propose``, ``seats import``, ``seats export`` and ``seats check``."""
    from engagement.pipeline_cli import _add_config_options

    seats = subparsers.add_parser("seats", help="seat plans (consent by seat) and opted-out seat zones")
    commands = seats.add_subparsers(dest="seats_command", metavar="COMMAND", required=True)
    propose = commands.add_parser(
        "propose", help="suggest a room's seat plan from where people sit in the first minutes of a video",
        description="Tracks the people in the first --seconds of VIDEO and writes one seat per person seated most of that "
                    "time (named A1, A2, ... from the front row), all participating, as YAML to edit or import.",
    )
    propose.add_argument("video", metavar="VIDEO", help="a recording of the room from the camera used in class")
    propose.add_argument("--room", required=True, help="the room's name (the key of its seat plan)")
    propose.add_argument("--seconds", type=float, default=120.0, help="how much of the start to watch (default 120)")
    propose.add_argument("--out", required=True, help="YAML file to write")
    _add_config_options(propose, "lecture")
    propose.set_defaults(handler=_propose)
    imported = commands.add_parser("import", help="store a seat plan YAML in the registry (replaces the room's plan)")
    imported.add_argument("plan", metavar="PLAN", help="seat plan YAML (room, width, height, seats)")
    imported.add_argument("--registry", help="consent registry URL or SQLite file (default: $ENGAGEMENT_REGISTRY, else per user)")
    imported.set_defaults(handler=_import)
    export = commands.add_parser("export", help="write a room's seat plan from the registry as YAML")
    export.add_argument("room", metavar="ROOM")
    export.add_argument("--out", required=True, help="YAML file to write")
    export.add_argument("--registry", help="consent registry URL or SQLite file (default: $ENGAGEMENT_REGISTRY, else per user)")
    export.set_defaults(handler=_export)
    check = commands.add_parser(
        "check",
        help="draw the seat zones on one frame of a video, every face blurred, to check where they lie",
        description="Writes one frame of VIDEO as a PNG with the opted-out seat zones outlined and named and a dot "
                    "at each person's anchor (filled: inside a zone, so opted out). Every face is blurred, whatever --blur says.",
    )
    check.add_argument("video", metavar="VIDEO", help="a recording of the room, from the camera position used in class")
    check.add_argument("--frame-time", type=not_negative, default=0.0, metavar="S", help="seconds into the video (default 0)")
    check.add_argument("--out", required=True, help="PNG file to write")
    _add_config_options(check, "lecture")
    check.set_defaults(handler=_check)
