import numpy as np
import pytest

from engagement.detections import Detections


def make(n: int = 3) -> Detections:
    xyxy = np.array([[i * 10, 0, i * 10 + 5, 20] for i in range(n)], np.float32)
    return Detections.from_boxes(xyxy, confidence=np.linspace(0.5, 0.9, n), names=[f"p{i}" for i in range(n)], flag=np.arange(n) % 2 == 0)


def test_boolean_mask_filters_every_field():
    detections = make(4)
    kept = detections[detections.confidence > 0.7]
    assert len(kept) == 2
    assert kept.data["names"] == ["p2", "p3"]
    assert kept.data["flag"].tolist() == [True, False]
    assert kept.keypoints.shape == (2, 17, 3)


def test_integer_index_returns_detections():
    one = make(3)[1]
    assert isinstance(one, Detections) and len(one) == 1 and one.data["names"] == ["p1"]


def test_merge_and_empty():
    merged = Detections.merge([make(2), Detections.merge([]), make(3)])
    assert len(merged) == 5 and merged.data["names"][2] == "p0"
    assert len(Detections.empty()) == 0 and Detections.empty().xyxy.shape == (0, 4)


def test_merge_of_empty_parts_keeps_their_data_keys():
    empty = make(2)[np.zeros(2, bool)]
    merged = Detections.merge([empty, empty])
    assert len(merged) == 0 and set(merged.data) == {"names", "flag"}


def test_merge_rejects_mismatched_data():
    other = Detections.from_boxes(np.zeros((1, 4)))
    with pytest.raises(ValueError, match="data keys differ"):
        Detections.merge([make(1), other])


def test_shape_is_checked():
    with pytest.raises(ValueError, match="keypoints"):
        Detections(xyxy=np.zeros((2, 4)), confidence=np.zeros(2), track_id=np.zeros(2), keypoints=np.zeros((2, 5, 3)))
    with pytest.raises(ValueError, match="data"):
        Detections.from_boxes(np.zeros((2, 4)), extra=np.zeros(3))


def test_anchor_is_lower_middle():
    detections = Detections.from_boxes(np.array([[10, 20, 30, 60]]))
    assert detections.anchor.tolist() == [[20.0, 60.0]]
    assert detections.area.tolist() == [800.0]


class FakeTensor:
    def __init__(self, array):
        self.array = np.asarray(array, np.float32)

    def cpu(self):
        return self

    def numpy(self):
        return self.array

    def numel(self):
        return self.array.size


class FakeBoxes:
    def __init__(self, xyxy, conf, cls):
        self.xyxy, self.conf, self.cls = FakeTensor(xyxy), FakeTensor(conf), FakeTensor(cls)

    def __len__(self):
        return len(self.xyxy.array)


class FakeKeypoints:
    def __init__(self, data):
        self.data = FakeTensor(data)


class FakeResult:
    def __init__(self, boxes, keypoints=None):
        self.boxes, self.keypoints = boxes, keypoints


def test_from_ultralytics_keeps_people_with_keypoints():
    kp = np.random.default_rng(0).random((2, 17, 3))
    result = FakeResult(FakeBoxes([[0, 0, 10, 10], [5, 5, 20, 20]], [0.9, 0.8], [0, 56]), FakeKeypoints(kp))
    detections = Detections.from_ultralytics(result)
    assert len(detections) == 1
    np.testing.assert_allclose(detections.keypoints[0], kp[0], rtol=1e-6)
    assert detections.track_id.tolist() == [-1]


def test_from_ultralytics_without_boxes():
    assert len(Detections.from_ultralytics(FakeResult(None))) == 0
