"""Consent forms (one-page PDF), roster validation and the `engagement consent` commands."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest
from pypdf import PdfReader

from engagement.cli import main
from engagement.consent.forms import load_policy, read_roster, render_form
from engagement.consent.outputs import LIVE_RECORDING_NAME
from engagement.consent.registry import Registry
from engagement.consent.status import STATUSES
from engagement.errors import UserError
from engagement.resources import resource_dir

EXAMPLE_ROSTER = resource_dir("consent") / "example_roster.csv"


def _values(**extra: object) -> dict:
    return {**load_policy(), "course": "DEMO-101", "course_title": None, "delete_source": False, "instructor": None, "scope": None, **extra}


@pytest.mark.parametrize("kind", ["form", "approval"])
def test_pdf_is_one_page_with_every_section(kind: str, tmp_path: Path) -> None:
    # The longest realistic values must still fit on one page.
    out = render_form(kind, tmp_path / f"{kind}.pdf", **_values(course_title="Introduction to Long Course Titles " * 3, instructor="Dr. Example"))
    reader = PdfReader(out)
    assert len(reader.pages) == 1
    text = reader.pages[0].extract_text()
    sections = ["Purpose", "Sharing", "Contact"] + (["Data collected", "Storage duration", "withdraw", "Signature"] if kind == "form" else ["Scope", "Approver"])
    for section in sections:
        assert section in text, section


def test_html_and_markdown_forms(tmp_path: Path) -> None:
    html = render_form("form", tmp_path / "form.html", **_values(contact="privacy@example.edu <b>")).read_text()
    assert "privacy@example.edu &lt;b&gt;" in html and "@page" in html
    markdown = render_form("form", tmp_path / "form.md", **_values()).read_text()
    assert markdown.startswith("# Consent") and "180 days" in markdown


@pytest.mark.parametrize("content, match", [
    ("form_version: '2026.1'\ninstitution: Universit\xe9\n".encode("latin-1"), "cannot read consent policy"),
    (b"- form_version\n- institution\n", "expected a mapping of"),
    (b"form_version: [\n", "cannot read consent policy"),
])
def test_a_policy_file_an_institution_broke_is_one_line(tmp_path: Path, content: bytes, match: str) -> None:
    """Saved in Latin-1 or as a list, the edited policy was a traceback (UnicodeDecodeError, TypeError)."""
    policy = tmp_path / "policy.yaml"
    policy.write_bytes(content)
    with pytest.raises(UserError, match=match):
        load_policy(policy)


def test_rosters_and_the_registry_spell_the_same_statuses() -> None:
    schema = json.loads((resource_dir("consent") / "roster.schema.json").read_text())
    assert tuple(schema["properties"]["status"]["enum"]) == STATUSES


def test_unknown_form_suffix(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"\.pdf"):
        render_form("form", tmp_path / "form.docx", **_values())


def test_example_roster_is_valid() -> None:
    records = read_roster(EXAMPLE_ROSTER)
    assert {r.status for r in records} == {"consented", "opted_out"}


def test_bad_roster_reports_every_bad_line(tmp_path: Path) -> None:
    roster = tmp_path / "roster.csv"
    roster.write_text(
        "student_id,course,status,date\n"
        "P-1,C1,consented,2026-09-01\n"
        "bad id!,C1,consented,\n"
        "P-3,C1,maybe,2026-02-30\n"
        "P-4,C1\n"
        "P-5,C1,opted_out,\n"
    )
    with pytest.raises(UserError) as error:
        read_roster(roster)
    message = str(error.value)
    assert "3 bad row(s)" in message and "\n" not in message
    assert "line 3: student_id" in message and "line 4:" in message and "calendar date" in message and "line 5:" in message
    assert "line 2" not in message and "line 6" not in message


@pytest.mark.parametrize(
    "content, match",
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe", "not a CSV"),
        (b"name;phone\nx;y\n", "header"),
        (b"student_id,course,status\n", "no rows"),
        # the last student_id column won: S2 was recorded as consenting
        (b"student_id,course,status,student_id\nS1,C1,consented,S2\n", "line 1: header names student_id twice"),
    ],
)
def test_not_a_roster(tmp_path: Path, content: bytes, match: str) -> None:
    roster = tmp_path / "roster.csv"
    roster.write_bytes(content)
    with pytest.raises(UserError, match=match):
        read_roster(roster)


def test_cli_import_list_set_withdraw(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    registry = str(tmp_path / "registry.sqlite")
    assert main(["consent", "import", str(EXAMPLE_ROSTER), "--registry", registry]) == 0
    assert main(["consent", "set", "P-0001", "opted_out", "--course", "DEMO-101", "--seat", "A1", "--registry", registry]) == 0
    assert main(["consent", "withdraw", "P-0002", "--registry", registry]) == 0
    capsys.readouterr()
    assert main(["consent", "list", "--course", "DEMO-101", "--json", "--registry", registry]) == 0
    rows = {row["student"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["P-0001"]["status"] == "opted_out" and rows["P-0001"]["seat"] == "A1"
    assert rows["P-0002"]["status"] == "withdrawn"
    assert main(["consent", "purge", "--older-than", "0", "--registry", registry]) == 0
    with Registry.open(registry) as opened:
        assert opened.opted_out_students("DEMO-101") == {"P-0001", "P-0002", "P-0003", "P-0005"}


def test_cli_reimporting_the_roster_undoes_no_opt_out_and_set_withdrawn_cleans(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The September roster again, after an opt-out and a withdrawal: both stand, each named on stderr, the rest is
    imported. ``consent set ... withdrawn`` cleans the student's sessions as ``consent withdraw`` does."""
    registry = str(tmp_path / "registry.sqlite")
    assert main(["consent", "import", str(EXAMPLE_ROSTER), "--registry", registry]) == 0
    assert main(["consent", "set", "P-0001", "opted_out", "--course", "DEMO-101", "--registry", registry]) == 0
    assert main(["consent", "withdraw", "P-0002", "--registry", registry]) == 0
    capsys.readouterr()
    assert main(["consent", "import", str(EXAMPLE_ROSTER), "--registry", registry]) == 0
    out, err = capsys.readouterr()
    rows = sum(1 for _ in EXAMPLE_ROSTER.open()) - 1
    assert f"imported {rows - 2} of {rows} consent record(s)" in out
    assert err.count("engagement: warning: ") == 2 and "P-0001 in DEMO-101 is opted out since" in err
    assert "P-0002 in DEMO-101 is withdrawn since" in err
    assert main(["consent", "set", "P-0002", "consented", "--course", "DEMO-101", "--registry", registry]) == 2
    assert "a new consent needs the date its form was signed" in capsys.readouterr().err
    with Registry.open(registry) as opened:
        assert {"P-0001", "P-0002"} <= opened.opted_out_students("DEMO-101")
        (tmp_path / "run").mkdir()
        opened.record_session("DEMO-101", datetime.now().date(), tmp_path / "run", None, {4: "P-0004", 5: "P-0005"})
    assert main(["consent", "set", "P-0004", "withdrawn", "--course", "DEMO-101", "--registry", registry]) == 0
    assert capsys.readouterr().out.strip() == "P-0004 in DEMO-101: withdrawn; cleaned 1 session(s)"
    assert main(["consent", "set", "P-0005", "opted_out", "--course", "DEMO-101", "--registry", registry]) == 0
    assert capsys.readouterr().out.strip() == ("P-0005 in DEMO-101: opted_out from now on; 1 recorded session(s) keep their "
                                               "rows: 'consent withdraw' deletes them")


def test_cli_bad_roster_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    registry = str(tmp_path / "registry.sqlite")
    roster = tmp_path / "roster.csv"
    roster.write_text("student_id,course,status\nP-1,C1,consented\nP-2,C1,unsure\n")
    assert main(["consent", "import", str(roster), "--registry", registry]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "line 3" in error
    with Registry.open(registry) as opened:
        assert opened.consent() == []


def test_cli_forms_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    registry = str(tmp_path / "registry.sqlite")
    out = tmp_path / "consent.pdf"
    assert main(["consent", "course", "add", "DEMO-101", "--title", "Demo", "--registry", registry]) == 0
    assert main(["consent", "form", "--course", "DEMO-101", "--out", str(out), "--registry", registry]) == 0
    assert len(PdfReader(out).pages) == 1
    (tmp_path / "taken.html").mkdir()
    assert main(["consent", "form", "--course", "DEMO-101", "--out", str(tmp_path / "taken.html"), "--registry", registry]) == 2
    assert capsys.readouterr().err == f"engagement: error: {tmp_path / 'taken.html'} is a folder: name a file to write\n"
    assert main(["consent", "approval", "--course", "DEMO-101", "--instructor", "Dr. Example", "--scope", "all lectures",
                 "--approver", "Dean Placeholder", "--registry", registry]) == 0
    with Registry.open(registry) as opened:
        assert opened.approvals("DEMO-101")[0]["scope"] == "all lectures"
    assert main(["consent", "list", "--registry", "nosuchdialect://x"]) == 2
    assert main(["consent", "purge", "--course", "NOPE", "--registry", registry]) == 2
    assert "engagement: error:" in capsys.readouterr().err


def test_cli_purge_with_the_runs_folder_deletes_old_live_recordings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    registry = str(tmp_path / "registry.sqlite")
    recordings = tmp_path / "runs" / "live-recordings"
    recordings.mkdir(parents=True)
    (recordings / "live-20200101-090000.mp4").write_bytes(b"")  # years older than the policy's retention
    today = recordings / datetime.now(timezone.utc).strftime(LIVE_RECORDING_NAME)
    today.write_bytes(b"")
    assert main(["consent", "purge", "--runs", str(tmp_path / "runs"), "--course", "X", "--registry", registry]) == 2
    assert main(["consent", "purge", "--runs", str(tmp_path / "nope"), "--registry", registry]) == 2
    assert capsys.readouterr().err.count("engagement: error:") == 2
    assert main(["consent", "purge", "--runs", str(tmp_path / "runs"), "--registry", registry]) == 0
    assert "purged 0 session(s) and 1 live recording(s)" in capsys.readouterr().out
    assert [p.name for p in recordings.iterdir()] == [today.name]


@pytest.mark.parametrize("command", [["list"], ["withdraw", "S1"], ["course", "list"], ["course", "show", "CS101"],
                                     ["form", "--course", "CS101", "--out", "form.md"]])
def test_a_mistyped_registry_is_an_error_not_an_empty_registry(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]) -> None:
    """A withdrawal against a registry that does not exist would withdraw nobody and say it worked."""
    missing = tmp_path / "regsitry.sqlite"
    assert main(["consent", *command, "--registry", str(missing)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and f"no consent registry at {missing}" in error
    assert list(tmp_path.iterdir()) == []
    assert main(["consent", "course", "add", "CS101", "--title", "Intro", "--registry", str(missing)]) == 0  # makes one


def test_cli_courses(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    registry = str(tmp_path / "registry.sqlite")
    assert main(["consent", "course", "add", "CS101", "--title", "Intro", "--retention-days", "30", "--delete-source", "--registry", registry]) == 0
    assert main(["consent", "approval", "--course", "CS101", "--instructor", "Dr. Example", "--scope", "fall lectures",
                 "--approver", "Dean Placeholder", "--approved-on", "2026-09-01", "--valid-until", "2027-01-31", "--registry", registry]) == 0
    assert main(["consent", "set", "S1", "consented", "--course", "CS101", "--registry", registry]) == 0
    assert main(["consent", "set", "S2", "opted_out", "--course", "CS101", "--registry", registry]) == 0
    capsys.readouterr()
    assert main(["consent", "course", "list", "--json", "--registry", registry]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row == {"code": "CS101", "title": "Intro", "retention": "30 days", "delete_source": True,
                   "approved_until": "2027-01-31", "sessions": 0}
    assert main(["consent", "course", "show", "CS101", "--registry", registry]) == 0
    shown = capsys.readouterr().out
    assert "2026-09-01 to 2027-01-31, scope 'fall lectures'" in shown and "1 consented, 1 opted_out" in shown
    assert "recordings deleted after analysis" in shown
    assert main(["consent", "course", "add", "CS101", "--title", "Intro", "--no-delete-source", "--registry", registry]) == 0
    with Registry.open(registry) as opened:
        assert opened.course("CS101")["delete_source"] is False and opened.course("CS101")["retention_days"] == 30


@pytest.mark.parametrize(
    "argv, match",
    [
        (["consent", "form", "--course", "NOPE", "--out", "{tmp}/f.md"], "consent course add NOPE --title"),
        (["consent", "approval", "--course", "NOPE", "--out", "{tmp}/a.md"], "consent course add NOPE --title"),
        (["consent", "approval", "--course", "NOPE", "--instructor", "I", "--scope", "s", "--approver", "A"], "consent course add NOPE"),
        (["consent", "course", "show", "NOPE"], "consent course add NOPE"),
        (["consent", "course", "add", "bad code", "--title", "T"], "course code"),
        (["consent", "course", "add", "CS2", "--title", "T", "--retention-days", "0"], "at least 1 day"),
        (["consent", "course", "add", "CS2", "--title", " "], "course CS2: the title is blank"),
        (["consent", "approval", "--course", "CS101", "--instructor", "I", "--scope", "s", "--approver", "A",
          "--approved-on", "2026-09-01", "--valid-until", "2026-08-01"], "cannot end"),
        (["consent", "approval", "--course", "CS101", "--out", "{tmp}/a.md", "--valid-until", "2027-01-01"], "describe a recorded approval"),
    ],
)
def test_cli_course_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], match: str) -> None:
    registry = str(tmp_path / "registry.sqlite")
    assert main(["consent", "course", "add", "CS101", "--title", "Intro", "--registry", registry]) == 0
    capsys.readouterr()
    assert main([arg.format(tmp=tmp_path) for arg in argv] + ["--registry", registry]) == 2
    error = capsys.readouterr().err
    assert match in error and error.count("\n") == 1
    assert not list(tmp_path.glob("*.md"))


def test_roster_listing_a_student_twice_in_a_course_names_both_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    registry = str(tmp_path / "registry.sqlite")
    roster = tmp_path / "roster.csv"
    roster.write_text("student_id,course,status\nP-1,C1,opted_out\nP-1,C2,consented\nP-2,C1,consented\n P-1 ,C1,consented\n")
    assert main(["consent", "import", str(roster), "--registry", registry]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "1 bad row(s)" in error and "line 5: the same student_id and course as line 2" in error
    assert "P-1" not in error
    with Registry.open(registry) as opened:
        assert opened.consent() == []


# Quotes, SQL, a 100-character ID, spaces, non-ASCII: IDs are pseudonyms of letters, digits, '_', '.', '-'.
BAD_IDS = ["P'1", 'P"1', "P1'; DROP TABLE students;--", "P1 OR 1=1", "A" * 100, "P%1", "Ädä", "-P1"]
GOOD_IDS = ["P-1", "a" * 64, "S.1_x"]


@pytest.mark.parametrize("student", BAD_IDS + GOOD_IDS)
def test_set_and_import_judge_an_id_alike(tmp_path: Path, student: str, capsys: pytest.CaptureFixture[str]) -> None:
    roster = tmp_path / "roster.csv"
    roster.write_text(f"student_id,course,status\n\"{student.replace(chr(34), chr(34) * 2)}\",C1,consented\n")
    imported = main(["consent", "import", str(roster), "--registry", str(tmp_path / "imported.sqlite")])
    set_ = main(["consent", "set", "--course", "C1", "--registry", str(tmp_path / "set.sqlite"), "--", student, "consented"])
    assert imported == set_ == (2 if student in BAD_IDS else 0)
    error = capsys.readouterr().err
    if student in BAD_IDS:
        assert error.count("\n") == 2 and error.count("student_id: must match") == 2 and student not in error
        with Registry.open(str(tmp_path / "set.sqlite")) as opened:
            assert opened.consent() == []


@pytest.mark.parametrize(
    "extra, match",
    [
        (["--course", "C 1"], "course: must match"),
        (["--course", "C1", "--date", "2026-02-30"], "date: not a calendar date"),
        (["--course", "C1", "--date", "tomorrow"], "date: must match"),
        (["--course", "C1", "--date", "2999-01-01"], "date: after today"),
        (["--course", "C1", "--name", "N" * 201], "name: longer than 200 characters"),
        (["--course", "C1", "--seat", "S" * 65], "seat: longer than 64 characters"),
        (["--course", "C1", "--form-version", "v\x012"], "form_version: must not hold control characters"),
        (["--course", "C1", "--seat", "A\t1"], "seat: must not hold control characters"),
        (["--course", "C1", "--name", "Ada\nLovelace"], "name: must not hold control characters"),
        (["--course", " "], "course: missing"),
    ],
)
def test_set_refuses_what_a_roster_refuses(tmp_path: Path, extra: list[str], match: str, capsys: pytest.CaptureFixture[str]) -> None:
    registry = str(tmp_path / "registry.sqlite")
    assert main(["consent", "set", "P-1", "consented", *extra, "--registry", registry]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and match in error and "Traceback" not in error
    with Registry.open(registry) as opened:
        assert opened.consent() == []
