"""Errors that reach the user as one line and a non-zero exit code, never a traceback."""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input (file, config, camera, roster...): printed as one line, exit code 2."""

    exit_code = 2


class ModelNotFoundError(UserError):
    """Model weights could not be found locally and could not be downloaded."""


# A run completed, but its input decoded to fewer frames than the file declares (truncated or corrupt):
# the outputs are written and marked ``input_complete: false``; ``--allow-partial`` makes it exit 0.
EXIT_INCOMPLETE_INPUT = 3
