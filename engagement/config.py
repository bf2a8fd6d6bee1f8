"""Pipeline configuration: dataclasses serialized as YAML in ``pipelines/``.

Loading is strict: an unknown key is an error that lists the valid ones, and every value is checked
against its field's type, so a typo in a YAML file never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from engagement.detections import KEYPOINT_MIN_SCORE
from engagement.errors import UserError
from engagement.resources import resource_dir


@dataclass
class DetectorConfig:
    """Person detector: an ultralytics YOLO pose model (boxes + 17 COCO keypoints)."""

    model: str = "yolov8n-pose"  # a name resolved in the models directory, or a path
    imgsz: int = 640
    confidence: float = 0.25
    iou: float = 0.5
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    max_people: int = 100
    batch: int = 0  # analysis frames per detector call; 0 = auto: 8 on a GPU, 1 on a CPU (no gain measured there)
    threads: int = 0  # CPU threads of an OpenVINO model; 0 = auto: all cores but one, left to the anonymizer
    # When the pose model finds nobody, the largest face (YuNet) becomes a person: a close-up webcam framing shows a
    # face and little body. Off for classrooms, where a face without a body is someone hidden, not the subject.
    face_fallback: bool = False


DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


@dataclass
class TrackerConfig:
    """DeepSORT tracker with appearance embeddings."""

    max_age_s: float = 4.0  # seconds a track survives without a detection
    n_init: int = 2  # consecutive analysed frames before a track is confirmed
    max_cosine_distance: float = 0.3
    max_iou_distance: float = 0.7
    nn_budget: int = 50
    embedder: Literal["mobilenetv2", "none"] = "mobilenetv2"
    # Recorded video: after the whole recording is tracked, tracklets that follow one another (never overlapping
    # in time) are joined into one student when their mean appearances and the places where one ends and the next
    # begins are close (students mostly stay in their seats). Live video keeps the online IDs.
    stitch: bool = True
    stitch_max_gap_s: float = 120.0  # longest absence bridged
    stitch_max_distance: float = 0.3  # cosine distance of the tracklets' mean appearance embeddings
    stitch_max_shift: float = 0.75  # anchor movement across the gap, in person-box heights
    # One person at a webcam: the largest person is track 1 on every frame (no tracker to lose them in a close-up
    # laptop framing); anyone else is left untracked (blurred, not analysed).
    single_person: bool = False

    def validate(self) -> "TrackerConfig":
        """Refuse values DeepSORT or the stitching would misread: a negative budget drops the newest appearances, a
        stitching limit of 0 divides by zero, and a negative time or distance never matches anything."""
        if self.n_init < 1:
            raise UserError(f"tracker.n_init must be at least 1 analysed frame, got {self.n_init}")
        if self.nn_budget < 1:
            raise UserError(f"tracker.nn_budget must be at least 1 appearance per track, got {self.nn_budget}")
        if not self.max_age_s >= 0:
            raise UserError(f"tracker.max_age_s must be 0 or more seconds, got {self.max_age_s}")
        if not 0.0 <= self.max_cosine_distance <= 2.0:
            raise UserError(f"tracker.max_cosine_distance must be a cosine distance from 0 to 2, got {self.max_cosine_distance}")
        if not 0.0 <= self.max_iou_distance <= 1.0:
            raise UserError(f"tracker.max_iou_distance must be from 0 to 1, got {self.max_iou_distance}")
        for name in ("stitch_max_gap_s", "stitch_max_distance", "stitch_max_shift"):
            if not getattr(self, name) > 0:
                raise UserError(f"tracker.{name} must be above 0 (tracker.stitch: false turns stitching off), got {getattr(self, name)}")
        return self


@dataclass
class SeatZone:
    """A non-participating seat area: a polygon in image pixel coordinates."""

    name: str = "zone"
    polygon: list[list[float]] = field(default_factory=list)


BlurPolicy = Literal["unconsented", "opted_out", "all", "none"]
BLUR_POLICIES: tuple[BlurPolicy, ...] = typing.get_args(BlurPolicy)


@dataclass
class ConsentConfig:
    """Who may be analysed, and who is blurred."""

    registry: str | None = None  # SQLAlchemy URL or SQLite file; None: the per-user default
    course: str | None = None
    session: str | None = None
    # With a course: the room whose seat plan (in the registry: ``engagement seats import``) places each person, so the
    # roster's seats give the students (recorded videos only; see engagement.consent.seatplan).
    room: str | None = None
    # Whose faces are hidden. "unconsented" (default, fails closed): every face without a consent record, that is
    # everyone unless a registry course maps the track to a consented student. "opted_out": only rows opted out
    # (a seat, a student's record, or unknown): without a registry, confirmed tracks are shown. "all", "none".
    blur: BlurPolicy = "unconsented"
    unknown: Literal["blur", "analyze"] = "blur"  # people the pipeline cannot place
    opted_out_seats: list[SeatZone] = field(default_factory=list)
    track_students: dict[int, str] = field(default_factory=dict)  # track id -> student id, after a first pass


# Measured on the shared classroom and webcam videos: a blurred or pixelated face 1.5x its box is still
# found by YuNet (hair and head outline around it look like a face), at 2x it is not; a solid fill
# hides it at 1.5x. So blur and pixelate masks must be at least 2x the face.
METHOD_MIN_SCALE = {"blur": 2.0, "pixelate": 2.0, "fill": 1.3}


@dataclass
class HandsConfig:
    """Wrists from MediaPipe's hand models where the pose model finds none (``engagement.hands``): in a close
    (laptop) framing a raised hand shows without its arm."""

    enabled: bool = False
    palm_model: str = "palm_detection_full.tflite"
    landmark_model: str = "hand_landmark_full.tflite"  # its hand-presence output confirms each palm
    min_palm_score: float = 0.5
    min_presence: float = 0.5


# Both privacy-check detectors (YuNet, CenterFace) count a face as visible from this confidence on.
LEAK_CONFIDENCE = 0.5


@dataclass
class AnonymizerConfig:
    """Face anonymization: face detector boxes plus pose head regions, enlarged and held."""

    face_model: str = "face_detection_yunet_2026may.onnx"
    # Lower than the confidence at which `engagement privacy-check` counts a face (LEAK_CONFIDENCE): a face on
    # the edge of detection is hidden before any check would count it (a sideways classroom video had two such).
    face_confidence: float = 0.35
    method: Literal["blur", "pixelate", "fill"] = "blur"
    mask_scale: float = 2.0  # mask size relative to the face box (at least METHOD_MIN_SCALE[method])
    hold_s: float = 1.0  # keep a mask this long after the face was last seen
    face_every: int = 5  # face detector at full resolution on every k-th output frame...
    face_input_width: int = 640  # ...and downscaled to this width on the others (0: always full resolution)
    # Every this many seconds the face detector also looks at the frame turned by 90, 180 and 270 degrees (a phone
    # held sideways, a video turned without rotation metadata); a turn in which it finds faces is then searched on
    # every frame for the next two periods. 0 turns it off.
    turned_faces_every_s: float = 1.0

    def validate(self) -> "AnonymizerConfig":
        """A mask too small for its method lets the face detector find the obscured face again, and a face
        threshold above the leak check's leaves faces it counts unhidden: refuse them rather than correct them
        silently, so that the configuration and ``session.json`` say what runs."""
        minimum = METHOD_MIN_SCALE[self.method]
        if self.mask_scale < minimum:
            raise UserError(f"anonymizer.mask_scale must be at least {minimum} for method {self.method}, got {self.mask_scale}")
        if not 0.0 < self.face_confidence <= LEAK_CONFIDENCE:
            raise UserError(
                f"anonymizer.face_confidence must be above 0 and at most {LEAK_CONFIDENCE} (the confidence at which "
                f"`engagement privacy-check` counts a visible face), got {self.face_confidence}"
            )
        if not self.hold_s >= 0:
            raise UserError(f"anonymizer.hold_s must be 0 or more seconds, got {self.hold_s}")
        if self.face_every < 1:
            raise UserError(f"anonymizer.face_every must be 1 (every frame) or more, got {self.face_every}")
        if self.face_input_width < 0:
            raise UserError(f"anonymizer.face_input_width must be 0 (full resolution) or a width in pixels, got {self.face_input_width}")
        return self


CameraView = Literal["ceiling", "front", "webcam"]
CAMERA_VIEWS: tuple[CameraView, ...] = typing.get_args(CameraView)
# chosen on validation for single frames (MODEL_CARD.md); the webcam pipeline's 1 s smoothed rows use 0.3
UNCERTAIN_BELOW = 0.45


@dataclass
class ClassifierConfig:
    """Engagement-state classifier over pose and face features."""

    enabled: bool = True
    weights: str | None = None  # None: the weights shipped in the package
    face_landmarker: str = "face_landmarker.task"
    min_face_px: int = 40  # faces smaller than this get no landmarks
    # A tracked face is re-analysed at most this often (the last result is reused in between): Face Landmarker
    # runs once per face, which adds up with 20 people, and states are smoothed over seconds anyway
    # (docs/benchmarks.md). 0 = every analysis frame.
    face_refresh_s: float = 1.2
    # Time constant (s) of the per-track moving average of state probabilities. The webcam pipeline uses 1.0:
    # on validation persons longer windows lag into the next behaviour (benchmarks/smoothing_validation.py).
    smoothing_s: float = 3.0
    # Restrict the classifier's outputs to one training dataset's labels: "webcam_behaviour" for a person at a
    # webcam (no ceiling-camera labels, so no "taking notes"); None keeps every label (classroom cameras).
    labels_of: str | None = None
    # Where the camera looks from: "front" (a classroom filmed from the front or back, as clabehavior), "ceiling" (a
    # high CCTV camera looking down, as cctv_headstate) or "webcam" (one person at a laptop). The classifier takes the
    # view as an input (MODEL_CARD.md), so the same pose means what it means from that camera.
    view: CameraView = "front"
    # Baseline of the relative features. "running": each track against its history so far (causal; always so
    # in `engagement live`). "session": for recorded videos, two passes, each track against its whole session
    # (what the running baseline converges to; measured better on unseen people, see the model card). The first
    # pass keeps every analysis frame's detections and about 1 KB of features per analysed person in memory.
    baseline: Literal["running", "session"] = "running"
    # A person whose most probable smoothed state is below this probability is shown and tabled as "uncertain"
    # instead of a guess (0 never says uncertain); chosen on validation by room and by person (model card).
    uncertain_below: float = UNCERTAIN_BELOW
    # A face whose track's baseline holds fewer face frames than this is classified by the weights' warm-up model
    # (fitted without the relative features): a baseline of a person's first few behaviours misleads the main one.
    # 0 never uses it. Chosen on validation people for the webcam pipeline (80; MODEL_CARD.md); the lecture
    # pipeline keeps 0, as the warm-up model scored classroom frames lower there.
    warmup_frames: int = 0
    # Share of the upper-body crop model (engagement/classifier/crops.py) in a front view's state probabilities: the
    # feature network's are mixed (1 - crop_weight) to crop_weight with it. 0 never runs it; the lecture pipeline
    # uses 0.75, chosen on the clabehavior rooms (MODEL_CARD.md, "Crop model"). Used for the front view only (it
    # learned classrooms filmed from the front): other views ignore it.
    crop_weight: float = 0.0
    crop_weights: str | None = None  # crop model file; None: the one shipped in the package
    # A tracked student's crop is classified again at most this often (the last probabilities are reused in between):
    # six passes of a small backbone per student add up with 20 students, and states are smoothed over seconds anyway
    # (docs/benchmarks.md). 0 = every analysis frame.
    crop_refresh_s: float = 1.2
    # Who is the instructor, left out of every student table, score and report (engagement/roles.py): "auto" (stands
    # and walks most of the time), "zone" (mostly inside instructor_zone, a polygon in pixels), "none". Recorded
    # video only: a live view keeps everyone a student.
    instructor: Literal["auto", "zone", "none"] = "auto"
    instructor_zone: list[list[float]] = field(default_factory=list)


@dataclass
class OutputConfig:
    """What a run writes."""

    video: bool = True
    keep_audio: bool = False
    crf: int = 23
    # x264 preset; ultrafast gets CABAC, B-frames and deblocking back (``engagement.sinks.X264_PARAMS``) and then
    # costs a third less CPU than superfast for a quarter more bytes at the same PSNR (docs/benchmarks.md)
    preset: Literal["ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow"] = "ultrafast"
    csv: bool = True  # CSV copies of the Parquet tables
    report: bool = True


@dataclass
class PipelineConfig:
    """A whole pipeline: one YAML file in ``pipelines/``."""

    name: str = "lecture"
    analysis_fps: float = 5.0  # detection and tracking rate; in-between frames come from the tracks
    models_dir: str | None = None
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    hands: HandsConfig = field(default_factory=HandsConfig)
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    consent: ConsentConfig = field(default_factory=ConsentConfig)
    anonymizer: AnonymizerConfig = field(default_factory=AnonymizerConfig)
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    output: OutputConfig = field(default_factory=OutputConfig)

    def validate(self) -> "PipelineConfig":
        if not self.analysis_fps > 0:
            raise UserError(f"analysis_fps must be positive, got {self.analysis_fps}")
        if not 0.0 <= self.detector.confidence <= 1.0:
            raise UserError(f"detector.confidence must be a probability from 0 to 1, got {self.detector.confidence}")
        if not 0.0 < self.detector.iou <= 1.0:
            raise UserError(f"detector.iou must be an overlap above 0 and at most 1, got {self.detector.iou}")
        if self.detector.max_people < 1:
            raise UserError(f"detector.max_people must be at least 1, got {self.detector.max_people}")
        if self.detector.imgsz < 32:
            raise UserError(f"detector.imgsz must be at least 32 pixels, got {self.detector.imgsz}")
        if not DEVICE.fullmatch(self.detector.device):
            raise UserError(f"detector.device must be auto, cpu, cuda, cuda:N or mps, got {self.detector.device!r}")
        if not 0 <= self.output.crf <= 51:
            raise UserError(f"output.crf must be an x264 quality from 0 (lossless) to 51, got {self.output.crf}")
        if self.detector.threads < 0:
            raise UserError(f"detector.threads must be 0 (auto) or a positive number of threads, got {self.detector.threads}")
        if self.detector.batch < 0:
            raise UserError(f"detector.batch must be 0 (auto) or a positive number of frames, got {self.detector.batch}")
        if not 0.0 <= self.hands.min_presence <= 1.0:
            raise UserError(f"hands.min_presence must be a probability from 0 to 1, got {self.hands.min_presence}")
        if not KEYPOINT_MIN_SCORE <= self.hands.min_palm_score <= 1.0:
            # a palm's score becomes its wrist's keypoint score, and the features ignore keypoints below KEYPOINT_MIN_SCORE
            raise UserError(f"hands.min_palm_score must be from {KEYPOINT_MIN_SCORE} to 1, got {self.hands.min_palm_score}")
        if self.classifier.instructor == "zone" and len(self.classifier.instructor_zone) < 3:
            raise UserError("classifier.instructor: zone needs classifier.instructor_zone, a polygon of at least 3 [x, y] points")
        if not 0.0 <= self.classifier.uncertain_below <= 1.0:
            raise UserError(f"classifier.uncertain_below must be a probability from 0 to 1, got {self.classifier.uncertain_below}")
        check_warmup_frames(self.classifier.warmup_frames, "classifier.warmup_frames")
        if not 0.0 <= self.classifier.crop_weight <= 1.0:
            raise UserError(f"classifier.crop_weight must be a share from 0 to 1, got {self.classifier.crop_weight}")
        if not self.classifier.crop_refresh_s >= 0:
            raise UserError(f"classifier.crop_refresh_s must be 0 (every analysis frame) or a number of seconds, got "
                            f"{self.classifier.crop_refresh_s}")
        if self.anonymizer.turned_faces_every_s < 0:
            raise UserError(f"anonymizer.turned_faces_every_s must be 0 (off) or positive, got {self.anonymizer.turned_faces_every_s}")
        self.tracker.validate()
        self.anonymizer.validate()
        if self.models_dir is not None and not Path(self.models_dir).expanduser().is_dir():
            raise UserError(f"models_dir {self.models_dir} does not exist or is not a folder")
        if self.consent.room is not None and self.consent.course is None:
            raise UserError(f"consent.room {self.consent.room} needs consent.course: the course's roster says who sits in which seat")
        for i, zone in enumerate(self.consent.opted_out_seats):
            validate_polygon(zone, f"consent.opted_out_seats[{i}]")
        return self


def check_warmup_frames(frames: int, where: str) -> None:
    """Refuse a negative warm-up length, named as the user set it (a config key or a command-line option)."""
    if frames < 0:
        raise UserError(f"{where} must be 0 (off) or a number of face frames, got {frames}")


def validate_polygon(zone: SeatZone, where: str) -> None:
    """A seat zone needs at least 3 corners, each two finite pixel coordinates (x, y)."""
    label = f"{where} ({zone.name!r})"
    if len(zone.polygon) < 3:
        raise UserError(f"{label}: a polygon needs at least 3 points [x, y], got {len(zone.polygon)}")
    for point in zone.polygon:
        if len(point) != 2 or not all(math.isfinite(value) for value in point):
            raise UserError(f"{label}: each point must be two finite numbers [x, y], got {point}")


def to_dict(config: Any) -> dict[str, Any]:
    """The config as plain data, ready for YAML or JSON."""
    return dataclasses.asdict(config)


def from_dict(cls: type, data: Any, where: str = "") -> Any:
    """Build dataclass ``cls`` from plain data, rejecting unknown keys and wrong types."""
    label = where or cls.__name__
    if not isinstance(data, dict):
        raise UserError(f"{label}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise UserError(f"{label}: unknown key {unknown[0]!r}; valid keys: {', '.join(fields)}")
    values = {name: _coerce(hints[name], value, f"{where}.{name}" if where else name) for name, value in data.items()}
    return cls(**values)


def _coerce(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, where)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(arg, value, where)
            except UserError as error:
                errors.append(str(error))
        raise UserError(errors[0])
    if origin is Literal:
        if value not in args:
            raise UserError(f"{where}: expected one of {', '.join(map(str, args))}, got {value!r}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise UserError(f"{where}: expected a list, got {type(value).__name__}")
        return [_coerce(args[0], item, f"{where}[{i}]") for i, item in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise UserError(f"{where}: expected a mapping, got {type(value).__name__}")
        return {_coerce(args[0], k, f"{where} key"): _coerce(args[1], v, f"{where}[{k}]") for k, v in value.items()}
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is Any or (isinstance(value, hint) and not (hint is int and isinstance(value, bool))):
        return value
    raise UserError(f"{where}: expected {getattr(hint, '__name__', hint)}, got {value!r}")


class _YamlLoader(yaml.SafeLoader):
    """PyYAML's safe loader, but reading ``1e1`` and ``2.5E-1`` as the floats they are (YAML 1.2, and what
    ``float()`` and ``--analysis-fps`` accept), not as strings."""


_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)[eE][-+]?[0-9]+$"), list("-+.0123456789"))


def _parse_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_YamlLoader)


def pipeline_path(name_or_path: str) -> Path:
    """A pipeline YAML: a name shipped in ``pipelines/`` (a bare name, so a file or folder of that name in the working
    folder never stands in for it), or a path."""
    path = Path(name_or_path)
    shipped = resource_dir("pipelines")
    if path.name == name_or_path and not path.suffix and (shipped / f"{name_or_path}.yaml").is_file():
        return shipped / f"{name_or_path}.yaml"
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise UserError(f"pipeline file not found: {path}")
        return path
    candidate = shipped / f"{name_or_path}.yaml"
    if not candidate.is_file():
        names = sorted(p.stem for p in shipped.glob("*.yaml"))
        raise UserError(f"unknown pipeline {name_or_path!r}; shipped pipelines: {', '.join(names)}")
    return candidate


def load_pipeline(name_or_path: str = "lecture", overrides: list[str] | None = None) -> PipelineConfig:
    """Load a pipeline by name or path, then apply ``section.key=value`` overrides."""
    path = pipeline_path(name_or_path)
    try:
        data = _parse_yaml(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a pipeline YAML file (not UTF-8 text)") from None
    except yaml.YAMLError as error:
        raise UserError(f"{path}: not valid YAML ({str(error).splitlines()[0]})") from None
    for item in overrides or []:
        apply_override(data, item)
    try:
        return from_dict(PipelineConfig, data).validate()
    except UserError as error:
        raise UserError(f"{path}: {error}") from None


def apply_override(data: dict[str, Any], item: str) -> None:
    """Set ``a.b.c=value`` in nested ``data``; the value is parsed as YAML (numbers, booleans, lists)."""
    key, sep, raw = item.partition("=")
    if not sep or not key:
        raise UserError(f"override {item!r} must look like section.key=value")
    *parents, leaf = key.strip().split(".")
    node = data
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise UserError(f"override {item!r}: {part!r} is not a section")
    node[leaf] = _parse_yaml(raw)


def dump_pipeline(config: PipelineConfig) -> str:
    return yaml.safe_dump(to_dict(config), sort_keys=False)
