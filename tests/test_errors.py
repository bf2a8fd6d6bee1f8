"""One line and a non-zero exit, never a traceback: the ``engagement`` command and the benchmark scripts."""

import subprocess
import sys
from pathlib import Path

import pytest

from engagement.errors import INTERRUPTED_EXIT, IO_ERROR_EXIT, ModelNotFoundError, run_reporting_errors

REPOSITORY = Path(__file__).resolve().parents[1]


def fail_with(error: BaseException):
    def run() -> None:
        raise error
    return run


def test_user_and_file_errors_become_one_line_and_their_exit_codes(capsys: pytest.CaptureFixture[str]):
    assert run_reporting_errors(fail_with(ModelNotFoundError("model 'x' not found")), "tool") == 2
    missing = FileNotFoundError(2, "No such file or directory", "/in.mp4")
    assert run_reporting_errors(fail_with(missing), "tool") == IO_ERROR_EXIT
    assert run_reporting_errors(fail_with(KeyboardInterrupt()), "tool") == INTERRUPTED_EXIT == 130
    assert capsys.readouterr().err.splitlines() == [
        "tool: error: model 'x' not found", "tool: error: /in.mp4: No such file or directory", "tool: interrupted"]
    assert run_reporting_errors(lambda: None, "tool") == 0 and run_reporting_errors(lambda: 3, "tool") == 3


def test_reraise_keeps_the_traceback_and_other_errors_are_not_hidden():
    with pytest.raises(ModelNotFoundError):
        run_reporting_errors(fail_with(ModelNotFoundError("x")), "tool", reraise=True)
    with pytest.raises(ZeroDivisionError):  # a bug is not the user's input: its traceback stays
        run_reporting_errors(fail_with(ZeroDivisionError()), "tool")


def test_an_interrupt_through_exec_of_a_string_still_exits_130_under_python_m(tmp_path: Path):
    """``python -m engagement.cli`` after a Ctrl-C that passed through ``exec`` of a string (as a library may run):
    CPython would end the process by SIGINT (-2) at exit although the interrupt was handled (seen once in CI)."""
    (tmp_path / "interrupted_probe.py").write_text(
        "from engagement.errors import exit_with, run_reporting_errors\n"
        "exit_with(run_reporting_errors(lambda: exec('raise KeyboardInterrupt'), 'engagement'))\n")
    done = subprocess.run([sys.executable, "-m", "interrupted_probe"], capture_output=True, text=True, cwd=tmp_path,
                          timeout=120)
    assert (done.returncode, done.stderr) == (INTERRUPTED_EXIT, "engagement: interrupted\n")


def test_a_benchmark_missing_its_input_says_so_in_one_line(tmp_path: Path):
    done = subprocess.run([sys.executable, str(REPOSITORY / "benchmarks" / "webcam_segments.py"),
                           "--video", str(tmp_path / "lecture.mp4")], capture_output=True, text=True, cwd=tmp_path,
                          timeout=120)
    assert done.returncode == IO_ERROR_EXIT
    assert done.stderr == f"webcam_segments: error: {tmp_path / 'lecture.segments.csv'}: No such file or directory\n"


@pytest.mark.parametrize("args, message", [
    (["privacy-check", "a.mp4", "b.mp4", "--iou", "2"], "argument --iou: must be above 0 and at most 1, got 2"),
    (["privacy-check", "a.mp4", "b.mp4", "--iou", "nan"], "argument --iou: not a finite number: 'nan'"),
    (["privacy-check", "a.mp4", "b.mp4", "--max-frames", "0"], "argument --max-frames: must be at least 1, got 0"),
    (["classifier", "evaluate", "set", "--limit", "-3"], "argument --limit: must be at least 1, got -3"),
    (["classifier", "predict", "v.mp4", "--out", "p.csv", "--every-s", "inf"], "argument --every-s: not a finite number: 'inf'"),
    (["seats", "check", "v.mp4", "--out", "c.png", "--frame-time", "-1"], "argument --frame-time: must be 0 or more, got -1"),
    (["process", "v.mp4", "--out", "run", "--cpus-per-video", "0"], "argument --cpus-per-video: must be above 0, got 0"),
    (["process", "v.mp4", "--out", "run", "--retries", "-1"], "argument --retries: must be 0 or more, got -1"),
    (["process", "v.mp4", "--out", "run", "--gpus-per-video", "nan"], "argument --gpus-per-video: not a finite number: 'nan'"),
    (["process", "v.mp4", "--out", "run", "--resume", "--overwrite"], "argument --overwrite: not allowed with argument --resume"),
    (["live", "--duration", "x"], "argument --duration: not a number: 'x'"),
    (["generate", "sample", "model", "--eta", "-3", "--out", "s.npz"], "argument --eta: must be 0 or more, got -3"),
])
def test_a_bad_number_is_refused_before_any_work(args: list[str], message: str, capsys: pytest.CaptureFixture[str]):
    from engagement.cli import main

    with pytest.raises(SystemExit) as exited:
        main(args)
    command = " ".join(args[:2] if args[0] in ("classifier", "seats", "generate") else args[:1])
    assert exited.value.code == 2
    assert capsys.readouterr().err == f"engagement {command}: error: {message} (see engagement {command} --help)\n"


@pytest.mark.parametrize("args, prog, message", [
    ([], "engagement", "the following arguments are required: COMMAND"),
    (["--verbose", "nope"], "engagement", "argument COMMAND: invalid choice: 'nope'"),
    (["consent", "course", "add", "CS1"], "engagement consent course add", "the following arguments are required: --title"),
    (["process", "v.mp4", "--out", "run", "--blur", "some"], "engagement process", "argument --blur: invalid choice: 'some'"),
])
def test_every_parser_refuses_bad_arguments_in_one_line_without_the_usage(
        args: list[str], prog: str, message: str, capsys: pytest.CaptureFixture[str]):
    from engagement.cli import main

    with pytest.raises(SystemExit) as exited:
        main(args)
    err = capsys.readouterr().err
    assert exited.value.code == 2 and err.count("\n") == 1 and "usage:" not in err
    assert err.startswith(f"{prog}: error: {message}") and err.endswith(f" (see {prog} --help)\n")
