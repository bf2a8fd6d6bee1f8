"""CLI command ``engagement report``: a session report per run, or ``--compare`` for a course view."""

from __future__ import annotations

import argparse
from pathlib import Path

from engagement.errors import UserError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``report``."""
    parser = subparsers.add_parser(
        "report",
        help="write report.html and report.pdf for a processed run",
        description="Write a self-contained report.html and a report.pdf (at most 3 pages) into each RUN_DIR, "
        "or with --compare a course view of several runs of one pipeline into --out (one page up to about 15 sessions).",
    )
    parser.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR", help="run directory from `engagement process`")
    parser.add_argument("--compare", action="store_true", help="one course view across all RUN_DIRs (needs --out)")
    parser.add_argument("--out", type=Path, help="output folder (default: each run directory; a session of a course in "
                        "the consent registry is reported into its run directory only)")
    parser.add_argument("--format", dest="formats", choices=("html", "pdf"), action="append",
                        help="write only this format (repeatable; default: both)")
    parser.set_defaults(handler=run_report)


def run_report(args: argparse.Namespace) -> int:
    from engagement.report.builder import FORMATS, build_comparison, build_report

    if args.compare:
        if args.out is None:
            raise UserError("--compare needs --out DIR for the course view")
        written = build_comparison(args.run_dirs, args.out)
    else:
        if args.out is not None and len(args.run_dirs) > 1:
            raise UserError("--out takes one RUN_DIR (or use --compare); without --out each report goes into its run")
        written = {}
        for run_dir in args.run_dirs:
            outputs = build_report(run_dir, tuple(args.formats or FORMATS), out_dir=args.out)
            written.update({f"{run_dir}:{kind}": path for kind, path in outputs.items()})
    for path in written.values():
        print(path)
    return 0
