"""Atomic writes: the old content survives a failed write, and no temporary file is left behind."""

from pathlib import Path

import pytest

from engagement.files import write_atomic


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
