"""Atomic file writes (a file either keeps its old content or has the whole new one, never half of it), the checks of
an output file before any work, and the names of a run folder's files."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable, Mapping

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


def out_path(out: str | os.PathLike, kind: str, suffixes: tuple[str, ...], option: str = "--out",
             others: Mapping[str, str | os.PathLike | None] | None = None, make_folders: bool = False) -> Path:
    """An output file option checked before any work: a file with one of ``suffixes`` (a ``kind`` file) that
    ``output_file`` can write, and none of the ``others`` (what each is called -> its path: the inputs the command
    reads and its other outputs), which writing it would destroy."""
    path = Path(out)
    if path.suffix.lower() not in suffixes:
        raise UserError(f"{option} {path}: must be a {kind} file")
    for name, other in (others or {}).items():
        if other is not None and (path.resolve() == Path(other).resolve()
                                  or path.exists() and Path(other).exists() and path.samefile(other)):
            raise UserError(f"{option} {path}: the same file as {name} {other}; write it elsewhere")
    return output_file(path, make_folders)


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

