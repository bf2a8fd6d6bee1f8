"""Per-session engagement reports (HTML + PDF) and the course view across sessions.

``build_report`` and ``build_comparison`` are imported on first use, so that the CLI (which imports this
package for its ``report`` command) does not load matplotlib, pandas and OpenCV just to print ``--help``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["build_comparison", "build_report"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from engagement.report import builder

        return getattr(builder, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
