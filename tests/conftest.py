"""Shared fixtures. Real assets (weights, videos, datasets) come from ``ENGAGEMENT_ASSETS``
(default: ``../shared`` beside the checkout); they are never copied into the repository."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

REPO = Path(__file__).resolve().parent.parent
POSTGRES_ENV = "ENGAGEMENT_TEST_POSTGRES"  # a postgresql+psycopg:// URL of a server where the tests may create databases
ASSETS = Path(os.environ.get("ENGAGEMENT_ASSETS", REPO.parent / "shared")).resolve()


def _missing(message: str) -> None:
    """Skip locally; fail in CI (``$CI`` set), which always provides assets and a PostgreSQL server."""
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def _require(path: Path) -> Path:
    if not path.exists():
        _missing(f"test asset missing: {path} (set ENGAGEMENT_ASSETS to the shared assets folder)")
    return path


@pytest.fixture(params=["sqlite", "postgresql"])
def registry_location(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str | Path]:
    """A new, empty registry on each backend: a SQLite file, or a database created for the test (and dropped after it)
    on the PostgreSQL server at ``$ENGAGEMENT_TEST_POSTGRES``."""
    if request.param == "sqlite":
        yield tmp_path / "registry.sqlite"
        return
    server = os.environ.get(POSTGRES_ENV)
    if not server:
        _missing(f"{POSTGRES_ENV} is not set (a postgresql+psycopg:// URL; .ci/run starts a server and sets it)")
    import sqlalchemy as sa

    name = f"engagement_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield sa.engine.make_url(server).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture(scope="session")
def assets() -> Path:
    return _require(ASSETS)


@pytest.fixture(scope="session")
def models_dir(assets: Path) -> Path:
    return _require(assets / "models")


@pytest.fixture(scope="session")
def hand_models(_models_env: None) -> Path:
    """The folder holding MediaPipe's hand models, which a package index serves rather than ../shared
    (`engagement models hands` installs them; .ci/run does)."""
    from engagement.models import HAND_MODELS, find_model

    found = [find_model(name) for name in HAND_MODELS]
    if None in found or len({path.parent for path in found}) != 1:
        _missing("hand models missing: run `engagement models hands` (.ci/run does)")
    return found[0].parent


@pytest.fixture(scope="session", autouse=True)
def _models_env() -> Iterator[None]:
    """Point model resolution at the shared models for every test, module fixtures included."""
    with pytest.MonkeyPatch.context() as patch:
        if (ASSETS / "models").is_dir():
            patch.setenv("ENGAGEMENT_MODELS", str(ASSETS / "models"))
        patch.setenv("YOLO_OFFLINE", "True")
        yield


@pytest.fixture(scope="session")
def ffmpeg() -> Callable[..., None]:
    """Run the ffmpeg command line (quiet, no stdin) with the given arguments; CI installs it, elsewhere a test
    that needs it is skipped."""
    import shutil
    import subprocess

    if shutil.which("ffmpeg") is None:
        if os.environ.get("CI"):
            pytest.fail("ffmpeg is missing (.ci/run installs it)")
        pytest.skip("ffmpeg is not installed")
    return lambda *args: subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", *map(str, args)], check=True)


@pytest.fixture(scope="session")
def classroom_video(assets: Path) -> Path:
    return _require(assets / "videos" / "classroom_front_class110.mp4")


@pytest.fixture(scope="session")
def classroom_frame(classroom_video: Path):
    """The first frame of the classroom video (BGR)."""
    from engagement.sources import read_frames

    return next(read_frames(classroom_video))


@pytest.fixture(scope="session")
def webcam_video(assets: Path) -> Path:
    return _require(assets / "videos" / "webcam_session_p2.mp4")


@pytest.fixture(scope="session")
def clip(webcam_video: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 3 seconds of the webcam video: the longest run a CLI test may make."""
    out = tmp_path_factory.mktemp("clip") / "clip.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(webcam_video), "-t", "3", "-an", "-c:v", "libx264", "-preset", "ultrafast", str(out)],
                   check=True, timeout=120)
    return out


@pytest.fixture(scope="session")
def cctv_dataset(assets: Path) -> Path:
    return _require(assets / "datasets" / "cctv_headstate")


@pytest.fixture(scope="session")
def webcam_dataset(assets: Path) -> Path:
    return _require(assets / "datasets" / "webcam_behaviour")


@pytest.fixture()
def browser(tmp_path: Path) -> Iterator[Any]:
    """Headless Chromium through chromedriver (CI installs both; elsewhere a test that needs them is skipped)."""
    webdriver = pytest.importorskip("selenium.webdriver")
    binary, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (binary and driver):
        if os.environ.get("CI"):
            pytest.fail("chromium and chromium-driver must be installed in CI (apt-get install chromium chromium-driver)")
        pytest.skip("chromium or chromedriver not installed (Debian: apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--autoplay-policy=no-user-gesture-required",
                 "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # console messages, for the tests that read them
    chrome = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver))
    try:
        yield chrome
    finally:
        chrome.quit()
