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

import hashlib
import os
from pathlib import Path

from engagement.errors import ModelNotFoundError

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
