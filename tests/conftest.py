"""Shared fixtures. Real assets (weights, videos, datasets) come from ``ENGAGEMENT_ASSETS``
(default: ``../shared`` beside the checkout); they are never copied into the repository."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import pytest

REPO = Path(__file__).resolve().parent.parent
ASSETS = Path(os.environ.get("ENGAGEMENT_ASSETS", REPO.parent / "shared")).resolve()


def _require(path: Path) -> Path:
    if not path.exists():
        message = f"test asset missing: {path} (set ENGAGEMENT_ASSETS to the shared assets folder)"
        if os.environ.get("CI"):
            pytest.fail(message)  # CI always has the assets: a missing one is a failure, not a skip
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def assets() -> Path:
    return _require(ASSETS)


@pytest.fixture(scope="session")
def models_dir(assets: Path) -> Path:
    return _require(assets / "models")


@pytest.fixture(scope="session", autouse=True)
def _models_env() -> Iterator[None]:
    """Point model resolution at the shared models for every test, module fixtures included."""
    with pytest.MonkeyPatch.context() as patch:
        if (ASSETS / "models").is_dir():
            patch.setenv("ENGAGEMENT_MODELS", str(ASSETS / "models"))
        patch.setenv("YOLO_OFFLINE", "True")
        yield


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
def cctv_dataset(assets: Path) -> Path:
    return _require(assets / "datasets" / "cctv_headstate")


@pytest.fixture(scope="session")
def webcam_dataset(assets: Path) -> Path:
    return _require(assets / "datasets" / "webcam_behaviour")
