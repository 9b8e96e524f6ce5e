"""The numpy parts of detection, checked against hand-computed values: anchors, NMS,
letterbox geometry, the SSD post-processed decoder, and the result schema."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from edgehive.agents.detection import Candidates, Letterbox, hard_nms, iou, make_decoder, ssd_anchors, weighted_nms
from edgehive.agents.detection.ssd import output_roles
from edgehive.agents.inference import ModelHandle
from edgehive.agents.modelstore import AnchorSpec, ModelSpec
from edgehive.schemas.vision import Detection, DetectionOutput


def test_blazeface_anchors_match_mediapipe() -> None:
    anchors = ssd_anchors(AnchorSpec(strides=[8, 16, 16, 16]), (128, 128))
    assert anchors.shape == (896, 4)  # 16x16 cells x 2 + 8x8 cells x 6
    assert np.all(anchors[:, 2:] == 1.0), "fixed_anchor_size"
    assert anchors[0].tolist() == anchors[1].tolist() == [0.5 / 16, 0.5 / 16, 1.0, 1.0]
    assert anchors[2, :2].tolist() == [1.5 / 16, 0.5 / 16], "x runs fastest"
    assert np.allclose(anchors[512:518, :2], [0.5 / 8, 0.5 / 8]), "the three stride-16 layers share cells"
    assert np.allclose(anchors[-1, :2], [7.5 / 8, 7.5 / 8])


def test_blazepose_anchors_match_mediapipe() -> None:
    anchors = ssd_anchors(AnchorSpec(strides=[8, 16, 32, 32, 32]), (224, 224))
    assert anchors.shape == (2254, 4)  # 28x28x2 + 14x14x2 + 7x7x6
    assert np.allclose(anchors[1568 + 392, :2], [0.5 / 7, 0.5 / 7])


def test_anchor_sizes_follow_scales_when_not_fixed() -> None:
    spec = AnchorSpec(strides=[16, 32], min_scale=0.2, max_scale=0.8, aspect_ratios=[1.0, 4.0], fixed_anchor_size=False)
    anchors = ssd_anchors(spec, (64, 64))
    assert anchors.shape == (4 * 4 * 3 + 2 * 2 * 3, 4)
    w, h = anchors[:3, 2], anchors[:3, 3]
    assert np.allclose(w, [0.2, 0.2 * 2, np.sqrt(0.2 * 0.8)])
    assert np.allclose(h, [0.2, 0.2 / 2, np.sqrt(0.2 * 0.8)])
    assert np.allclose(anchors[-1, 2:], [np.sqrt(0.8 * 1.0)] * 2), "the last layer interpolates towards scale 1"
    lowest = ssd_anchors(spec.model_copy(update={"reduce_boxes_in_lowest_layer": True}), (64, 64))
    assert np.allclose(lowest[:3, 2], [0.1, 0.2 * np.sqrt(2), 0.2 / np.sqrt(2)])


def cands(boxes: list[list[float]], scores: list[float], classes: list[int] | None = None, k: int = 1) -> Candidates:
    n = len(scores)
    kps = np.asarray([[[b[0], b[1]]] * k for b in boxes], np.float32).reshape(n, k, 2)
    return Candidates(
        np.asarray(boxes, np.float32).reshape(n, 4),
        np.asarray(scores, np.float32),
        np.asarray(classes or [0] * n, np.int64),
        kps,
    )


def test_iou() -> None:
    assert iou(np.array([0, 0, 2, 2.0]), np.array([[1, 1, 3, 3.0], [0, 0, 2, 2], [5, 5, 6, 6], [1, 1, 1, 1]])) == pytest.approx(
        [1 / 7, 1.0, 0.0, 0.0]
    )


def test_weighted_nms_averages_a_cluster_and_keeps_the_best_score() -> None:
    c = cands([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], [0.6, 0.9, 0.7])
    out = weighted_nms(c, iou_threshold=0.3, max_detections=10)
    assert out.scores.tolist() == pytest.approx([0.9, 0.7])
    expected = (np.array([0, 0, 10, 10]) * 0.6 + np.array([1, 1, 11, 11]) * 0.9) / 1.5
    assert out.boxes[0] == pytest.approx(expected)
    assert out.keypoints[0, 0] == pytest.approx(expected[:2]), "keypoints are averaged with the box"
    assert out.boxes[1].tolist() == [50, 50, 60, 60]
    assert len(weighted_nms(c, 0.3, max_detections=1)) == 1
    assert len(weighted_nms(cands([], []), 0.3, 5)) == 0


def test_hard_nms_is_per_class() -> None:
    c = cands([[0, 0, 10, 10], [1, 1, 11, 11], [1, 1, 11, 11]], [0.9, 0.8, 0.7], [0, 0, 1])
    assert hard_nms(c, 0.5, 10).scores.tolist() == pytest.approx([0.9, 0.7])
    assert hard_nms(c, 0.5, 10, per_class=False).scores.tolist() == pytest.approx([0.9])


@pytest.mark.parametrize(("src", "dst"), [((640, 480), (128, 128)), ((480, 640), (224, 224)), ((100, 100), (300, 200))])
def test_letterbox_maps_corners_back(src: tuple[int, int], dst: tuple[int, int]) -> None:
    box = Letterbox.fit(src, dst)
    (cw, ch), (ox, oy) = box.content_size, box.offset
    assert (cw == dst[0]) or (ch == dst[1]), "the frame fills one dimension"
    corners = np.array([[ox / dst[0], oy / dst[1], (ox + cw) / dst[0], (oy + ch) / dst[1]]])
    assert box.to_source(corners)[0] == pytest.approx([0, 0, src[0], src[1]])


class FakeSsd(ModelHandle):
    """Outputs shaped like TFLite_Detection_PostProcess, in a shuffled order."""

    def __init__(self, names: list[str]) -> None:
        self.path = Path("ssd.tflite")
        self.input_size = (300, 300)
        self.input_shape = (1, 300, 300, 3)
        self.input_dtype = np.dtype(np.uint8)
        self.input_quantization = (0.0078125, 128)
        self.output_names = names
        shapes = {"": (1, 10, 4), ":1": (1, 10), ":2": (1, 10), ":3": (1,)}
        self.output_shapes = [shapes[n.removeprefix("TFLite_Detection_PostProcess")] for n in names]

    def infer(self, tensor: np.ndarray) -> list[np.ndarray]:
        raise NotImplementedError


def ssd_spec(**extra: object) -> ModelSpec:
    return ModelSpec.model_validate(
        {"name": "coco", "file": "ssd.tflite", "input_size": [300, 300], "decoder": "ssd_postprocessed",
         "labels": ["person", "bicycle", "car"], "score_threshold": 0.5, "iou_threshold": 0.6} | extra
    )


def test_ssd_decoder_reads_outputs_by_name_and_converts_boxes() -> None:
    names = ["TFLite_Detection_PostProcess:2", "TFLite_Detection_PostProcess", "TFLite_Detection_PostProcess:3", "TFLite_Detection_PostProcess:1"]
    assert output_roles(ssd_spec(), names) == ["scores", "boxes", "count", "classes"]
    decoder = make_decoder(ssd_spec(), FakeSsd(names))
    boxes = np.zeros((1, 10, 4), np.float32)
    boxes[0, 0] = [0.1, 0.2, 0.5, 0.6]  # ymin, xmin, ymax, xmax
    boxes[0, 1] = [0.3, 0.3, 0.9, 1.2]
    boxes[0, 2] = [0.0, 0.0, 0.2, 0.2]
    scores = np.array([[0.9, 0.6, 0.4, 0.95] + [0.0] * 6], np.float32)
    classes = np.array([[2, 0, 1, 1] + [0] * 6], np.float32)
    count = np.array([3.0], np.float32)  # the 4th score lies beyond the count
    out = decoder.decode([scores, boxes, count, classes])
    assert out.scores.tolist() == pytest.approx([0.9, 0.6])
    assert out.classes.tolist() == [2, 0]
    assert out.boxes[0].tolist() == pytest.approx([0.2, 0.1, 0.6, 0.5])
    assert out.boxes[1].tolist() == pytest.approx([0.3, 0.3, 1.0, 0.9]), "clipped to the input"


def test_ssd_output_order_from_the_manifest_wins() -> None:
    spec = ssd_spec(output_order=["scores", "boxes", "count", "classes"])
    assert output_roles(spec, ["a", "b", "c", "d"]) == ["scores", "boxes", "count", "classes"]
    assert output_roles(ssd_spec(), ["a", "b", "c", "d"]) == ["boxes", "classes", "scores", "count"]


def test_detection_schema_refuses_bad_values() -> None:
    good = {"label": "face", "score": 0.9, "box": [1, 2, 3, 4], "box_norm": [0.1, 0.2, 0.3, 0.4]}
    Detection.model_validate(good)
    for bad in (
        {"score": 1.2},
        {"box": [1, 2, 3]},
        {"box": [3, 2, 1, 4]},
        {"box_norm": [0.1, 0.2, 0.3, 1.4]},
        {"label": ""},
        {"colour": "red"},
    ):
        with pytest.raises(ValidationError):
            Detection.model_validate(good | bad)
    with pytest.raises(ValidationError):
        DetectionOutput(model="face", width=0, height=10, detections=[], inference_ms=1.0)
