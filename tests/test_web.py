"""The web app (``engagement serve``): every route with Flask's test client, its security rules, and headless
Chromium against a real server on 127.0.0.1 (synthetic runs; the live page's real models only in the slow test)."""

from __future__ import annotations

import datetime as dt
import io
import json
import re
import socket
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("flask")

from engagement.cli import main  # noqa: E402
from engagement.consent.registry import Registry  # noqa: E402
from engagement.consent.seatplan import Seat, SeatPlan  # noqa: E402
from engagement.errors import UserError  # noqa: E402
from engagement.states import STATES  # noqa: E402
from engagement.web.app import create_app, token_digest  # noqa: E402

COURSE = "BIO-101"
TOKEN = "a-long-enough-test-token"
FPS = 10.0


def make_run(folder: Path, seconds: int = 4, students: int = 3) -> Path:
    """A small run folder as ``engagement process`` writes it: session.json, summary.json, tracks and states
    tables, and an H.264 annotated video that browsers play."""
    from engagement.sinks import VideoWriter

    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    times = np.arange(0, seconds, 0.5)
    states = []
    for track in range(1, students + 1):
        probabilities = rng.dirichlet(np.ones(len(STATES)), len(times))
        table = pd.DataFrame(probabilities, columns=[f"p_{state}" for state in STATES])
        table.insert(0, "track_id", track)
        table.insert(0, "time_s", times)
        table.insert(0, "frame", (times * FPS).astype(int))
        table["state"] = np.array(STATES)[probabilities.argmax(axis=1)]
        states.append(table)
    states = pd.concat(states, ignore_index=True)
    states.to_parquet(folder / "states.parquet")
    states[["frame", "time_s", "track_id"]].assign(x1=10.0, y1=10.0, x2=50.0, y2=90.0).to_parquet(folder / "tracks.parquet")
    summary = {
        "session_score": 61.5, "people_excluded": 1, "timeline": [{"minute": 0, "score": 61.5, "n_students": students}],
        "state_share": states["state"].value_counts(normalize=True).to_dict(), "duration_s": float(seconds),
        "students": [{"track_id": track, "score": 60.0 + track, "dominant_state": "attentive"} for track in range(1, students + 1)],
    }
    session = {
        "created": "2026-10-05T09:00:00Z",
        "input": {"path": "/videos/lecture.mp4", "fps": FPS, "width": 160, "height": 120, "duration_s": float(seconds)},
        "config": {"name": "lecture", "consent": {"course": COURSE, "session": "week-01", "track_students": {"1": "S1"}}},
        "consent": {"course": COURSE, "people_excluded": 1},
        "tracking": {"confirmed_tracks": students + 1},
    }
    (folder / "summary.json").write_text(json.dumps(summary))
    (folder / "session.json").write_text(json.dumps(session))
    writer = VideoWriter(folder / "annotated.mp4", FPS, 160, 120)
    for index in range(int(seconds * FPS)):
        frame = np.full((120, 160, 3), 200, np.uint8)
        frame[:, (index * 4) % 160:(index * 4) % 160 + 20] = (180, 90, 30)  # a moving bar: every frame differs
        writer.write(frame)
    writer.close()
    return folder


@pytest.fixture()
def runs(tmp_path: Path) -> Path:
    make_run(tmp_path / "runs" / "week-01")
    (tmp_path / "secret.txt").write_text("outside the runs folder")
    return tmp_path / "runs"


@pytest.fixture()
def registry_path(tmp_path: Path, runs: Path) -> Path:
    path = tmp_path / "r.sqlite"
    with Registry.open(path) as registry:
        registry.add_course(COURSE, title="Biology")
        registry.add_approval(COURSE, "Instructor", "Dean", dt.date(2026, 9, 1), "lectures")
        registry.set_consent("S1", COURSE, "consented", name="Ada Example")
        registry.set_consent("S2", COURSE, "consented")
        registry.record_session(COURSE, dt.date(2026, 10, 5), runs / "week-01", None, {1: "S1", 2: "S2"})
    return path


@pytest.fixture()
def client(runs: Path, registry_path: Path) -> Any:
    app = create_app(runs, registry_path)
    yield app.test_client()
    app.extensions["registry"].close()


def csrf(client: Any, url: str = "/consent/") -> str:
    """The CSRF token of the client's session, from a form on ``url``."""
    return re.search(r'name="csrf_token" value="([^"]+)"', client.get(url).get_data(as_text=True)).group(1)


def statuses(registry_path: Path) -> dict[str, str]:
    with Registry.open(registry_path) as registry:
        return {record.student: record.status for record in registry.consent(COURSE)}


# --- sessions ---------------------------------------------------------------------------------------------------


def test_sessions_list_and_session_page(client: Any) -> None:
    listing = client.get("/").get_data(as_text=True)
    assert "BIO-101 - week-01" in listing and "2026-10-05" in listing and "61.5" in listing
    page = client.get("/sessions/week-01")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert '<video id="annotated"' in html and "/files/week-01/-/annotated.mp4" in html
    charts = re.findall(r'src="(/charts/week-01/-/\w+\.png)"', html)
    assert len(charts) == 3  # timeline, state shares, students over time: drawn on their own requests
    for chart in charts:
        image = client.get(chart)
        assert image.mimetype == "image/png" and image.data.startswith(b"\x89PNG")
    assert client.get("/charts/week-01/-/nothing.png").status_code == 404
    assert 'id="state-shares"' in html and "#3" in html
    assert all(f"/files/week-01/-/{name}" in html for name in ("states.parquet", "tracks.parquet", "summary.json"))
    assert "framing-notice" not in html


def test_session_page_warns_of_a_close_framing(client: Any, runs: Path) -> None:
    summary_file = runs / "week-01" / "summary.json"
    summary_file.write_text(json.dumps(json.loads(summary_file.read_text()) | {"framing": {"head_share": 0.9, "close": True}}))
    html = client.get("/sessions/week-01").get_data(as_text=True)
    assert 'id="framing-notice"' in html and "heads fill 90% of the frame" in html


def test_course_view_compares_the_course_sessions(client: Any, runs: Path, registry_path: Path) -> None:
    make_run(runs / "week-02", seconds=2)
    with Registry.open(registry_path) as registry:
        registry.record_session(COURSE, dt.date(2026, 10, 12), runs / "week-02", None, {})
    assert '/courses/BIO-101"' in client.get("/").get_data(as_text=True)
    html = client.get("/courses/BIO-101").get_data(as_text=True)
    assert html.count('href="/sessions/week-0') == 2
    charts = re.findall(r'src="(/courses/BIO-101/charts/\w+\.png)"', html)
    assert len(charts) == 2 and all(client.get(chart).data.startswith(b"\x89PNG") for chart in charts)
    assert client.get("/courses/NO-SUCH").status_code == 404


def test_no_browser_keeps_a_copy_of_what_describes_people(client: Any) -> None:
    """A cached page, chart or video would survive a withdrawal or the purge; the stylesheet may be cached."""
    chart = re.findall(r'src="(/charts/week-01/-/\w+\.png)"', client.get("/sessions/week-01").get_data(as_text=True))[0]
    for url in ("/", "/sessions/week-01", chart, "/files/week-01/-/annotated.mp4", "/files/week-01/-/states.parquet",
                "/consent/", "/courses/BIO-101", "/sessions/no-such-week"):
        assert client.get(url).headers.get("Cache-Control") == "no-store", url
    assert client.get("/static/app.css").headers.get("Cache-Control") != "no-store"


def test_names_and_urls_reach_the_pages_as_text_not_html(client: Any, registry_path: Path) -> None:
    """Every page escapes what it shows: a roster name, a course title and a URL path are text, never markup (a link
    that ran script in the page could take its CSRF token and withdraw a student)."""
    script = "<script>document.title='XSS'</script>"
    with Registry.open(registry_path) as registry:
        registry.set_consent("S9", COURSE, "consented", name=f"Bob {script}")
        registry.add_course("XSS-1", title="Intro <b>CS</b>")
    pages = {url: client.get(url).get_data(as_text=True) for url in (
        f"/consent/courses/{COURSE}", f"/consent/courses/{COURSE}/students/S9", "/consent/",
        "/sessions/%3Cscript%3Edocument.title%3D%27XSS%27%3C%2Fscript%3E", "/seats/%3Csvg%20onload%3Dalert(1)%3E")}
    for url, html in pages.items():
        assert "<script>document" not in html and "<svg onload" not in html and "<b>CS</b>" not in html, url
    assert "Bob &lt;script&gt;" in pages[f"/consent/courses/{COURSE}"] and "Intro &lt;b&gt;CS&lt;/b&gt;" in pages["/consent/"]


def test_a_course_run_the_registry_does_not_hold_is_neither_listed_nor_served(client: Any, runs: Path) -> None:
    """A copy of a course's run (or one whose registration failed) is out of reach of withdrawal and purge: the app
    names it and leaves it out rather than keep a withdrawn student's rows in view. A run of no course is shown."""
    import shutil

    shutil.copytree(runs / "week-01", runs / "copy of week-01")
    nowhere = make_run(runs / "no-course")
    session = json.loads((nowhere / "session.json").read_text())
    session["config"]["consent"]["course"] = session["consent"]["course"] = None
    (nowhere / "session.json").write_text(json.dumps(session))
    shutil.copytree(runs / "week-01", runs / "damaged")
    (runs / "damaged" / "session.json").write_text("{not json")  # its course cannot be told: left out too
    listing = client.get("/").get_data(as_text=True)
    assert 'id="unregistered-runs"' in listing and "Not shown: copy of week-01, damaged." in listing
    assert listing.index('id="unregistered-runs"') < listing.index('id="sessions"')  # named above the list
    assert "/sessions/copy%20of%20week-01" not in listing and "/sessions/no-course" in listing
    for url in ("/sessions/copy%20of%20week-01", "/files/copy%20of%20week-01/-/states.parquet",
                "/charts/copy%20of%20week-01/-/timeline.png", "/seats/R1/frame.png?source=copy%20of%20week-01",
                "/files/damaged/-/states.parquet", "/charts/damaged/-/timeline.png"):
        assert client.get(url).status_code == 404, url
    assert client.get("/sessions/no-course").status_code == 200


def test_unknown_session_is_a_404_page(client: Any) -> None:
    page = client.get("/sessions/no-such-week")
    assert page.status_code == 404 and "no session &#39;no-such-week&#39;" in page.get_data(as_text=True)


def test_video_is_served_with_ranges(client: Any, runs: Path) -> None:
    size = (runs / "week-01" / "annotated.mp4").stat().st_size
    part = client.get("/files/week-01/-/annotated.mp4", headers={"Range": "bytes=0-99"})
    assert part.status_code == 206 and part.headers["Content-Range"] == f"bytes 0-99/{size}" and len(part.data) == 100
    assert part.headers["Accept-Ranges"] == "bytes"


def test_files_outside_the_run_are_refused(client: Any, runs: Path) -> None:
    (runs / "week-01" / "link.txt").symlink_to(runs.parent / "secret.txt")
    for url in ("/files/week-01/-/../../secret.txt", "/files/week-01/-/..%2F..%2Fsecret.txt", "/files/week-01/-/link.txt",
                "/files/week-01/-//etc/passwd", "/files/..%2F/-/secret.txt", "/files/week-01/-/missing.csv",
                "/files/week-01/-/%00", "/files/week-01/-/" + "a" * 5000, "/live/recordings/live-%00"):
        response = client.get(url, follow_redirects=True)  # a doubled slash is first merged by a redirect
        assert response.status_code == 404, url
        assert b"outside the runs folder" not in response.data


def test_hidden_run_folders_are_neither_listed_nor_served(client: Any, runs: Path) -> None:
    """A run being written, or the previous run of an overwrite that a killed process left behind, is in no registry,
    so no withdrawal reaches it: the app must not show it."""
    import shutil

    shutil.copytree(runs / "week-01", runs / ".week-01.old.partial-4242@host")
    assert ".week-01.old" not in client.get("/").get_data(as_text=True)
    assert client.get("/files/.week-01.old.partial-4242@host/-/annotated.mp4").status_code == 404
    assert client.get("/sessions/.week-01.old.partial-4242@host").status_code == 404


def test_an_unexpected_error_is_an_error_page(client: Any, runs: Path) -> None:
    summary = json.loads((runs / "week-01" / "summary.json").read_text())
    (runs / "week-01" / "summary.json").write_text(json.dumps({**summary, "state_share": 5}))  # hand-edited nonsense
    page = client.get("/courses/BIO-101")
    assert page.status_code == 500 and "<h1>Error 500</h1>" in page.get_data(as_text=True)


# --- security ---------------------------------------------------------------------------------------------------


def test_a_post_without_the_csrf_token_is_refused(client: Any, registry_path: Path) -> None:
    response = client.post("/consent/courses/BIO-101/record", data={"student_id": "S9", "status": "opted_out"})
    assert response.status_code == 400 and "CSRF" in response.get_data(as_text=True)
    bad = client.post("/consent/courses/BIO-101/record", data={"student_id": "S9", "status": "opted_out", "csrf_token": "forged"})
    assert bad.status_code == 400
    assert "S9" not in statuses(registry_path)


def test_off_loopback_needs_a_token(runs: Path, registry_path: Path) -> None:
    with pytest.raises(UserError, match="without an access token"):
        create_app(runs, registry_path, host="0.0.0.0")
    app = create_app(runs, registry_path, host="0.0.0.0", token_hash=token_digest(TOKEN))
    client = app.test_client()
    assert client.get("/").status_code == 302 and client.get("/files/week-01/-/summary.json").status_code == 302
    assert client.get("/", headers={"Authorization": "Bearer wrong-token"}).status_code == 302
    assert client.get("/", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    token = csrf(client, "/login")
    assert client.post("/login", data={"token": "wrong", "csrf_token": token}).status_code == 401
    assert client.post("/login", data={"token": f" {TOKEN}\n", "csrf_token": token}).status_code == 302  # pasted, as the file is read
    assert client.get("/").status_code == 200
    app.extensions["registry"].close()


def test_serve_refusals_are_one_line(runs: Path, registry_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--runs", str(runs), "--registry", str(registry_path), "--host", "0.0.0.0"]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    (tmp_path / "token").write_text("short\n")
    assert main(["serve", "--runs", str(runs), "--registry", str(registry_path), "--host", "0.0.0.0",
                 "--token-file", str(tmp_path / "token")]) == 2
    assert "at least 16 characters" in capsys.readouterr().err
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        assert main(["serve", "--runs", str(runs), "--registry", str(registry_path), "--port", str(port)]) == 2
    error = capsys.readouterr().err
    assert error == f"engagement: error: port {port} on 127.0.0.1 is already in use (another engagement serve?); pick another with --port\n"
    for bad in ("-1", "70000"):
        with pytest.raises(SystemExit) as exited:
            main(["serve", "--runs", str(runs), "--port", bad])
        assert exited.value.code == 2
        assert capsys.readouterr().err == (f"engagement serve: error: argument --port: must be a port from 1 to 65535 (0: any free "
                                           f"port), got {bad} (see engagement serve --help)\n")


# --- consent ----------------------------------------------------------------------------------------------------


def test_consent_pages(client: Any) -> None:
    overview = client.get("/consent/").get_data(as_text=True)
    assert "/consent/courses/BIO-101" in overview and "2026-09-01 to 2027-09-01" in overview
    course = client.get("/consent/courses/BIO-101").get_data(as_text=True)
    assert "/consent/courses/BIO-101/students/S1" in course and "Ada Example" in course
    assert not [link for link in re.findall(r'(?:href|action)="([^"]+)"', course) if "Ada" in link]  # IDs only in URLs
    history = client.get("/consent/courses/BIO-101/students/S1").get_data(as_text=True)
    assert "consent consented" in history and "student added" in history
    assert client.get("/consent/courses/NOPE").status_code == 404
    assert client.get("/consent/courses/BIO-101/students/S404").status_code == 404
    assert "session recorded" in client.get("/consent/audit").get_data(as_text=True)


def test_record_consent_and_opt_out(client: Any, registry_path: Path) -> None:
    token = csrf(client)
    response = client.post("/consent/courses/BIO-101/record", data={"student_id": "S3", "status": "opted_out", "csrf_token": token},
                           follow_redirects=True)
    assert "S3: opted out" in response.get_data(as_text=True)
    refused = client.post("/consent/courses/BIO-101/record", data={"student_id": "no spaces", "status": "consented",
                                                                     "csrf_token": token}, follow_redirects=True)
    assert "not recorded: student_id: must match" in refused.get_data(as_text=True)
    assert client.post("/consent/courses/BIO-101/record", data={"student_id": "S1", "status": "withdrawn",
                                                                "csrf_token": token}).status_code == 400
    assert statuses(registry_path) == {"S1": "consented", "S2": "consented", "S3": "opted_out"}
    assert "recorded session" not in response.get_data(as_text=True)  # S3 is in no session
    later = client.post("/consent/courses/BIO-101/record", data={"student_id": "S1 ", "status": "opted_out", "csrf_token": token},
                        follow_redirects=True).get_data(as_text=True)  # a pasted ID with a space after it is S1
    assert "S1: opted out; from now on. 1 recorded session(s) keep their rows: withdraw the student to delete them" in later


def test_roster_with_one_bad_row_changes_nothing(client: Any, registry_path: Path) -> None:
    before = statuses(registry_path)
    roster = b"student_id,course,status\nS4,BIO-101,consented\nS5,BIO-101,maybe\nS6,BIO-101,opted_out\n"
    token = csrf(client)
    response = client.post("/consent/roster", data={"roster": (io.BytesIO(roster), "class.csv"), "csrf_token": token})
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "class.csv: 1 bad row(s), nothing imported" in html and "<li>line 3: status: must be one of" in html
    assert "tmp" not in html
    for name, content in (("photo.jpg", b"\xff\xd8\xff"), ("binary.csv", b"\x00\x01\x02")):
        refused = client.post("/consent/roster", data={"roster": (io.BytesIO(content), name), "csrf_token": token})
        assert refused.status_code == 400 and "not a CSV file" in refused.get_data(as_text=True)
    assert statuses(registry_path) == before
    good = client.post("/consent/roster", data={"roster": (io.BytesIO(roster.replace(b"maybe", b"consented")), "class.csv"),
                                                "csrf_token": token}, follow_redirects=True)
    assert "imported 3 consent record(s)" in good.get_data(as_text=True)
    assert statuses(registry_path)["S5"] == "consented"


def test_a_roster_neither_undoes_a_withdrawal_nor_keeps_a_withdrawn_students_rows(client: Any, runs: Path,
                                                                                     registry_path: Path) -> None:
    """Uploading the sign-up roster again re-consented a withdrawn student; a withdrawn row kept their rows."""
    with Registry.open(registry_path) as registry:
        registry.withdraw("S1")
    roster = b"student_id,course,status,name\nS1,BIO-101,consented,Ada Example\nS2,BIO-101,withdrawn,Bo Example\n"
    page = client.post("/consent/roster", data={"roster": (io.BytesIO(roster), "class.csv"), "csrf_token": csrf(client)},
                       follow_redirects=True).get_data(as_text=True)
    assert "S1 in BIO-101 is withdrawn since" in page and "imported 1 of 2 consent record(s)" in page
    assert "withdrawals cleaned 1 session(s)" in page and "Bo Example" not in page
    assert statuses(registry_path) == {"S1": "withdrawn", "S2": "withdrawn"}
    assert not (runs / "week-01" / "annotated.mp4").exists()
    assert 2 not in set(pd.read_parquet(runs / "week-01" / "states.parquet")["track_id"])


def test_withdrawal_confirms_then_removes_the_students_rows(client: Any, runs: Path, registry_path: Path) -> None:
    run = runs / "week-01"
    heatmap = client.get("/charts/week-01/-/heatmap.png").data  # drawn and kept in memory before the withdrawal
    confirm = client.get("/consent/courses/BIO-101/students/S1/withdraw").get_data(as_text=True)
    assert "session 1 held 2026-10-05 (week-01)" in confirm
    assert set(pd.read_parquet(run / "states.parquet")["track_id"]) == {1, 2, 3}  # nothing happens on GET
    done = client.post("/consent/courses/BIO-101/students/S1/withdraw", data={"csrf_token": csrf(client)})
    assert done.status_code == 200 and "row(s) removed; deleted annotated.mp4" in done.get_data(as_text=True)
    assert not client.application.extensions["charts"]  # no chart drawn from the student's rows stays in memory
    for table in ("states.parquet", "tracks.parquet"):
        assert set(pd.read_parquet(run / table)["track_id"]) == {2, 3}
    assert statuses(registry_path)["S1"] == "withdrawn"
    assert "Ada Example" not in client.get("/consent/courses/BIO-101").get_data(as_text=True)
    assert client.get("/charts/week-01/-/heatmap.png").data != heatmap  # drawn again without the student's rows
    with Registry.open(registry_path) as registry:
        entries = len(list(registry.audit_log()))
    again = client.post("/consent/courses/BIO-101/students/S1/withdraw", data={"csrf_token": csrf(client)})
    assert again.status_code == 200 and "Already withdrawn on" in again.get_data(as_text=True)
    with Registry.open(registry_path) as registry:
        assert len(list(registry.audit_log())) == entries  # a second submission records nothing


def test_a_withdrawal_that_fails_says_so_and_can_be_finished(client: Any, runs: Path, registry_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Cleaning a session fails (a read-only disk): the page says the student is withdrawn but not yet cleaned, the
    student's page offers to finish, and finishing it cleans the session."""
    import engagement.consent.outputs as outputs

    def read_only(*_: Any) -> None:
        raise PermissionError(13, "Permission denied", str(runs / "week-01" / "states.parquet"))

    monkeypatch.setattr(outputs, "remove_student", read_only)
    failed = client.post("/consent/courses/BIO-101/students/S1/withdraw", data={"csrf_token": csrf(client)})
    assert failed.status_code == 500 and "S1 is withdrawn, but cleaning their sessions failed" in failed.get_data(as_text=True)
    assert statuses(registry_path)["S1"] == "withdrawn"
    page = client.get("/consent/courses/BIO-101/students/S1").get_data(as_text=True)
    assert 'id="unfinished-withdrawal"' in page
    monkeypatch.undo()
    done = client.post("/consent/courses/BIO-101/students/S1/withdraw", data={"csrf_token": csrf(client)})
    assert done.status_code == 200 and set(pd.read_parquet(runs / "week-01" / "states.parquet")["track_id"]) == {2, 3}
    assert 'id="unfinished-withdrawal"' not in client.get("/consent/courses/BIO-101/students/S1").get_data(as_text=True)


def test_a_students_history_is_of_this_course(client: Any, registry_path: Path) -> None:
    with Registry.open(registry_path) as registry:
        registry.add_course("CHEM-2", title="Chemistry")
        registry.set_consent("S1", "CHEM-2", "opted_out", recorded_on=dt.date(2026, 9, 3))
    history = client.get("/consent/courses/BIO-101/students/S1").get_data(as_text=True)
    assert "consent consented" in history and "CHEM-2" not in history and "consent opted out" not in history
    assert "CHEM-2" in client.get("/consent/courses/CHEM-2/students/S1").get_data(as_text=True)


def days_keeping_week_01() -> int:
    """A purge age that keeps week-01 (held 2026-10-05) whatever today is."""
    return (dt.date.today() - dt.date(2026, 10, 5)).days + 1


def test_purge_previews_then_deletes(client: Any, runs: Path) -> None:
    by_policy = client.get("/consent/purge").get_data(as_text=True)
    assert f"BIO-101: held on or before {dt.date.today() - dt.timedelta(days=180)} (180 days, its retention)" in by_policy
    kept = client.get(f"/consent/purge?older_than={days_keeping_week_01()}").get_data(as_text=True)
    assert "Nothing to delete." in kept
    assert "Live recordings started on or before" in kept and "Delete these outputs" not in kept
    preview = client.get("/consent/purge?older_than=0&course=BIO-101").get_data(as_text=True)
    assert "session 1 of BIO-101 held 2026-10-05: annotated.mp4, session.json, states.parquet" in preview
    assert (runs / "week-01" / "session.json").is_file()
    assert client.get("/consent/purge?older_than=soon").status_code == 400
    assert "BIO-101: held on or before 0001-01-01 (" in client.get(f"/consent/purge?older_than={10**12}").get_data(as_text=True)
    for bad in ("\u00b2", "9" * 5000):  # a superscript digit; more digits than int() takes
        assert client.get("/consent/purge", query_string={"older_than": bad}).status_code == 400
    done = client.post("/consent/purge", data={"older_than": "0", "course": "BIO-101", "csrf_token": csrf(client)},
                       follow_redirects=True).get_data(as_text=True)
    assert "purged 1 session(s)<" in done and "live recording" not in done  # a course's purge leaves recordings alone
    assert not (runs / "week-01").exists()
    assert "No runs under the runs folder yet" in client.get("/").get_data(as_text=True)


def test_purge_goes_by_each_courses_retention_unless_days_are_given(client: Any, runs: Path, registry_path: Path) -> None:
    """Week-01 is younger than the policy's 180 days but older than BIO-101's own retention: the default purge takes it,
    as `engagement consent purge` does."""
    retention = days_keeping_week_01() - 1  # week-01 is held exactly this many days ago
    with Registry.open(registry_path) as registry:
        registry.add_course(COURSE, retention_days=retention)
    preview = client.get("/consent/purge").get_data(as_text=True)
    assert f"BIO-101: held on or before 2026-10-05 ({retention} days, its retention)" in preview
    assert "session 1 of BIO-101 held 2026-10-05" in preview
    assert "Nothing to delete." in client.get("/consent/purge?older_than=180").get_data(as_text=True)
    done = client.post("/consent/purge", data={"older_than": "", "course": "", "csrf_token": csrf(client)},
                       follow_redirects=True).get_data(as_text=True)
    assert "purged 1 session(s)" in done and not (runs / "week-01").exists()


def test_purge_deletes_live_recordings_for_all_courses_only(client: Any, runs: Path) -> None:
    recordings = runs / "live-recordings"
    recordings.mkdir()
    (recordings / "live-20200101-090000.mp4").write_bytes(b"")  # older than the policy's 180 days and week-01
    (recordings / "live-29990101-090000.mp4").write_bytes(b"")
    assert "live-20200101-090000.mp4" not in client.get("/consent/purge?course=BIO-101").get_data(as_text=True)
    preview = client.get("/consent/purge").get_data(as_text=True)
    assert "<li>live-20200101-090000.mp4</li>" in preview and "live-29990101" not in preview
    done = client.post("/consent/purge", data={"older_than": str(days_keeping_week_01()), "course": "",
                                               "csrf_token": csrf(client)}, follow_redirects=True).get_data(as_text=True)
    assert "purged 0 session(s) and 1 live recording(s)" in done
    assert [p.name for p in recordings.iterdir()] == ["live-29990101-090000.mp4"]
    assert (runs / "week-01").is_dir()


def test_live_page_without_a_source(client: Any) -> None:
    page = client.get("/live/").get_data(as_text=True)
    assert "taking notes" in page and 'id="live-view"' not in page
    assert client.get("/live/stats").get_json() == {"running": False, "error": None}
    stream = client.get("/live/stream.mjpg")
    assert stream.mimetype == "multipart/x-mixed-replace" and stream.data == b""  # nothing runs: the stream ends
    assert client.post("/live/start", data={"source": "", "csrf_token": csrf(client, "/live/")}, follow_redirects=True).status_code == 200


# --- seat plans ------------------------------------------------------------------------------------------------

SEAT = {"name": "A1", "polygon": [[10, 60], [70, 60], [70, 110], [10, 110]], "participating": True}


def saved_plan(registry_path: Path, room: str = "R1") -> dict | None:
    with Registry.open(registry_path) as registry:
        return registry.seat_plan(room).to_dict() if room in registry.rooms() else None


def test_seat_plan_pages_draw_on_a_session_frame(client: Any, registry_path: Path, runs: Path) -> None:
    import cv2

    assert "No seat plans yet" in client.get("/seats/").get_data(as_text=True)
    assert client.get("/seats/?room=R1").headers["Location"].endswith("/seats/R1")
    page = client.get("/seats/R1").get_data(as_text=True)
    assert 'id="seat-canvas"' in page and "session week-01" in page
    frame = client.get("/seats/R1/frame.png?source=week-01&t=1")
    assert frame.mimetype == "image/png" and cv2.imdecode(np.frombuffer(frame.data, np.uint8), cv2.IMREAD_COLOR).shape == (120, 160, 3)
    assert client.get("/seats/R1/frame.png?source=no-such-run").status_code == 404
    assert client.get("/seats/R1/frame.png?source=week-01&t=inf").status_code == 404
    session = json.loads((runs / "week-01" / "session.json").read_text())
    session["config"]["consent"]["blur"] = "none"  # a run that shows every face: never a reference frame
    (runs / "week-01" / "session.json").write_text(json.dumps(session))
    refused = client.get("/seats/R1/frame.png?source=week-01&t=1")
    assert refused.status_code == 404 and "consent.blur none" in refused.get_data(as_text=True)
    assert client.get("/seats/%20R1").status_code == 404  # would save over R1's plan once stripped
    plan = {"width": 160, "height": 120, "seats": [SEAT, {**SEAT, "name": "A2", "participating": False,
                                                        "polygon": [[80, 60], [150, 60], [150, 110]]}]}
    saved = client.post("/seats/R1", data={"plan": json.dumps(plan), "csrf_token": csrf(client, "/seats/R1")}, follow_redirects=True)
    assert "seat plan saved (2 seats, 1 non-participating)" in saved.get_data(as_text=True)
    assert saved_plan(registry_path)["seats"][1]["participating"] is False
    listing = client.get("/seats/").get_data(as_text=True)
    assert "R1" in listing and "A2" in listing
    exported = client.get("/seats/R1/plan.yaml")
    assert exported.mimetype == "application/x-yaml" and "A2" in exported.get_data(as_text=True)
    assert client.get("/seats/R9/plan.yaml").status_code == 404


@pytest.mark.parametrize("plan, message", [
    ("{not json", "not valid JSON"),
    ("[" * 100_000, "not valid JSON"),  # nested deeper than the parser recurses
    (json.dumps({"width": 160, "height": 120, "seats": [{**SEAT, "participate": False}]}), "unknown key participate"),
    (json.dumps({"width": 160, "height": 120, "seats": [{**SEAT, "polygon": [[10, 60], [70, 60]]}]}), "at least 3 points"),
    (json.dumps({"width": 160, "height": 120, "seats": [{**SEAT, "polygon": [[10, 60], [700, 60], [10, 90]]}]}), "outside the 160x120"),
])
def test_a_malformed_seat_plan_changes_nothing(client: Any, registry_path: Path, plan: str, message: str) -> None:
    page = client.post("/seats/R1", data={"plan": plan, "csrf_token": csrf(client, "/seats/R1")}, follow_redirects=True)
    assert f"not saved: " in page.get_data(as_text=True) and message in page.get_data(as_text=True)
    assert saved_plan(registry_path) is None


def test_a_stored_plan_that_a_newer_check_refuses_is_named_and_can_be_drawn_again(client: Any, registry_path: Path) -> None:
    """A bow tie stored before crossing edges were refused: the pages name it instead of failing, and a new plan replaces it."""
    bow_tie = Seat("A1", ((10.0, 60.0), (70.0, 60.0), (10.0, 110.0), (70.0, 110.0)), True)
    with Registry.open(registry_path) as registry:
        registry.save_seat_plan(SeatPlan("R1", 160, 120, (bow_tie,)))
    listing = client.get("/seats/")
    assert listing.status_code == 200 and "cannot be used" in listing.get_data(as_text=True)
    assert "edges cross" in listing.get_data(as_text=True) and "No seat plans yet" not in listing.get_data(as_text=True)
    editor = client.get("/seats/R1")
    assert editor.status_code == 200 and "draw the plan again" in editor.get_data(as_text=True)
    exported = client.get("/seats/R1/plan.yaml")
    assert exported.status_code == 404 and "edges cross" in exported.get_data(as_text=True)
    plan = {"width": 160, "height": 120, "seats": [SEAT]}
    client.post("/seats/R1", data={"plan": json.dumps(plan), "csrf_token": csrf(client, "/seats/R1")})
    assert saved_plan(registry_path)["seats"][0]["polygon"] == SEAT["polygon"]
    assert "cannot be used" not in client.get("/seats/").get_data(as_text=True)


def test_a_non_video_upload_is_refused(client: Any) -> None:
    token = csrf(client, "/seats/R1")
    page = client.post("/seats/R1/upload", data={"video": (io.BytesIO(b"not a video"), "notes.mp4"), "csrf_token": token},
                       content_type="multipart/form-data", follow_redirects=True).get_data(as_text=True)
    assert "not used: notes.mp4" in page and "the uploaded video" not in page
    assert client.get("/seats/R1/frame.png?source=uploaded").status_code == 404


@pytest.mark.slow
def test_an_uploaded_video_gives_a_reference_frame_with_no_face(client: Any, classroom_video: Path, classroom_frame: np.ndarray) -> None:
    import cv2

    from engagement.anonymize import FaceDetector
    from engagement.config import AnonymizerConfig
    from engagement.privacy import LEAK_CONFIDENCE

    token = csrf(client, "/seats/R1")
    with classroom_video.open("rb") as video:
        page = client.post("/seats/R1/upload", data={"video": (video, "room.mp4"), "t": "0", "csrf_token": token},
                           content_type="multipart/form-data", follow_redirects=True).get_data(as_text=True)
    assert "the uploaded video" in page and "source=uploaded" in page
    image = cv2.imdecode(np.frombuffer(client.get("/seats/R1/frame.png?source=uploaded").data, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == classroom_frame.shape
    detector = FaceDetector(AnonymizerConfig().face_model, LEAK_CONFIDENCE, backend="opencv")
    assert len(detector(classroom_frame)) >= 3 and len(detector(image)) == 0


# --- a real server and headless Chromium ----------------------------------------------------------------------


@pytest.fixture()
def server(runs: Path, registry_path: Path) -> Iterator[str]:
    """The app on 127.0.0.1 and a free port, in a thread; its address."""
    from werkzeug.serving import make_server

    app = create_app(runs, registry_path)
    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.port}"
    finally:
        if "live" in app.extensions:
            app.extensions["live"].stop()
        httpd.shutdown()
        thread.join()
        app.extensions["registry"].close()


def wait_for(condition: Any, seconds: float) -> Any:
    """Poll ``condition`` until it is truthy; its last value."""
    deadline = time.monotonic() + seconds
    while not (value := condition()) and time.monotonic() < deadline:
        time.sleep(0.2)
    return value


def element_text(browser: Any, element_id: str) -> str:
    """The element's text, or "" while the page is being replaced (a form's redirect, or a script swapping the node
    between finding it and reading it, which Chromium reports as a node that "does not belong to the document")."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException, WebDriverException

    try:
        return browser.find_element("id", element_id).text
    except (NoSuchElementException, StaleElementReferenceException):
        return ""
    except WebDriverException as error:
        if "does not belong to the document" in str(error):
            return ""
        raise


def test_browser_lists_sessions_and_plays_the_video(server: str, browser: Any) -> None:
    browser.get(server + "/")
    assert browser.title == "Sessions - classroom engagement"
    browser.find_element("link text", "BIO-101 - week-01").click()
    assert wait_for(lambda: browser.execute_script("return document.readyState") == "complete", 10)
    assert browser.execute_script("return Array.from(document.images).every(image => image.naturalWidth > 0)")
    browser.execute_script("const video = document.getElementById('annotated'); video.play();")
    assert wait_for(lambda: browser.execute_script("return document.getElementById('annotated').readyState") >= 2, 10)
    assert wait_for(lambda: browser.execute_script("return document.getElementById('annotated').currentTime") > 0.3, 10)
    assert browser.execute_script("return document.getElementById('annotated').error") is None


def test_browser_runs_no_script_from_a_link(server: str, browser: Any) -> None:
    browser.get(server + "/sessions/%3Cscript%3Edocument.title%3D%27XSS%27%3C%2Fscript%3E")
    assert wait_for(lambda: browser.execute_script("return document.readyState") == "complete", 10)
    assert browser.title != "XSS" and "<script>document.title='XSS'</script>" in browser.find_element("tag name", "main").text


@pytest.mark.slow
def test_browser_live_page_shows_frames_and_records(server: str, browser: Any, webcam_video: Path, runs: Path,
                                                     hand_models: Path) -> None:
    import cv2

    browser.get(server + "/live/")
    source = browser.find_element("id", "source")
    source.clear()
    source.send_keys(str(webcam_video))
    browser.find_element("id", "record").click()
    browser.find_element("id", "start").click()
    assert wait_for(lambda: browser.execute_script(
        "const view = document.getElementById('live-view'); return view !== null && view.naturalWidth > 0"), 120), \
        element_text(browser, "live-stats")
    assert wait_for(lambda: "fps shown" in element_text(browser, "live-stats"), 10)
    assert wait_for(lambda: "/ 100" in element_text(browser, "live-stats"), 30)  # the class score over the last minute

    def frames_shown() -> int:  # from the page's own stats endpoint, as its script reads it
        return browser.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "fetch(document.getElementById('live-stats').dataset.url, {cache: 'no-store'})"
            ".then(answer => answer.json()).then(stats => done(stats.frames || 0)).catch(() => done(0));")

    assert wait_for(lambda: frames_shown() >= 10, 30)  # stopping after the first few frames would race the score
    shown = frames_shown()
    browser.find_element("id", "stop").click()
    assert wait_for(lambda: element_text(browser, "live-stats") == "stopped", 10)
    (recording,) = (runs / "live-recordings").glob("live-*.mp4")
    capture = cv2.VideoCapture(str(recording))
    assert capture.get(cv2.CAP_PROP_FRAME_COUNT) >= shown  # every frame shown before the stop is in the recording
    capture.release()
    assert wait_for(lambda: recording.name in element_text(browser, "recordings"), 10)


def test_browser_draws_a_seat_by_clicks_and_saves_it(server: str, browser: Any, registry_path: Path) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    browser.get(server + "/seats/R1?source=week-01")
    assert wait_for(lambda: browser.execute_script("return document.getElementById('reference').naturalWidth") == 160, 10)
    browser.set_window_size(1280, 1400)
    canvas = browser.find_element("id", "seat-canvas")
    browser.execute_script("arguments[0].scrollIntoView()", canvas)
    shown = canvas.size["width"] / 160
    for x, y in ((20, 70), (60, 70), (60, 100), (20, 100)):  # reference-frame pixels, as offsets from the canvas centre
        ActionChains(browser).move_to_element_with_offset(canvas, round((x - 80) * shown), round((y - 60) * shown)).click().perform()
    browser.find_element("id", "seat-name").send_keys("A1")
    browser.find_element("id", "seat-participating").click()  # a non-participating seat
    browser.find_element("id", "add-seat").click()
    assert "seat A1 added" in browser.find_element("id", "seat-message").text
    browser.find_element("id", "save").click()
    assert wait_for(lambda: "seat plan saved" in browser.page_source, 10)
    (seat,) = saved_plan(registry_path)["seats"]
    assert seat["name"] == "A1" and seat["participating"] is False and len(seat["polygon"]) == 4
    assert np.allclose(seat["polygon"], [[20, 70], [60, 70], [60, 100], [20, 100]], atol=2)


def test_browser_seat_editor_says_when_a_session_has_no_video(server: str, browser: Any, runs: Path) -> None:
    """A session whose annotated video a withdrawal deleted: it is not offered, and asked for by URL the editor says
    why there is no frame instead of showing a blank canvas whose plan could only be refused."""
    (runs / "week-01" / "annotated.mp4").unlink()
    browser.get(server + "/seats/R1")
    assert "session week-01" not in browser.find_element("id", "source").text
    browser.get(server + "/seats/R1?source=week-01")
    assert wait_for(lambda: "could not be loaded" in browser.find_element("id", "seat-message").text, 10)
    assert not browser.find_element("id", "save").is_enabled()


def test_browser_roster_upload_with_a_bad_row_names_it(server: str, browser: Any, registry_path: Path, tmp_path: Path) -> None:
    roster = tmp_path / "class.csv"
    roster.write_text("student_id,course,status\nS4,BIO-101,consented\nS5,BIO-101,maybe\n")
    before = statuses(registry_path)
    browser.get(server + "/consent/")
    browser.find_element("css selector", "input[name=roster]").send_keys(str(roster))
    browser.find_element("css selector", "form[action='/consent/roster'] button").click()
    assert wait_for(lambda: "nothing imported" in browser.page_source, 10)
    assert "line 3: status: must be one of" in browser.find_element("tag name", "main").text
    assert statuses(registry_path) == before


def test_browser_withdrawal_removes_the_students_rows(server: str, browser: Any, runs: Path, registry_path: Path) -> None:
    browser.get(server + "/consent/courses/BIO-101/students/S1/withdraw")
    assert "week-01" in browser.find_element("id", "affected").text
    browser.find_element("id", "confirm-withdraw").click()
    assert wait_for(lambda: "row(s) removed" in browser.page_source, 10)
    for table in ("states.parquet", "tracks.parquet"):
        assert set(pd.read_parquet(runs / "week-01" / table)["track_id"]) == {2, 3}
    assert statuses(registry_path)["S1"] == "withdrawn"
