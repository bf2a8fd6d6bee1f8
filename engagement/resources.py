"""Locate the data folders that ship beside the package: pipelines/, consent/ and reports/."""

from __future__ import annotations

import sys
from pathlib import Path

RESOURCE_FOLDERS = ("pipelines", "consent", "reports")


def resource_dir(name: str) -> Path:
    """The folder ``name``: in a source checkout, beside the package; in a wheel install, under share/."""
    if name not in RESOURCE_FOLDERS:
        raise ValueError(f"unknown resource folder {name!r}")
    candidates = [
        Path(__file__).resolve().parent.parent / name,
        Path(sys.prefix) / "share" / "classroom-engagement" / name,
    ]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"resource folder {name!r} not found in: {', '.join(map(str, candidates))}")
