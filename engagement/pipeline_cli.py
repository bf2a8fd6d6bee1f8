"""CLI commands for the video pipeline: ``process`` and ``live``."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``process`` and ``live``."""
