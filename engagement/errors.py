"""Errors that reach the user as one line and a non-zero exit code, never a traceback."""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input (file, config, camera, roster...): printed as one line, exit code 2."""

    exit_code = 2


class ModelNotFoundError(UserError):
    """Model weights could not be found locally and could not be downloaded."""


class MissingDependencyError(UserError):
    """An optional dependency is not installed; the message carries the install hint."""

    def __init__(self, package: str, purpose: str, extra: str | None = None) -> None:
        hint = f'pip install "classroom-engagement[{extra}]"' if extra else f"pip install {package}"
        super().__init__(f"{purpose} needs the '{package}' package: {hint}")
