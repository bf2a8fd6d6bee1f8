"""Pose geometry on synthetic keypoints, head boxes, head crops and the feature extractor's contract."""

from __future__ import annotations

import numpy as np
import pytest

from engagement.detections import KEYPOINT_INDEX, Detections
from engagement.face import euler_from_matrix
from engagement.features import (
    CALIBRATED_FEATURES, CALIBRATION_MIN_FRAMES, FEATURE_NAMES, FRAME_FEATURES, HEAD_FEATURES, POSE_FEATURES,
    RELATIVE_FEATURES, FeatureExtractor, TrackCalibration, head_boxes, head_crop_features, pose_features,
    session_relative,
)


def person(**overrides: tuple[float, float]) -> np.ndarray:
    """(1, 17, 3) keypoints of an upright person facing the camera; ``name=(x, y)`` moves a point,
    ``name=None`` hides it."""
    points = {
        "nose": (100, 50), "left_eye": (110, 40), "right_eye": (90, 40), "left_ear": (120, 45), "right_ear": (80, 45),
        "left_shoulder": (140, 100), "right_shoulder": (60, 100), "left_elbow": (150, 150), "right_elbow": (50, 150),
        "left_wrist": (150, 200), "right_wrist": (50, 200), "left_hip": (130, 220), "right_hip": (70, 220),
    }
    points.update(overrides)
    keypoints = np.zeros((1, 17, 3), np.float32)
    for name, point in points.items():
        if point is not None:
            keypoints[0, KEYPOINT_INDEX[name]] = (*point, 0.9)
    return keypoints


BOX = np.array([[40, 20, 160, 240]], np.float32)


def feature(keypoints: np.ndarray, name: str) -> float:
    return float(pose_features(keypoints, BOX)[0, POSE_FEATURES.index(name)])


def test_frontal_upright_person_geometry() -> None:
    kp = person()
    assert feature(kp, "head_yaw") == pytest.approx(0.0)
    assert feature(kp, "head_roll") == pytest.approx(0.0)
    assert feature(kp, "head_above_shoulders") == pytest.approx(50 / 80)  # 50 px above, shoulder width 80
    assert feature(kp, "head_below_shoulders") == 0.0
    assert feature(kp, "lean") == pytest.approx(0.0)
    assert feature(kp, "wrist_above_shoulder") < 0
    assert feature(kp, "left_elbow_angle") == pytest.approx(180.0 - np.degrees(np.arctan2(10, 50)), abs=0.1)


def test_turned_head_gives_signed_yaw() -> None:
    assert feature(person(nose=(116, 50)), "head_yaw") == pytest.approx(0.4)
    assert feature(person(nose=(84, 50)), "head_yaw") == pytest.approx(-0.4)


def test_head_down_below_shoulder_line() -> None:
    kp = person(nose=(100, 110), left_eye=(110, 100), right_eye=(90, 100), left_ear=(120, 95), right_ear=(80, 95))
    assert feature(kp, "head_below_shoulders") == 1.0
    assert feature(kp, "head_above_shoulders") < 0


def test_raised_hand_and_hand_at_face() -> None:
    assert feature(person(left_wrist=(150, 20)), "wrist_above_shoulder") == pytest.approx(1.0)
    assert feature(person(right_wrist=(100, 60)), "wrist_near_face") == pytest.approx(10 / 80)


def test_leaning_torso_has_lean_angle() -> None:
    kp = person(left_shoulder=(180, 100), right_shoulder=(100, 100))  # shoulders shifted 40 px right of hips
    assert feature(kp, "lean") == pytest.approx(np.degrees(np.arctan2(40, 120)), abs=0.1)


def test_missing_parts_are_nan_not_invented() -> None:
    kp = person(nose=None, left_ear=None, right_ear=None, left_hip=None, right_hip=None,
                left_wrist=None, right_wrist=None)
    row = dict(zip(POSE_FEATURES, pose_features(kp, BOX)[0]))
    assert row["has_nose"] == 0.0 and row["has_left_hip"] == 0.0
    for name in ("head_yaw", "lean", "wrist_above_shoulder", "wrist_near_face", "nose_above_ears"):
        assert np.isnan(row[name]), name
    assert np.isfinite(row["head_roll"])  # both eyes are still there


def test_head_box_falls_back_to_top_of_person_box() -> None:
    hidden = person(nose=None, left_eye=None, right_eye=None, left_ear=None, right_ear=None)
    box = head_boxes(hidden, BOX)[0]
    assert box[1] == pytest.approx(BOX[0, 1])
    assert (box[0] + box[2]) / 2 == pytest.approx(100)
    around_face = head_boxes(person(), BOX)[0]
    assert around_face[0] < 80 and around_face[2] > 120  # covers both ears


def test_head_crop_outside_frame_is_missing() -> None:
    frame = np.random.default_rng(0).integers(0, 255, (100, 100, 3), np.uint8)
    assert np.isnan(head_crop_features(frame, np.array([200, 200, 240, 240]))).all()
    inside = head_crop_features(frame, np.array([10, 10, 60, 60]))
    assert inside.shape == (len(HEAD_FEATURES),) and np.isfinite(inside).all()


def test_euler_angles_of_a_yaw_rotation() -> None:
    angle = np.radians(30)
    rotation = np.array([[np.cos(angle), 0, np.sin(angle)], [0, 1, 0], [-np.sin(angle), 0, np.cos(angle)]])
    assert euler_from_matrix(rotation) == pytest.approx([30.0, 0.0, 0.0], abs=1e-4)


def test_extractor_marks_small_faces_missing_and_tracks_motion() -> None:
    extractor = FeatureExtractor()  # faces below min_face_px never reach the landmarker
    frame = np.full((300, 300, 3), 128, np.uint8)
    detections = Detections.from_boxes(BOX, keypoints=person(), track_id=np.array([7]))
    first = extractor(frame, detections, time_s=0.0)
    assert first.shape == (1, len(FEATURE_NAMES)) and first.dtype == np.float32
    assert first[0, FEATURE_NAMES.index("has_face")] == 0.0
    assert np.isnan(first[0, FEATURE_NAMES.index("jawOpen")])
    assert np.isnan(first[0, FEATURE_NAMES.index("head_motion")])
    moved = Detections.from_boxes(BOX + np.array([40, 0, 40, 0], np.float32),
                                  keypoints=person() + np.array([40, 0, 0], np.float32), track_id=np.array([7]))
    second = extractor(frame, moved, time_s=0.5)
    assert second[0, FEATURE_NAMES.index("box_motion")] == pytest.approx(40 / 80 / 0.5)
    assert extractor(frame, Detections.empty(), 1.0).shape == (0, len(FEATURE_NAMES))


@pytest.mark.slow
def test_face_adapter_on_a_real_webcam_frame(webcam_dataset) -> None:
    import cv2

    from engagement.face import BLENDSHAPES, FaceAnalyzer

    frame = cv2.imread(str(webcam_dataset / "frames" / "neutralface" / "neutralface_lowlight_0_00000.jpg"))
    assert frame is not None
    analyzer = FaceAnalyzer()
    result = analyzer(frame)
    assert result is not None and result.blendshapes.shape == (len(BLENDSHAPES),)
    assert np.all((result.blendshapes >= 0) & (result.blendshapes <= 1))
    assert np.all(np.abs(result.head_pose) < 45)  # a person facing the webcam
    assert analyzer(np.zeros((120, 120, 3), np.uint8)) is None  # no face: marked missing, not invented
    analyzer.close()


def test_tracked_faces_are_reanalysed_every_face_refresh_s(monkeypatch: pytest.MonkeyPatch) -> None:
    from engagement.config import ClassifierConfig
    from engagement.face import BLENDSHAPES, FaceResult
    from engagement.features import FeatureExtractor

    calls = []

    def analyse(crop: np.ndarray) -> FaceResult:
        calls.append(crop.shape)
        return FaceResult(np.full(len(BLENDSHAPES), len(calls), np.float32), np.zeros(3, np.float32))

    monkeypatch.setattr(FeatureExtractor, "face", property(lambda self: analyse))
    extractor = FeatureExtractor(ClassifierConfig(face_refresh_s=0.5, min_face_px=10))
    frame = np.zeros((300, 300, 3), np.uint8)
    people = Detections.from_boxes(np.array([[50, 50, 150, 290], [160, 50, 260, 290]], np.float32))
    people.track_id = np.array([7, -1])  # a tracked person and an untracked one
    first_blendshape = FEATURE_NAMES.index(BLENDSHAPES[0])
    analysed = [extractor(frame, people, t)[:, first_blendshape] for t in (0.0, 0.2, 0.4, 0.6, 0.8)]
    # the tracked face is analysed at 0.0 and 0.6 only; the untracked one on every frame
    assert [int(row[0]) for row in analysed] == [1, 1, 1, 5, 5]
    assert len(calls) == 2 + 5
    extractor.forget(7)
    assert int(extractor(frame, people, 1.0)[0, first_blendshape]) == 8


def face_frames(n: int, seed: int) -> np.ndarray:
    """(n, len(FRAME_FEATURES)) rows with a face and random calibrated values."""
    rows = np.full((n, len(FRAME_FEATURES)), np.nan, np.float32)
    rows[:, FRAME_FEATURES.index("has_face")] = 1.0
    columns = [FRAME_FEATURES.index(name) for name in CALIBRATED_FEATURES]
    rows[:, columns] = np.random.default_rng(seed).normal(2.0, 3.0, size=(n, len(columns)))
    return rows


def test_track_calibration_is_causal_per_track_and_needs_a_baseline() -> None:
    rows = face_frames(CALIBRATION_MIN_FRAMES + 5, seed=0)
    calibration = TrackCalibration()
    relative = np.concatenate([calibration(np.array([3]), rows[i:i + 1]) for i in range(len(rows))])
    assert relative.shape == (len(rows), len(RELATIVE_FEATURES))
    assert np.isnan(relative[: CALIBRATION_MIN_FRAMES - 1]).all()  # too little history: missing, not invented
    column = FRAME_FEATURES.index("jawOpen")
    seen = rows[:CALIBRATION_MIN_FRAMES + 2, column]  # history up to and including frame MIN + 1
    expected = (seen[-1] - seen.mean()) / (seen.std() + 1e-3)
    assert relative[CALIBRATION_MIN_FRAMES + 1, RELATIVE_FEATURES.index("rel_jawOpen")] == pytest.approx(expected, rel=1e-4)
    # another track, an untracked row and a row without a face get nothing from track 3's baseline
    others = rows[:3].copy()
    others[2, FRAME_FEATURES.index("has_face")] = 0.0
    assert np.isnan(calibration(np.array([4, -1, 3]), others)).all()
    calibration.forget(3)
    assert np.isnan(calibration(np.array([3]), rows[:1])).all()


def test_reused_face_rows_are_compared_but_not_added_to_the_baseline() -> None:
    rows = face_frames(CALIBRATION_MIN_FRAMES, seed=2)
    learning, repeating = TrackCalibration(), TrackCalibration()
    for i in range(len(rows)):
        learning(np.array([1]), rows[i:i + 1])
        repeating(np.array([1]), rows[i:i + 1])
        repeating(np.array([1]), rows[i:i + 1], learn=np.array([False]))  # the same face result, reused
    probe = face_frames(1, seed=3)
    np.testing.assert_array_equal(repeating(np.array([1]), probe), learning(np.array([1]), probe))


def test_session_relative_is_what_the_running_baseline_converges_to() -> None:
    rows = face_frames(30, seed=1)
    calibration = TrackCalibration()
    for i in range(len(rows)):
        last = calibration(np.array([0]), rows[i:i + 1])
    np.testing.assert_allclose(session_relative(rows)[-1], last[0], rtol=1e-4, atol=1e-5)
    rows[5, FRAME_FEATURES.index("has_face")] = 0.0
    assert np.isnan(session_relative(rows)[5]).all()


def test_session_baseline_learns_only_from_fresh_faces_but_scores_every_face() -> None:
    rows = face_frames(30, seed=4)
    fresh = np.arange(30) % 3 != 0  # every third row repeats an earlier face result
    with_repeats = session_relative(rows, learn=fresh)
    np.testing.assert_allclose(with_repeats[fresh], session_relative(rows[fresh]), rtol=1e-5)
    assert np.isfinite(with_repeats[~fresh]).any()  # repeated rows are still compared with the baseline
    assert not np.allclose(with_repeats, session_relative(rows), equal_nan=True)
