"""Atomic file writes (a file either keeps its old content or has the whole new one, never half of it) and the
names of a run folder's files."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable

from engagement.errors import UserError

# The files of a run folder (``engagement process``). Other tools read them by these names: never rename one.
SESSION_JSON = "session.json"
SUMMARY_JSON = "summary.json"
TRACKS_PARQUET = "tracks.parquet"
STATES_PARQUET = "states.parquet"
SCORES_CSV = "scores.csv"
ANNOTATED_MP4 = "annotated.mp4"


def output_file(path: str | os.PathLike, make_folders: bool = False) -> Path:
    """``path`` as a file that can be written: refuses, in one line naming it, a folder of that name and a folder to
    write in that does not exist (with ``make_folders``, for commands that create it: an ancestor that is a file).
    Commands call it before their work, so that a typo in ``--out`` does not cost the run."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path} is a folder: name a file to write")
    folder = path.parent
    while make_folders and not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.exists():
        raise UserError(f"cannot write {path}: folder {folder} does not exist")
    if not folder.is_dir():
        raise UserError(f"cannot write {path}: {folder} is not a folder")
    return path


def write_atomic(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> Path:
    """Call ``write`` with a binary stream on a hidden temporary file beside ``path``, then move the file into
    place with the mode a plain ``open`` would give it. On any error the temporary file is removed; errors name
    ``path``, never the temporary file."""
    path = output_file(path)
    try:
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as error:  # a folder that cannot be written in (permissions, read-only)
        error.filename = os.fspath(path)
        raise
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp creates 0600
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current

