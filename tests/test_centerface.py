"""CenterFace through ONNX Runtime on real photos: a portrait, a small distant face in a 1080p
frame, and frames without a face; and its decoder on outputs worked out by hand."""

from __future__ import annotations

from collections.abc import Iterator

import cv2
import numpy as np
import pytest
from vision_fixtures import REFERENCE_FACE, box_iou, manifest, models_dir, photo  # noqa: F401 - fixtures

from edgehive.agents.detection import Decoder, DetectionError, Detector, load_detector, make_decoder
from edgehive.agents.inference import create_backend
from edgehive.agents.modelstore import Manifest

FULL_HD = (1920, 1080)


@pytest.fixture(scope="module")
def centerface(manifest: Manifest) -> Iterator[Detector]:
    detector = load_detector(manifest.get("centerface"), create_backend({"type": "onnx", "num_threads": 2}))
    detector.warm_up()
    yield detector


def test_manifest_entry_is_an_onnx_model_marked_heavy(manifest: Manifest) -> None:
    spec = manifest.get("centerface")
    assert spec.model_format == "onnx" and spec.heavy and spec.reshape_input
    assert spec.input_size == (960, 544), "1080p halved (multiples of 32): faces down to about 36 px tall"
    assert spec.input_range == (0.0, 255.0) and spec.labels == ["face"]


def test_astronaut_face_found_where_drawn_by_hand(centerface: Detector) -> None:
    found = centerface.detect(photo("astronaut"))
    assert [d.label for d in found] == ["face"]
    assert found[0].score >= 0.5
    assert box_iou(found[0].box, REFERENCE_FACE) >= 0.6, found[0].box


def distant_astronaut(face_height: float, at: tuple[int, int]) -> tuple[np.ndarray, list[float]]:
    """The astronaut shrunk until her face is `face_height` px tall, on the coffee photo blown
    up to 1920x1080: a person far from a wide camera. Returns the frame and her face's box."""
    scale = face_height / (REFERENCE_FACE[3] - REFERENCE_FACE[1])
    side = round(512 * scale)
    frame = cv2.resize(photo("coffee"), FULL_HD, interpolation=cv2.INTER_LINEAR)
    x, y = at
    frame[y : y + side, x : x + side] = cv2.resize(photo("astronaut"), (side, side), interpolation=cv2.INTER_AREA)
    face = [x + v * scale if i % 2 == 0 else y + v * scale for i, v in enumerate(REFERENCE_FACE)]
    return frame, face


def test_a_46_px_face_in_a_1080p_frame_is_found(centerface: Detector) -> None:
    """One inference: the face, 46 px tall (about 43x46), in the right place in the full frame."""
    frame, face = distant_astronaut(46, (1300, 600))
    assert face[3] - face[1] == pytest.approx(46)
    out = centerface.process(frame)
    assert (out.width, out.height) == FULL_HD
    assert [d.label for d in out.detections] == ["face"], out.detections
    assert out.detections[0].score >= 0.5
    assert box_iou(out.detections[0].box, face) >= 0.5, (out.detections[0].box, face)


def test_the_short_range_face_model_misses_that_face(manifest: Manifest) -> None:
    """Why CenterFace is here: BlazeFace short range sees the same frame at 128x128 and finds nothing."""
    blazeface = load_detector(manifest.get("face"), create_backend("litert"))
    frame, _ = distant_astronaut(46, (1300, 600))
    assert blazeface.detect(frame) == []


@pytest.mark.parametrize("name", ["blank", "coffee", "chelsea"])
def test_frames_without_a_human_face_have_none(centerface: Detector, name: str) -> None:
    image = np.zeros((FULL_HD[1], FULL_HD[0], 3), np.uint8) if name == "blank" else photo(name)
    assert centerface.detect(image) == []


# -- the decoder on hand-made outputs ----------------------------------------------------------


def hand_made_outputs(peaks: list[tuple[int, int, float]]) -> list[np.ndarray]:
    """Outputs of a 64x64 input (a 16x16 grid) with a face centred in each (row, col) peak:
    20 px tall, 10 px wide, its centre a quarter cell down and half a cell right of the cell's
    centre, every landmark in the middle of the box."""
    heatmap = np.zeros((1, 1, 16, 16), np.float32)
    scale = np.zeros((1, 2, 16, 16), np.float32)
    offset = np.zeros((1, 2, 16, 16), np.float32)
    landmarks = np.full((1, 10, 16, 16), 0.5, np.float32)
    for row, col, score in peaks:
        heatmap[0, 0, row, col] = score
        scale[0, :, row, col] = [np.log(20 / 4), np.log(10 / 4)]  # log of height, width in cells
        offset[0, :, row, col] = [0.25, 0.5]  # y, x within the cell
    return [heatmap, scale, offset, landmarks]


def small_decoder(manifest: Manifest, **overrides: object) -> Decoder:
    spec = manifest.get("centerface").model_copy(update={"input_size": (64, 64), **overrides})
    model = create_backend("onnx").load(spec.path, input_size=(64, 64))
    return make_decoder(spec, model)


def test_decoder_places_the_box_and_landmarks(manifest: Manifest) -> None:
    out = small_decoder(manifest).decode(hand_made_outputs([(5, 7, 0.9)]))
    # centre: x (7 + 0.5 + 0.5) * 4 = 32, y (5 + 0.25 + 0.5) * 4 = 23; 10 wide, 20 tall
    assert out.scores.tolist() == pytest.approx([0.9])
    assert (out.boxes[0] * 64).tolist() == pytest.approx([27, 13, 37, 33])
    np.testing.assert_allclose(out.keypoints[0] * 64, [[32, 23]] * 5, atol=1e-4)
    assert out.classes.tolist() == [0]


def test_decoder_thresholds_and_suppresses_overlaps(manifest: Manifest) -> None:
    """Neighbouring cells on one face collapse to the best; a far face stays; a weak one goes."""
    out = small_decoder(manifest).decode(hand_made_outputs([(5, 7, 0.9), (5, 8, 0.8), (12, 2, 0.7), (1, 14, 0.3)]))
    assert out.scores.tolist() == pytest.approx([0.9, 0.7])
    assert small_decoder(manifest).decode(hand_made_outputs([])).boxes.shape == (0, 4)


def test_decoder_refuses_outputs_that_are_not_centerface(manifest: Manifest) -> None:
    decoder = small_decoder(manifest)
    outputs = hand_made_outputs([(5, 7, 0.9)])
    with pytest.raises(DetectionError, match="four NCHW outputs"):
        decoder.decode(outputs[:3])
    with pytest.raises(DetectionError, match="four NCHW outputs"):
        decoder.decode([outputs[0], outputs[1], outputs[2], outputs[3][:, :4]])
    person = manifest.get("person")
    with pytest.raises(DetectionError, match="four NCHW outputs"):
        load_detector(person.model_copy(update={"decoder": "centerface", "anchors": None}), create_backend("litert"))
