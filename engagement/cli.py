"""The ``engagement`` command line. Each stage module registers its own sub-commands."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from engagement import __version__
from engagement.errors import IO_ERROR_EXIT, UserError, os_error_line


def build_parser() -> argparse.ArgumentParser:
    from engagement.classifier import cli as classifier_cli
    from engagement.consent import cli as consent_cli
    from engagement.generative import cli as generative_cli
    from engagement.report import cli as report_cli
    from engagement import pipeline_cli, seats

    parser = argparse.ArgumentParser(prog="engagement", description="Privacy-respecting engagement analytics from classroom video.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages and show tracebacks")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in (pipeline_cli, seats, consent_cli, classifier_cli, generative_cli, report_cli):
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; user errors become one line on stderr and exit code 2, a file that cannot be read or written
    (disk full, read-only place) one line and exit code 74."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("YOLO_VERBOSE", "False")
    try:
        return int(args.handler(args) or 0)
    except UserError as error:
        if args.verbose:
            raise
        print(f"engagement: error: {error}", file=sys.stderr)
        return error.exit_code
    except OSError as error:
        if args.verbose:
            raise
        print(f"engagement: error: {os_error_line(error)}", file=sys.stderr)
        return IO_ERROR_EXIT
    except KeyboardInterrupt:
        print("engagement: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
