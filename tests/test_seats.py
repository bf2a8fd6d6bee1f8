"""``engagement seats check``: seat zones drawn on one frame with every face blurred, and its one-line errors."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from engagement.annotate import ZONE_COLOR
from engagement.cli import main
from engagement.privacy import LEAK_CONFIDENCE

ZONE = "consent.opted_out_seats=[{name: back left, polygon: [[150, 250], [560, 230], [600, 420], [120, 450]]}]"


@pytest.mark.slow
def test_seats_check_draws_the_zone_and_leaves_no_face(classroom_video: Path, classroom_frame: np.ndarray, tmp_path: Path, capsys: pytest.CaptureFixture):
    from engagement.anonymize import FaceDetector, box_iou
    from engagement.config import AnonymizerConfig

    out = tmp_path / "seats.png"
    assert main(["seats", "check", str(classroom_video), "--out", str(out), "--set", ZONE, "--blur", "none"]) == 0
    assert "back left" in capsys.readouterr().out
    assert [p.name for p in tmp_path.iterdir()] == ["seats.png"]  # no temporary file left beside it
    image = cv2.imread(str(out))
    assert image.shape == classroom_frame.shape
    assert tuple(image[240, 355]) == ZONE_COLOR  # on the zone's top edge, halfway along
    detector = FaceDetector(AnonymizerConfig().face_model, LEAK_CONFIDENCE, backend="opencv")
    before, after = detector(classroom_frame), detector(image)
    assert len(before) >= 3  # the check means something only if the original frame shows faces
    leaked = box_iou(before, after) >= 0.3 if len(after) else np.zeros((len(before), 0), bool)
    assert not leaked.any(), f"faces still found at {before[leaked.any(axis=1)].round().tolist()}"


BAD = {  # VIDEO: the classroom video; TMP/name: a file in the test's folder
    "too few points": (["VIDEO", "--set", "consent.opted_out_seats=[{name: door, polygon: [[0, 0], [10, 10]]}]"], "'door'): a polygon needs at least 3 points"),
    "non-numeric point": (["VIDEO", "--set", "consent.opted_out_seats=[{name: door, polygon: [[0, 0], [x, 1], [2, 2]]}]"], "polygon[1][0]: expected float, got 'x'"),
    "unreadable video": (["TMP/notes.mp4"], "cannot be opened as a video"),
    "missing video": (["TMP/none.mp4"], "none.mp4: no such file"),
    "past the end": (["VIDEO", "--frame-time", "60"], "no frame could be read at 60 s (it is 5.0 s long)"),
    "not a png": (["VIDEO", "--out", "TMP/frame.jpg"], "must be a .png file"),
    "out is a folder": (["VIDEO", "--out", "TMP/taken.png"], "taken.png is a folder: name a file to write"),
    "out in no folder": (["VIDEO", "--out", "TMP/nodir/seats.png"], "nodir/seats.png: folder"),
    "missing models dir": (["VIDEO", "--models-dir", "/nonexistent"], "models_dir /nonexistent does not exist"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_seats_check_input_is_one_line_and_exit_2(case: str, classroom_video: Path, tmp_path: Path, capsys: pytest.CaptureFixture):
    (tmp_path / "notes.mp4").write_text("not a video\n")
    (tmp_path / "taken.png").mkdir()
    template, message = BAD[case]
    args = [str(classroom_video) if a == "VIDEO" else str(tmp_path / a[4:]) if a.startswith("TMP/") else a for a in template]
    if "--out" not in args:
        args += ["--out", str(tmp_path / "seats.png")]
    assert main(["seats", "check", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.mp4", "taken.png"]  # nothing written
    assert not any((tmp_path / "taken.png").iterdir())
