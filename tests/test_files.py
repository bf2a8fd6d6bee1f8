"""Atomic writes: the old content survives a failed write, and no temporary file is left behind."""

import os
import tempfile
from pathlib import Path

import pytest

from engagement.errors import UserError, os_error_line
from engagement.files import output_file, write_atomic


def test_write_replaces_the_file_with_the_usual_mode(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    target.write_text("old")
    assert write_atomic(target, lambda stream: stream.write(b"new")) == target
    assert target.read_text() == "new"
    plain = tmp_path / "plain"
    plain.write_text("")
    assert target.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777  # not mkstemp's 0600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json", "plain"]


def test_failed_write_keeps_the_old_content(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    target.write_text("old")

    def half_write(stream) -> None:
        stream.write(b"ne")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_atomic(target, half_write)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


@pytest.mark.parametrize("name, message", [
    ("folder", "{tmp}/folder is a folder: name a file to write"),
    ("missing/out.json", "cannot write {tmp}/missing/out.json: folder {tmp}/missing does not exist"),
    ("file/out.json", "cannot write {tmp}/file/out.json: {tmp}/file is not a folder"),
])
def test_a_destination_that_cannot_be_a_file_is_named_not_the_temporary_file(tmp_path: Path, name: str, message: str) -> None:
    (tmp_path / "folder").mkdir()
    (tmp_path / "file").write_text("")
    with pytest.raises(UserError) as raised:
        write_atomic(tmp_path / name, lambda stream: stream.write(b"new"))
    assert str(raised.value) == message.format(tmp=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "folder"] and not any((tmp_path / "folder").iterdir())


def test_a_folder_that_cannot_be_written_in_is_named_by_the_destination(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refused(dir: Path, prefix: str, suffix: str) -> tuple[int, str]:  # as a read-only folder refuses (the tests run as root)
        raise PermissionError(13, "Permission denied", os.path.join(dir, f"{prefix}x1y2z3{suffix}"))

    monkeypatch.setattr(tempfile, "mkstemp", refused)
    with pytest.raises(PermissionError) as raised:
        write_atomic(tmp_path / "out.json", lambda stream: stream.write(b"new"))
    assert os_error_line(raised.value) == f"{tmp_path / 'out.json'}: Permission denied"


def test_output_file_checks_the_folders_a_command_would_create(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    assert output_file(tmp_path / "new" / "deeper" / "out.csv", make_folders=True) == tmp_path / "new" / "deeper" / "out.csv"
    with pytest.raises(UserError, match=f"^cannot write {tmp_path}/file/new/out.csv: {tmp_path}/file is not a folder$"):
        output_file(tmp_path / "file" / "new" / "out.csv", make_folders=True)
