"""The numpy parts of detection, checked against hand-computed values: anchors, NMS,
letterbox geometry, the SSD decoders (post-processed and raw with anchors), and the result schema."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from edgehive.agents.detection import (
    Candidates,
    DetectionError,
    Letterbox,
    hard_nms,
    iou,
    letterbox,
    make_decoder,
    ssd_anchors,
    weighted_nms,
)
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


def test_open_images_ssd_anchors_match_mediapipe() -> None:
    """The `objects` model's grid: 6 layers of 19, 10, 5, 3, 2, 1 cells over 300 px, 3 anchors
    per cell in the lowest layer and 6 elsewhere (5 ratios + the interpolated scale)."""
    spec = AnchorSpec(strides=[16, 32, 64, 128, 256, 512], min_scale=0.2, max_scale=0.95,
                      aspect_ratios=[1.0, 2.0, 0.5, 3.0, 0.3333], reduce_boxes_in_lowest_layer=True, fixed_anchor_size=False)
    anchors = ssd_anchors(spec, (300, 300))
    assert anchors.shape == (1917, 4)  # 19*19*3 + 10*10*6 + 5*5*6 + 3*3*6 + 2*2*6 + 1*6
    assert anchors[0].tolist() == pytest.approx([0.5 / 19, 0.5 / 19, 0.1, 0.1])
    assert anchors[1, 2:].tolist() == pytest.approx([0.2 * np.sqrt(2), 0.2 / np.sqrt(2)])
    second = anchors[19 * 19 * 3 : 19 * 19 * 3 + 6]
    assert np.allclose(second[:, :2], [0.05, 0.05])
    scale = 0.2 + 0.75 / 5
    assert second[5, 2:].tolist() == pytest.approx([np.sqrt(scale * (0.2 + 2 * 0.75 / 5))] * 2), "interpolated scale"
    assert anchors[-1, :2].tolist() == pytest.approx([0.5, 0.5])
    assert anchors[-1, 2:].tolist() == pytest.approx([np.sqrt(0.95)] * 2), "the last layer interpolates towards 1"


def test_blazeface_full_range_anchors_are_one_per_cell() -> None:
    anchors = ssd_anchors(AnchorSpec(strides=[4], interpolated_scale_aspect_ratio=0.0), (192, 192))
    assert anchors.shape == (2304, 4)  # 48 x 48 cells, no interpolated anchor
    assert anchors[1, :2].tolist() == pytest.approx([1.5 / 48, 0.5 / 48])
    assert np.all(anchors[:, 2:] == 1.0)


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


def test_stretch_maps_each_axis_on_its_own() -> None:
    box = Letterbox.stretch((640, 480), (300, 300))
    assert (box.content_size, box.offset) == ((300, 300), (0, 0))
    assert box.to_source(np.array([[0.25, 0.5, 1.0, 1.0]]))[0] == pytest.approx([160, 240, 640, 480])
    frame = np.zeros((480, 640, 3), np.uint8)
    frame[:, :320] = (255, 0, 0)  # blue in BGR, left half
    rgb, mapping = letterbox(frame, (300, 300), keep_aspect=False)
    assert mapping == box
    assert rgb.shape == (300, 300, 3) and rgb[150, 10].tolist() == [0, 0, 255] and rgb[150, 290].tolist() == [0, 0, 0]


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


def test_ssd_decoder_drops_ignored_classes() -> None:
    names = ["TFLite_Detection_PostProcess", "TFLite_Detection_PostProcess:1", "TFLite_Detection_PostProcess:2", "TFLite_Detection_PostProcess:3"]
    decoder = make_decoder(ssd_spec(ignore_classes=[0]), FakeSsd(names))
    boxes = np.tile(np.array([0.1, 0.1, 0.4, 0.4], np.float32), (1, 10, 1))
    boxes[0, 1] = [0.5, 0.5, 0.9, 0.9]
    classes = np.array([[0, 2] + [0] * 8], np.float32)
    scores = np.array([[0.9, 0.8] + [0.0] * 8], np.float32)
    out = decoder.decode([boxes, classes, scores, np.array([2.0], np.float32)])
    assert out.classes.tolist() == [2] and out.scores.tolist() == pytest.approx([0.8])


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


class FakeRawSsd(ModelHandle):
    """Outputs shaped like an SSD exported without post-processing: boxes [1, N, 4], scores [1, N, C]."""

    def __init__(self, num_anchors: int, num_classes: int, names: tuple[str, str] = ("raw_outputs/box_encodings", "raw_outputs/class_predictions")) -> None:
        self.path = Path("raw.tflite")
        self.input_size = (64, 64)
        self.input_shape = (1, 64, 64, 3)
        self.input_dtype = np.dtype(np.float32)
        self.input_quantization = (0.0, 0)
        self.output_names = list(names)
        self.output_shapes = [(1, num_anchors, 4), (1, num_anchors, num_classes)]

    def infer(self, tensor: np.ndarray) -> list[np.ndarray]:
        raise NotImplementedError


def raw_spec(**extra: object) -> ModelSpec:
    """Two 2x2 layers over 64 px: 8 anchors, sizes 0.2 (then 0.5) by scale, not fixed."""
    return ModelSpec.model_validate(
        {"name": "raw", "file": "raw.tflite", "input_size": [64, 64], "decoder": "ssd_anchors",
         "labels": ["background", "cat", "dog"], "ignore_classes": [0], "score_threshold": 0.5, "iou_threshold": 0.4,
         "box_scale": [10.0, 10.0, 5.0, 5.0],
         "anchors": {"strides": [32, 32], "min_scale": 0.2, "max_scale": 0.5, "interpolated_scale_aspect_ratio": 0.0,
                     "fixed_anchor_size": False}} | extra
    )


def logit(p: float) -> float:
    return float(np.log(p / (1 - p)))


def test_raw_ssd_decoder_applies_the_box_coder_and_skips_the_background() -> None:
    spec = raw_spec()
    decoder = make_decoder(spec, FakeRawSsd(8, 3))
    anchors = ssd_anchors(spec.anchors, (64, 64))  # type: ignore[arg-type]
    assert anchors.shape == (8, 4)
    boxes = np.zeros((1, 8, 4), np.float32)
    scores = np.full((1, 8, 3), -20.0, np.float32)
    scores[0, :, 0] = 20.0  # background is the best class everywhere: ignored, never reported
    scores[0, 0, 1] = logit(0.9)  # anchor 0: a cat, exactly on its anchor
    scores[0, 7, 2] = logit(0.8)  # anchor 7: a dog, moved and resized by its encoding
    boxes[0, 7] = [1.0, -2.0, 5.0 * np.log(2.0), 0.0]  # y +0.1 h, x -0.2 w, height x2, width x1
    scores[0, 3, 2] = logit(0.4)  # below the threshold
    out = decoder.decode([boxes, scores])
    assert out.classes.tolist() == [1, 2]
    assert out.scores.tolist() == pytest.approx([0.9, 0.8], abs=1e-5)
    cx, cy, w, h = anchors[0]
    assert out.boxes[0].tolist() == pytest.approx([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], abs=1e-6)
    cx, cy, w, h = anchors[7]
    cx, cy, h = cx - 0.2 * w, cy + 0.1 * h, 2 * h
    assert out.boxes[1].tolist() == pytest.approx([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], abs=1e-5)


def test_raw_ssd_suppression_is_class_agnostic_like_mediapipe() -> None:
    decoder = make_decoder(raw_spec(), FakeRawSsd(8, 3))
    boxes = np.zeros((1, 8, 4), np.float32)
    scores = np.full((1, 8, 3), -20.0, np.float32)
    scores[0, 0, 1], scores[0, 1, 2] = logit(0.9), logit(0.7)  # anchors 0 and 1 share a cell (sizes 0.2, 0.5)
    boxes[0, 1, 2:] = 5.0 * np.log(0.4)  # anchor 1 shrunk to 0.2: the same box as anchor 0
    out = decoder.decode([boxes, scores])
    assert out.classes.tolist() == [1], "the weaker box of another class on the same spot is dropped"
    assert len(decoder.decode([boxes, np.full((1, 8, 3), -20.0, np.float32)])) == 0


@pytest.mark.parametrize(
    ("change", "complaint"),
    [({"ignore_classes": [3]}, r"ignore_classes \[3\] are not class ids"), ({"ignore_classes": [0, 1, 2]}, "leaves no class")],
)
def test_ignore_classes_must_leave_a_real_class(change: dict[str, object], complaint: str) -> None:
    with pytest.raises(ValidationError, match=complaint):
        raw_spec(**change)


def test_raw_ssd_decoder_checks_the_model_against_the_manifest() -> None:
    with pytest.raises(DetectionError, match=r"scores 4 classes, the manifest lists 3 labels"):
        make_decoder(raw_spec(), FakeRawSsd(8, 4))
    with pytest.raises(DetectionError, match=r"expected two outputs of shape \[1, 8, C\]"):
        make_decoder(raw_spec(), FakeRawSsd(9, 3))
    four = raw_spec(labels=["background", "a", "b", "c"])
    swapped = FakeRawSsd(8, 4, names=("scores", "box_encodings"))
    assert make_decoder(four, swapped)._boxes_at == 1, "same width: the output named for boxes holds the boxes"  # type: ignore[attr-defined]
