"""Anonymizer: head regions, mask holding, fail-closed face handling, and blur strength against YuNet."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from engagement.anonymize import Anonymizer, FaceDetector, box_iou, centres_inside, face_mask_boxes, obscure, scale_boxes
from engagement.config import METHOD_MIN_SCALE, AnonymizerConfig
from engagement.detections import KEYPOINT_INDEX, NUM_KEYPOINTS, Detections


def _person(box: list[float], head_points: dict[str, tuple[float, float]] | None = None, blur: bool = True) -> Detections:
    keypoints = np.zeros((1, NUM_KEYPOINTS, 3), np.float32)
    for name, (x, y) in (head_points or {}).items():
        keypoints[0, KEYPOINT_INDEX[name]] = (x, y, 0.9)
    return Detections.from_boxes(np.array([box], np.float32), keypoints=keypoints, blur=np.array([blur]))


def test_head_box_from_keypoints() -> None:
    person = _person([100, 100, 300, 500], {"nose": (200, 160), "left_eye": (210, 150), "right_eye": (190, 150), "left_ear": (225, 155)})
    (box,) = face_mask_boxes(person)
    centre = (box[:2] + box[2:]) / 2
    assert np.allclose(centre, [206.25, 153.75])
    assert box[2] - box[0] == pytest.approx(60)  # 0.3 x box width beats 1.6 x the 35 px keypoint spread


def test_head_box_falls_back_to_top_of_person() -> None:
    (box,) = face_mask_boxes(_person([100, 100, 200, 500], {"nose": (150, 130)}))  # one keypoint is too weak to use
    assert box.tolist() == [100, 100, 200, 200]


@pytest.fixture(scope="module")
def face_detector(models_dir: Path) -> FaceDetector:
    return FaceDetector(AnonymizerConfig().face_model, 0.5, 0, str(models_dir))


@pytest.mark.slow
@pytest.mark.parametrize("input_width", [0, 640])
def test_openvino_face_detector_matches_opencv(models_dir: Path, classroom_video: Path, input_width: int) -> None:
    from engagement.sources import read_frames

    name = AnonymizerConfig().face_model
    reference = FaceDetector(name, 0.5, input_width, str(models_dir), backend="opencv")
    fast = FaceDetector(name, 0.5, input_width, str(models_dir), backend="openvino")
    assert fast.backend == "openvino"
    for frame in itertools.islice(read_frames(classroom_video), 0, 12, 3):
        expected, found = reference(frame), fast(frame)
        assert len(expected) >= 15 and len(found) == len(expected)
        assert (box_iou(expected, found).max(axis=1) > 0.99).all()


@pytest.mark.slow
def test_mask_is_held_then_released(models_dir: Path) -> None:
    config = AnonymizerConfig(hold_s=0.5)
    anonymizer = Anonymizer(config, fps=10, models_dir=str(models_dir))
    frame = np.random.default_rng(0).integers(0, 255, (240, 320, 3), np.uint8)
    first = anonymizer.annotate(frame, _person([100, 50, 200, 230]), blur_all_faces=False)
    assert not np.array_equal(first[50:100, 100:200], frame[50:100, 100:200])
    assert np.array_equal(first[235:, :], frame[235:, :])  # pixels away from the head are untouched
    changed = []
    for _ in range(7):
        output = anonymizer.annotate(frame, Detections.empty(), blur_all_faces=False)
        changed.append(not np.array_equal(output[50:100, 100:200], frame[50:100, 100:200]))
    assert changed == [True] * 5 + [False] * 2  # held for 0.5 s = 5 frames at 10 fps after the last sighting


@pytest.mark.slow
def test_consenting_person_is_shown_others_fail_closed(models_dir: Path, classroom_frame: np.ndarray) -> None:
    height, width = classroom_frame.shape[:2]
    faces = Anonymizer(AnonymizerConfig(), 30, str(models_dir)).find_faces(classroom_frame, 0)
    assert len(faces) >= 10
    x0, y0, x1, y1 = faces[0]
    eyes_y, (cx, cy) = y0 + 0.4 * (y1 - y0), (faces[0, :2] + faces[0, 2:]) / 2
    head = {"nose": (cx, cy), "left_eye": (x0 + 0.7 * (x1 - x0), eyes_y), "right_eye": (x0 + 0.3 * (x1 - x0), eyes_y)}
    # a consenting person's box over the whole frame: the students the pose model missed inside it stay hidden
    consenting = _person([0, 0, width, height], head, blur=False)
    shown = Anonymizer(AnonymizerConfig(), 30, str(models_dir))
    output = shown.annotate(classroom_frame, consenting, blur_all_faces=False)
    visible = ~covered(shown.faces, shown.masks)
    assert visible.sum() == 1 and box_iou(shown.faces[visible], faces[:1])[0, 0] > 0.9
    assert np.array_equal(output[int(y0):int(y1), int(x0):int(x1)], classroom_frame[int(y0):int(y1), int(x0):int(x1)])
    nobody_placed = Anonymizer(AnonymizerConfig(), 30, str(models_dir))
    nobody_placed.annotate(classroom_frame, Detections.empty(), blur_all_faces=False)
    assert len(nobody_placed.faces) >= 10 and covered(nobody_placed.faces, nobody_placed.masks).all()
    policy_all = Anonymizer(AnonymizerConfig(), 30, str(models_dir))
    policy_all.annotate(classroom_frame, consenting, blur_all_faces=True)
    assert len(policy_all.faces) >= 10 and covered(policy_all.faces, policy_all.masks).all()


def test_one_face_is_shown_per_consenting_person() -> None:
    """Of two faces in a consenting person's head region, the one nearer its centre is shown, with any other box of
    that same face (found again in a turned frame); a face inside a hidden person's box is never shown, even in a
    consenting person's head region, and nor is another face there that does not hold the person's nose and eyes."""
    anonymizer = Anonymizer.__new__(Anonymizer)
    nearest, farther, elsewhere = [190, 140, 230, 180], [185, 130, 205, 150], [300, 140, 340, 180]
    found_again = [180, 130, 240, 190]  # the nearest face's box from a turned frame: IoU 0.44, centres in each other
    anonymizer.faces = np.array([nearest, farther, elsewhere, found_again], np.float32)
    student = _person([100, 100, 300, 500], {"nose": (210, 165), "left_eye": (220, 155), "right_eye": (200, 155)}, blur=False)
    assert anonymizer._faces_to_hide(student, np.array([False])).tolist() == [farther, elsewhere]
    overlapping = Detections.merge([student, _person([200, 100, 400, 500])])  # hidden; its box holds the nearest face
    everyone = [nearest, farther, elsewhere, found_again]
    assert anonymizer._faces_to_hide(overlapping, np.array([False, True])).tolist() == everyone
    assert anonymizer._faces_to_hide(Detections.empty(), np.zeros(0, bool)).tolist() == anonymizer.faces.tolist()


def test_a_face_in_a_consenting_head_region_that_is_not_theirs_stays_hidden() -> None:
    """The consenting student's own face is not found (turned away, or missed), while a classmate's face, whom the
    pose model missed, lies in their head region: the classmate is not shown in their place. Without the nose and
    eyes (a back of the head), nothing is shown."""
    anonymizer = Anonymizer.__new__(Anonymizer)
    classmate = [212, 130, 232, 150]  # centre (222, 140): inside the student's head region, away from their nose and eyes
    anonymizer.faces = np.array([classmate], np.float32)
    student = _person([100, 100, 300, 500], {"nose": (200, 170), "left_eye": (210, 160), "right_eye": (190, 160)}, blur=False)
    assert centres_inside(anonymizer.faces, face_mask_boxes(student)).all()
    assert anonymizer._faces_to_hide(student, np.array([False])).tolist() == [classmate]
    own_face = [180, 145, 225, 190]
    anonymizer.faces = np.array([classmate, own_face], np.float32)
    assert anonymizer._faces_to_hide(student, np.array([False])).tolist() == [classmate]
    back_of_head = _person([100, 100, 300, 500], {"left_ear": (215, 160), "right_ear": (185, 160)}, blur=False)
    assert anonymizer._faces_to_hide(back_of_head, np.array([False])).tolist() == [classmate, own_face]


def covered(faces: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Per face: whether some mask contains the whole face box."""
    return ((masks[None, :, :2] <= faces[:, None, :2]) & (masks[None, :, 2:] >= faces[:, None, 2:])).all(axis=2).any(axis=1)


def test_a_held_mask_never_shrinks_away_from_a_face_it_covered(models_dir: Path) -> None:
    """A new mask that overlaps a held one (the pose head box moving, a face found again a little off) absorbs it: the
    place the held mask covered stays covered until it expires."""
    anonymizer = Anonymizer(AnonymizerConfig(hold_s=1.0), fps=10, models_dir=str(models_dir))
    anonymizer._frame = 0
    anonymizer._hold(np.array([[100, 100, 200, 200]], np.float32))
    anonymizer._frame = 1
    anonymizer._hold(np.array([[130, 100, 230, 200]], np.float32))  # IoU 0.54 with the held mask
    assert covered(np.array([[100, 100, 200, 200]], np.float32), anonymizer.masks).all()
    assert len(anonymizer.masks) == 1  # absorbed, not piled up
    anonymizer._frame = 2
    anonymizer._hold(np.array([[400, 100, 500, 200]], np.float32))  # someone else: a mask of its own
    assert len(anonymizer.masks) == 2


def test_a_face_inside_a_held_mask_keeps_it_alive_instead_of_adding_one(models_dir: Path) -> None:
    """The face detector's box inside the person's head mask hides nothing new: no second mask to blur, and the
    head mask lives on while the face is seen, after the pose has lost the head."""
    anonymizer = Anonymizer(AnonymizerConfig(hold_s=0.2), fps=10, models_dir=str(models_dir))  # held 2 frames
    anonymizer._frame = 0
    anonymizer._hold(np.array([[100, 100, 200, 200], [130, 120, 170, 170]], np.float32))  # head, face inside it
    assert anonymizer.masks.tolist() == [[100, 100, 200, 200]]
    for frame in range(1, 6):  # the face alone, seen on every frame
        anonymizer._frame = frame
        anonymizer._hold(np.array([[130, 120, 170, 170]], np.float32))
    assert anonymizer.masks.tolist() == [[100, 100, 200, 200]]
    anonymizer._frame = 6
    anonymizer._hold(np.array([[150, 150, 260, 260]], np.float32))  # partly outside: a mask of its own
    assert len(anonymizer.masks) == 2


@pytest.mark.slow
@pytest.mark.parametrize("method", ["blur", "pixelate", "fill"])
def test_obscured_faces_are_no_longer_detected(method: str, classroom_frame: np.ndarray, face_detector: FaceDetector) -> None:
    faces = face_detector(classroom_frame)
    assert len(faces) >= 10
    hidden = classroom_frame.copy()
    for box in scale_boxes(faces, max(1.5, METHOD_MIN_SCALE[method])):
        obscure(hidden, box, method)
    after = face_detector(hidden)
    assert len(after) == 0 or not (box_iou(faces, after) >= 0.3).any()


@pytest.mark.parametrize("degrees", [90, 180, 270])
def test_unturn_boxes_undoes_each_turn(degrees: int) -> None:
    """A marked box turned with the frame comes back to the same pixels."""
    from engagement.anonymize import turn, unturn_boxes

    frame = np.zeros((60, 100), np.uint8)
    frame[10:20, 70:90] = 255
    turned = turn(frame, degrees)
    ys, xs = np.nonzero(turned)
    box = np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], np.float32)
    assert unturn_boxes(box, degrees, 100, 60).tolist() == [[70, 10, 90, 20]]


@pytest.mark.slow
@pytest.mark.parametrize("degrees", [90, 270])
def test_sideways_faces_are_found(models_dir: Path, classroom_frame: np.ndarray, degrees: int) -> None:
    """A classroom video turned sideways without rotation metadata: upright YuNet finds few of its faces, the turn
    probe finds each face at its place in the sideways frame, and keeps searching that turn after the probe."""
    from engagement.anonymize import turn, unturn_boxes

    sideways = turn(classroom_frame, degrees)
    height, width = classroom_frame.shape[:2]
    config = AnonymizerConfig(face_input_width=0)
    upright_faces = Anonymizer(config, fps=30, models_dir=str(models_dir)).find_faces(classroom_frame, 0)
    # Where those faces are in the sideways frame: turning back by the rest of the circle.
    expected = unturn_boxes(upright_faces, 360 - degrees, height, width)
    plain = Anonymizer(AnonymizerConfig(face_input_width=0, turned_faces_every_s=0), fps=30, models_dir=str(models_dir))
    assert len(plain.find_faces(sideways, 0)) < len(upright_faces) / 4
    anonymizer = Anonymizer(config, fps=30, models_dir=str(models_dir))
    found = anonymizer.find_faces(sideways, 0)
    assert len(upright_faces) >= 15 and (box_iou(expected, found).max(axis=1) > 0.7).all()
    assert len(anonymizer.find_faces(sideways, 1)) == len(found)  # the turn stays searched between probes


@pytest.mark.slow
def test_turns_showing_only_the_upright_faces_again_are_not_searched(models_dir: Path, classroom_frame: np.ndarray) -> None:
    """An upright classroom: the probe finds some of the upright faces in the turned frames too, which hides
    nothing new, so no turn is searched on the following frames (each search costs a face detector pass)."""
    anonymizer = Anonymizer(AnonymizerConfig(), fps=30, models_dir=str(models_dir))
    anonymizer.find_faces(classroom_frame, 0)  # frame 0 is a probe
    assert all(until < 1 for until in anonymizer._turn_until.values())
