"""Tiles on real photos: the plan for a frame, the JPEG size read without decoding, and the
objects and face-far models finding small people in a 1080p frame only with tiles."""

from __future__ import annotations

import itertools

import cv2
import numpy as np
import pytest
from vision_fixtures import (  # noqa: F401
    QUARTER,
    REFERENCE_FACE,
    box_iou,
    canvas_with_astronauts,
    face_far_detector,
    manifest,
    models_dir,
    objects_detector,
    photo,
)

from edgehive.agents.detection import Detector
from edgehive.agents.detection.errors import DetectionError
from edgehive.agents.detection.tiles import crop, to_frame
from edgehive.coordinator.tiles import grid_for, jpeg_size, merge_detections, plan_tiles


def run_tiled(detector: Detector, image: np.ndarray, setting: str) -> list[dict]:  # type: ignore[type-arg]
    """What the fleet does with a frame: each part run on its own (as a node does), then merged (as the coordinator does)."""
    frame = (image.shape[1], image.shape[0])
    parts = []
    for rect in plan_tiles(setting, frame, detector.input_size):
        output = detector.process(image) if rect is None else to_frame(detector.process(crop(image, rect)), rect, frame)
        assert (output.width, output.height) == frame
        parts.append([d.model_dump() for d in output.detections])
    return merge_detections(parts)


@pytest.mark.parametrize("quality", [60, 95])
@pytest.mark.parametrize("progressive", [False, True])
def test_the_frame_size_comes_from_the_jpeg_header(quality: int, progressive: bool) -> None:
    image = cv2.resize(photo("chelsea"), (1920, 1080))
    ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality, cv2.IMWRITE_JPEG_PROGRESSIVE, int(progressive)])
    assert ok
    assert jpeg_size(jpeg.tobytes()) == (1920, 1080)
    assert jpeg_size(b"\xff\xd8\xff") is None and jpeg_size(b"\xff\xd8" + b"\x00" * 20) is None


def test_auto_tiles_big_frames_only_and_every_tile_overlaps_its_neighbour() -> None:
    assert plan_tiles("auto", (512, 512), (300, 300)) == [None]
    assert plan_tiles("auto", (640, 480), (192, 192)) == [None]
    assert grid_for("auto", (1920, 1080), (300, 300)) == (4, 2)
    assert grid_for("off", (3840, 2160), (300, 300)) == (1, 1)
    assert grid_for("3x2", (640, 480), (300, 300)) == (3, 2)
    assert grid_for("auto", (8192, 8192), (192, 192)) == (4, 4), "at most 16 tiles: larger tiles instead"
    plan = plan_tiles("auto", (1920, 1080), (300, 300))
    assert plan[0] is None and len(plan) == 9
    tiles = [r for r in plan if r is not None]
    assert min(r[0] for r in tiles) == 0 and max(r[2] for r in tiles) == 1920
    assert min(r[1] for r in tiles) == 0 and max(r[3] for r in tiles) == 1080
    row = sorted({(r[0], r[2]) for r in tiles})
    assert all(a[1] > b[0] for a, b in itertools.pairwise(row)), "neighbouring tiles overlap"


def test_merging_keeps_one_box_per_object_across_seams() -> None:
    person = {"label": "person", "score": 0.8, "box": [100.0, 100.0, 200.0, 300.0]}
    half = {"label": "person", "score": 0.6, "box": [150.0, 100.0, 200.0, 300.0]}  # the same person, cut by a seam
    cup = {"label": "cup", "score": 0.5, "box": [150.0, 100.0, 200.0, 300.0]}  # another label in the same place
    other = {"label": "person", "score": 0.7, "box": [400.0, 100.0, 500.0, 300.0]}
    assert merge_detections([[half, other], [person, cup]]) == [person, other, cup]


def test_a_tile_outside_the_frame_is_an_error_value() -> None:
    with pytest.raises(DetectionError, match="does not lie inside the 640x480 frame"):
        crop(np.zeros((480, 640, 3), np.uint8), (600, 0, 700, 100))


def test_a_distant_person_in_a_1080p_frame_is_found_with_tiles_and_missed_without(objects_detector: Detector) -> None:
    image = canvas_with_astronauts((1500, 700))
    truth = [1500.0, 700.0, 1500.0 + QUARTER, 700.0 + QUARTER]
    assert [d for d in run_tiled(objects_detector, image, "off") if d["label"] == "person"] == []
    people = [d for d in run_tiled(objects_detector, image, "auto") if d["label"] == "person"]
    assert len(people) == 1 and box_iou(people[0]["box"], truth) >= 0.4, people


def test_two_people_side_by_side_in_a_wide_frame_are_both_found(objects_detector: Detector) -> None:
    image = canvas_with_astronauts((600, 400), (1200, 400), size=192)
    assert [d for d in run_tiled(objects_detector, image, "off") if d["label"] == "person"] == []
    people = sorted((d for d in run_tiled(objects_detector, image, "auto") if d["label"] == "person"), key=lambda d: d["box"][0])
    assert len(people) == 2, people
    assert box_iou(people[0]["box"], [600, 400, 792, 592]) >= 0.4 and box_iou(people[1]["box"], [1200, 400, 1392, 592]) >= 0.4, people


def test_a_distant_face_in_a_1080p_frame_is_found_by_face_far_with_tiles_only(face_far_detector: Detector) -> None:
    image = canvas_with_astronauts((900, 300))
    scale = QUARTER / 512
    truth = [900 + REFERENCE_FACE[0] * scale, 300 + REFERENCE_FACE[1] * scale, 900 + REFERENCE_FACE[2] * scale, 300 + REFERENCE_FACE[3] * scale]
    assert run_tiled(face_far_detector, image, "off") == []
    [face] = run_tiled(face_far_detector, image, "auto")
    assert face["label"] == "face" and box_iou(face["box"], truth) >= 0.4, (face, truth)


def test_nothing_is_found_in_the_hubble_deep_field_even_tiled(objects_detector: Detector) -> None:
    image = cv2.resize(photo("hubble_deep_field"), (1920, 1080))
    assert run_tiled(objects_detector, image, "auto") == []


def test_a_node_decodes_a_frame_once_for_all_its_tiles() -> None:
    """Every tile of a frame carries the same JPEG: the node keeps the last frames decoded."""
    from edgehive.agents.vision import DecodedTiles

    frames = [cv2.imencode(".jpg", canvas_with_astronauts((100 * i, 100)))[1].tobytes() for i in range(3)]
    tiles = DecodedTiles(keep=2)
    first = tiles.get(frames[0])
    assert tiles.get(bytes(frames[0])) is first  # the same bytes in another message: not decoded again
    assert first.shape == (1080, 1920, 3) and tiles.get(frames[1]) is not first
    tiles.get(frames[2])  # a third frame pushes out the oldest
    assert tiles.get(frames[0]) is not first and np.array_equal(tiles.get(frames[0]), first)
