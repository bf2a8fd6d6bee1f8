"""Errors that reach the user as one line and a non-zero exit code, never a traceback."""

from __future__ import annotations

import os
import sys
from typing import Callable, NoReturn

IO_ERROR_EXIT = 74  # sysexits EX_IOERR: a file could not be read or written (disk full, read-only place, permissions)
INTERRUPTED_EXIT = 130  # 128 + SIGINT: the run was interrupted (Ctrl-C)


class UserError(Exception):
    """A problem with the user's input (file, config, camera, roster...): printed as one line, exit code 2."""

    exit_code = 2


class ModelNotFoundError(UserError):
    """Model weights could not be found locally and could not be downloaded."""


# A run completed, but its input decoded to fewer frames than the file declares (truncated or corrupt):
# the outputs are written and marked ``input_complete: false``; ``--allow-partial`` makes it exit 0.
EXIT_INCOMPLETE_INPUT = 3


class OutputError(UserError):
    """An output could not be written (disk full, read-only place): one line, exit code 74."""

    exit_code = IO_ERROR_EXIT


def require_utf8(text: str, advice: str) -> None:
    """A UserError when ``text`` (a file name from the command line) holds a byte that is not UTF-8, which Python
    keeps as a lone surrogate; the message shows that byte escaped and then ``advice``."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        shown = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        raise UserError(f"{shown}: not UTF-8 text; {advice}") from None


def error_line(error: BaseException, last: bool = False) -> str:
    """One line of a library's error message: its first non-empty line, or with ``last`` its last one (OpenCV and
    OpenVINO put context first); the error's type when it has no message."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return (lines[-1] if last else lines[0]) if lines else type(error).__name__


def os_error_reason(error: OSError) -> str:
    """The system's reason for a failed read or write, in one line ("No space left on device")."""
    return error.strerror or (os.strerror(error.errno) if error.errno else str(error).strip().splitlines()[0])


def os_error_line(error: OSError) -> str:
    """One line for a failed read or write: the file, when known, and the system's reason (no traceback, no data)."""
    return f"{os.fsdecode(error.filename)}: {os_error_reason(error)}" if error.filename else os_error_reason(error)


def run_reporting_errors(run: Callable[[], int | None], prog: str, reraise: bool = False) -> int:
    """Exit code of ``run()``: a user error or a failed read or write becomes one line on stderr and its exit code,
    an interrupt exit code 130 (the ``engagement`` command and the benchmark scripts; ``reraise`` keeps the
    traceback, for ``--verbose``)."""
    try:
        return int(run() or 0)
    except UserError as error:
        if reraise:
            raise
        print(f"{prog}: error: {error}", file=sys.stderr)
        return error.exit_code
    except OSError as error:
        if reraise:
            raise
        print(f"{prog}: error: {os_error_line(error)}", file=sys.stderr)
        return IO_ERROR_EXIT
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return INTERRUPTED_EXIT


def exit_with(code: int) -> NoReturn:
    """End the process with ``code`` (for ``python -m``). After an interrupt, end it at once: under ``python -m``
    CPython ends the process by SIGINT instead (exit status -2, not 130) when the interrupt passed through code run
    by ``exec`` or ``eval`` of a string, in a library, although ``run_reporting_errors`` handled it."""
    if code == INTERRUPTED_EXIT:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
