"""The ``engagement`` command line. Each stage module registers its own sub-commands."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import warnings
from typing import Iterator

from engagement import __version__
from engagement.arguments import OneLineParser
from engagement.errors import exit_with, require_utf8, run_reporting_errors


def build_parser() -> argparse.ArgumentParser:
    from engagement.classifier import cli as classifier_cli
    from engagement.consent import cli as consent_cli
    from engagement.generative import cli as generative_cli
    from engagement.report import cli as report_cli
    from engagement import models, pipeline_cli, seats
    from engagement.web import cli as web_cli

    parser = OneLineParser(prog="engagement", description="Privacy-respecting engagement analytics from classroom video.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _add_output_options(parser, argparse.SUPPRESS)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in (pipeline_cli, seats, consent_cli, classifier_cli, generative_cli, report_cli, web_cli, models):
        module.register(subparsers)
    for command in _leaf_parsers(parser):
        _add_output_options(command, argparse.SUPPRESS)
    parser.set_defaults(quiet=False, verbose=False)
    return parser


def _add_output_options(parser: argparse.ArgumentParser, default: object) -> None:
    """-q and -v, accepted before or after the command's name."""
    parser.add_argument("-q", "--quiet", action="store_true", default=default,
                        help="print only results and errors: no progress bars, no third-party log lines")
    parser.add_argument("-v", "--verbose", action="store_true", default=default,
                        help="log debug messages, third-party output and progress bars; show tracebacks")


def _leaf_parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """The parsers of every command that runs something (``engagement consent course add``, ...)."""
    groups = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    if not groups:
        yield parser
    for group in groups:
        for child in dict.fromkeys(group.choices.values()):  # aliases map to the same parser
            yield from _leaf_parsers(child)


def show_progress(args: argparse.Namespace) -> bool:
    """Progress bars: on a terminal unless --quiet; anywhere with -v."""
    return bool(args.verbose or (not args.quiet and sys.stderr.isatty()))


@contextlib.contextmanager
def native_output_silenced() -> Iterator[None]:
    """Send what native libraries write straight to file descriptor 2 (MediaPipe and TFLite, OpenVINO, FFmpeg)
    to /dev/null, while Python's own ``sys.stderr`` (our errors and closing lines) still reaches the terminal."""
    sys.stderr.flush()
    saved = os.dup(2)
    python_stderr = sys.stderr
    try:
        swap = python_stderr.fileno() == 2
    except (AttributeError, OSError, ValueError):  # already redirected in Python (a test's capture)
        swap = False
    if swap:
        sys.stderr = open(os.dup(saved), "w", buffering=1, encoding=python_stderr.encoding, errors="backslashreplace")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        if swap:
            sys.stderr.close()
            sys.stderr = python_stderr


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; user errors become one line on stderr and exit code 2, a file that cannot be read or written
    (disk full, read-only place) one line and exit code 74."""
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.ERROR if args.quiet else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", force=True)
    os.environ.setdefault("YOLO_VERBOSE", "True" if args.verbose else "False")
    if not args.verbose:  # FFmpeg's own line about a broken file would come before our one-line error
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    args.progress = show_progress(args)
    with contextlib.ExitStack() as stack:
        if args.quiet and not args.verbose:
            warnings.simplefilter("ignore")
            stack.enter_context(native_output_silenced())
        return run_reporting_errors(lambda: _utf8_arguments(sys.argv[1:] if argv is None else argv) or args.handler(args),
                                    "engagement", reraise=args.verbose)


def _utf8_arguments(argv: list[str]) -> None:
    """Refuse an argument that is not UTF-8 (a file name's stray byte) before any work: OpenCV ends the process on
    such a video name and pyarrow refuses such a folder."""
    for argument in argv:
        require_utf8(argument, "rename it (file and folder names must be UTF-8)")


if __name__ == "__main__":
    exit_with(main())
