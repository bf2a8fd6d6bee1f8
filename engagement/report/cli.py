"""CLI commands of `engagement.report` (placeholder until the stage lands)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this module's commands to the `engagement` parser."""
