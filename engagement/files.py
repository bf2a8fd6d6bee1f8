"""Atomic file writes (a file either keeps its old content or has the whole new one, never half of it) and the
names of a run folder's files."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable

# The files of a run folder (``engagement process``). Other tools read them by these names: never rename one.
SESSION_JSON = "session.json"
SUMMARY_JSON = "summary.json"
TRACKS_PARQUET = "tracks.parquet"
STATES_PARQUET = "states.parquet"
SCORES_CSV = "scores.csv"
ANNOTATED_MP4 = "annotated.mp4"


def write_atomic(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> Path:
    """Call ``write`` with a binary stream on a hidden temporary file beside ``path``, then move the file into
    place with the mode a plain ``open`` would give it. On any error the temporary file is removed."""
    path = Path(path)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
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

