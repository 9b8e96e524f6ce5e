"""Tiles and pipelines through the coordinator's core: parts placed like frames, one result per frame.

Driven with events (tests/core_rig.py): what each node is sent, what comes out on
`results/detections/{camera}`, and the per-camera frame accounting, when parts finish, fail,
or lose their node.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import orjson
import pytest
from core_rig import Rig

from edgehive.schemas import Result
from edgehive.schemas.vision import CameraConfig, DetectionOutput, StageConfig

WIDE = cv2.imencode(".jpg", np.zeros((1080, 1920, 3), np.uint8))[1].tobytes()  # a real JPEG header: 1920x1080
TILED = CameraConfig(model="objects", tiles="2x1")  # the whole frame and two tiles: three parts
FACES_OF_PEOPLE = CameraConfig(model="objects", tiles="off", stages=[StageConfig(model="face-far", on=["person"])])


def detection(label: str, box: list[float], score: float = 0.8) -> dict[str, Any]:
    return {"label": label, "score": score, "box": box,
            "box_norm": [box[0] / 1920, box[1] / 1080, box[2] / 1920, box[3] / 1080]}


def output(model: str, *detections: dict[str, Any], ms: float = 10.0) -> dict[str, Any]:
    return {"model": model, "width": 1920, "height": 1080, "detections": list(detections), "inference_ms": ms}


def fleet(rig: Rig, *names: str, models: tuple[str, ...] = ("objects",), slots: int = 2) -> None:
    for name in names:
        rig.node(name, slots=slots, kinds=("detections",), models=models,
                 inputs={"objects": (300, 300), "face-far": (192, 192)})


def parts_sent(rig: Rig, *nodes: str) -> dict[str, dict[str, Any]]:
    """Part id → the job sent for it (with the node it went to)."""
    return {job["id"]: {**job, "to": node} for node in nodes for job in rig.sent(node)}


def answer(rig: Rig, parts: dict[str, dict[str, Any]], outputs: dict[str, dict[str, Any]]) -> None:
    for part_id, out in outputs.items():
        rig.result(parts[part_id]["to"], part_id, kind="detections", source="drive", output=out)


def frame_results(rig: Rig) -> list[Result]:
    return [Result.model_validate_json(payload) for payload in rig.relayed("detections", "drive")]


def test_a_tiled_frame_is_spread_over_nodes_and_merged_into_one_result() -> None:
    rig = Rig()
    fleet(rig, "pi-1", "pi-2")
    rig.frame("drive", "objects", WIDE, TILED)
    parts = parts_sent(rig, "pi-1", "pi-2")
    assert len(parts) == 3 and {p["to"] for p in parts.values()} == {"pi-1", "pi-2"}  # one frame, worked on by both
    tiles = sorted(tuple(p["params"].get("tile") or ()) for p in parts.values())
    assert tiles[0] == () and all(len(t) == 4 for t in tiles[1:])  # the whole frame, then each tile's rectangle
    assert all(p["params"]["model"] == "objects" and p["source"] == "drive" for p in parts.values())
    whole, left, right = sorted(parts, key=lambda i: tuple(parts[i]["params"].get("tile") or ()))
    seam_car = [900.0, 500.0, 1010.0, 560.0]  # on the seam: found in both tiles
    answer(rig, parts, {
        whole: output("objects", detection("truck", [0.0, 0.0, 1900.0, 1000.0], 0.6)),
        left: output("objects", detection("person", [100.0, 400.0, 140.0, 520.0], 0.7), detection("car", seam_car, 0.65)),
    })
    assert frame_results(rig) == []  # one part still out: no result yet
    answer(rig, parts, {right: output("objects", detection("car", [901.0, 501.0, 1010.0, 560.0], 0.75))})
    (result,) = frame_results(rig)
    out = DetectionOutput.model_validate(result.output)
    assert result.ok and result.kind == "detections" and result.source == "drive"
    assert [(d.label, d.score) for d in out.detections] == [("car", 0.75), ("person", 0.7), ("truck", 0.6)]  # the seam's car once
    assert (out.width, out.height, out.model) == (1920, 1080, "objects")
    assert out.parts is not None and sorted(p.node for p in out.parts) == sorted(p["to"] for p in parts.values())
    assert sorted(p.found for p in out.parts) == [1, 1, 2] and out.inference_ms == 30.0
    stats = rig.stats()
    assert stats["frames_in"] == {"drive": 1} and stats["frames_done"] == {"drive": 1}
    assert all(rig.holder(part) is None for part in parts)


def test_a_tile_whose_node_dies_loses_its_frame_once_and_the_camera_goes_on() -> None:
    rig = Rig()
    fleet(rig, "pi-1")
    fleet(rig, "pi-2", slots=1)  # three slots in all: the frame's three parts take them
    rig.frame("drive", "objects", WIDE, TILED)
    parts = parts_sent(rig, "pi-1", "pi-2")
    on_2 = [i for i, p in parts.items() if p["to"] == "pi-2"]
    on_1 = [i for i, p in parts.items() if p["to"] == "pi-1"]
    rig.frame("drive", "objects", WIDE, TILED)  # a newer frame waits while this one is worked on
    rig.offline("pi-2", reason="crash")
    answer(rig, parts, {i: output("objects") for i in on_1})  # the other parts come in: nothing to publish
    assert frame_results(rig) == []
    stats = rig.stats()
    assert stats["frames_lost"] == {"drive": 1}  # once, though the node held more than one of its parts
    # The waiting frame goes on pi-1 alone: all three parts, one result.
    second = {i: p for i, p in parts_sent(rig, "pi-1").items() if i not in parts}
    while len(second) < 3:  # pi-1 has two slots: the third part goes once a slot frees
        answer(rig, second, {i: output("objects") for i in second if rig.holder(i) == "pi-1"})
        second.update({i: p for i, p in parts_sent(rig, "pi-1").items() if i not in parts})
    answer(rig, second, {i: output("objects") for i in second if rig.holder(i) == "pi-1"})
    assert len(frame_results(rig)) == 1
    stats = rig.stats()
    assert stats["frames_in"] == {"drive": 2} and stats["frames_done"] == {"drive": 1} and stats["frames_lost"] == {"drive": 1}
    rig.result("pi-2", on_2[0], kind="detections", source="drive", output=output("objects"))  # late: let go
    assert len(frame_results(rig)) == 1 and rig.stats()["frames_lost"] == {"drive": 1}


def test_frames_begun_are_finished_first_and_newer_ones_replace_each_other() -> None:
    rig = Rig()
    fleet(rig, "pi-1", slots=1)
    rig.frame("drive", "objects", WIDE, TILED)
    for _ in range(4):
        rig.frame("drive", "objects", WIDE, TILED)
    first = rig.sent_ids("pi-1")
    assert len(first) == 1
    for _ in range(3):  # the first frame's three parts, one after another on the one slot
        part = rig.sent_ids("pi-1")[-1]
        rig.result("pi-1", part, kind="detections", source="drive", output=output("objects"))
    assert len(frame_results(rig)) == 1
    stats = rig.stats()
    assert stats["frames_in"] == {"drive": 5} and stats["frames_dropped"] == {"drive": 3}  # the newest of the four waits
    assert len(rig.sent_ids("pi-1")) == 4 and rig.sent_ids("pi-1")[-1].split(".")[0] != first[0].split(".")[0]


def test_a_failed_part_fails_its_frame_in_one_result_that_says_why() -> None:
    rig = Rig()
    fleet(rig, "pi-1", slots=3)
    rig.frame("drive", "objects", WIDE, TILED)
    ids = rig.sent_ids("pi-1")
    rig.result("pi-1", ids[0], kind="detections", source="drive", output=output("objects"))
    rig.result("pi-1", ids[1], ok=False, kind="detections", source="drive")
    rig.result("pi-1", ids[2], kind="detections", source="drive", output=output("objects"))
    (result,) = frame_results(rig)
    assert not result.ok and result.error is not None and "on node pi-1: it broke" in result.error
    assert rig.stats()["frames_done"] == {"drive": 1}


def test_a_small_frame_or_tiles_off_runs_as_one_job_relayed_as_it_came() -> None:
    rig = Rig()
    fleet(rig, "pi-1", slots=2)
    small = cv2.imencode(".jpg", np.zeros((480, 640, 3), np.uint8))[1].tobytes()
    rig.frame("drive", "objects", small, CameraConfig(model="objects"))  # auto: small enough to run whole
    rig.frame("yard", "objects", WIDE, CameraConfig(model="objects", tiles="off"))
    sent = rig.sent("pi-1")
    assert len(sent) == 2 and all("tile" not in job["params"] for job in sent)
    _, payload = rig.result("pi-1", sent[0]["id"], kind="detections", source="drive", output=output("objects"))
    assert rig.relayed("detections", "drive") == [payload]


def test_auto_tiles_a_1080p_frame_by_the_model_input_its_nodes_report() -> None:
    rig = Rig()
    fleet(rig, "pi-1", slots=16)
    rig.frame("drive", "objects", WIDE, CameraConfig(model="objects"))
    tiles = [job["params"].get("tile") for job in rig.sent("pi-1")]
    assert tiles[0] is None and len(tiles) > 2  # the whole frame and several tiles about twice 300x300
    assert all(t[2] - t[0] <= 2 * 2 * 300 and t[3] - t[1] <= 2 * 2 * 300 for t in tiles[1:])


def pipeline(jetson_slots: int) -> Rig:
    """A Pi that runs `objects`, a Jetson that runs `face-far`, and one frame of a camera whose
    pipeline runs face-far on each person objects finds."""
    rig = Rig()
    fleet(rig, "pi-1", models=("objects",), slots=1)
    fleet(rig, "jetson", models=("face-far",), slots=jetson_slots)
    rig.frame("drive", "objects", WIDE, FACES_OF_PEOPLE)
    return rig


def test_a_pipeline_runs_its_second_model_on_crops_of_what_the_first_found() -> None:
    rig = pipeline(jetson_slots=4)
    (first,) = rig.sent("pi-1")
    assert first["params"]["model"] == "objects" and rig.sent("jetson") == []
    people = [detection("person", [100.0, 200.0, 300.0, 800.0]), detection("person", [1000.0, 100.0, 1200.0, 700.0], 0.7)]
    rig.result("pi-1", first["id"], kind="detections", source="drive",
               output=output("objects", *people, detection("dog", [500.0, 500.0, 700.0, 700.0], 0.9)))
    crops = rig.sent("jetson")
    assert len(crops) == 2 and all(c["params"]["model"] == "face-far" for c in crops)  # the dog is not cropped
    x0, y0, x1, y1 = crops[0]["params"]["tile"]
    assert x0 <= 100 and y0 <= 200 and x1 >= 300 and y1 >= 800  # the person's box, with a margin
    assert frame_results(rig) == []
    rig.result("jetson", crops[0]["id"], kind="detections", source="drive",
               output=output("face-far", detection("face", [150.0, 220.0, 200.0, 280.0], 0.9), ms=3.0))
    rig.result("jetson", crops[1]["id"], kind="detections", source="drive", output=output("face-far", ms=3.0))
    (result,) = frame_results(rig)
    out = DetectionOutput.model_validate(result.output)
    assert [d.label for d in out.detections] == ["dog", "person", "person"]
    assert out.stages is not None and len(out.stages) == 1
    stage = out.stages[0]
    assert stage.model == "face-far" and stage.on == ["person"] and [d.label for d in stage.detections] == ["face"]
    assert sorted(p.of for p in stage.parts) == [1, 2] and {p.node for p in stage.parts} == {"jetson"}
    assert stage.inference_ms == 6.0 and out.elapsed_ms is not None and stage.elapsed_ms >= 0
    assert rig.stats()["frames_done"] == {"drive": 1}


def test_a_pipeline_whose_first_stage_finds_nothing_to_crop_ends_at_once() -> None:
    rig = Rig()
    fleet(rig, "pi-1", models=("objects", "face-far"), slots=1)
    rig.frame("drive", "objects", WIDE, FACES_OF_PEOPLE)
    (first,) = rig.sent_ids("pi-1")
    rig.result("pi-1", first, kind="detections", source="drive", output=output("objects", detection("cat", [0.0, 0.0, 50.0, 50.0])))
    (result,) = frame_results(rig)
    out = DetectionOutput.model_validate(result.output)
    assert out.stages is not None and out.stages[0].parts == [] and out.stages[0].detections == []
    assert len(rig.sent_ids("pi-1")) == 1


@pytest.mark.parametrize("how", ["dies", "lease lapses"])
def test_a_stage_whose_node_is_lost_counts_its_frame_lost(how: str) -> None:
    rig = pipeline(jetson_slots=1)
    (first,) = rig.sent_ids("pi-1")
    rig.result("pi-1", first, kind="detections", source="drive", output=output("objects", detection("person", [10.0, 10.0, 300.0, 900.0])))
    assert len(rig.sent_ids("jetson")) == 1  # the crop, on the node that will be lost
    if how == "dies":
        rig.offline("jetson", reason="crash")
    else:
        rig.advance(rig.settings.lease + 0.1)
        rig.beat("jetson", held=[])
    assert frame_results(rig) == [] and rig.stats()["frames_lost"] == {"drive": 1}


def test_a_stage_no_live_node_can_run_loses_its_frame_after_a_lease() -> None:
    rig = Rig()
    fleet(rig, "pi-1", models=("objects",), slots=1)
    rig.frame("drive", "objects", WIDE, FACES_OF_PEOPLE)
    (first,) = rig.sent_ids("pi-1")
    rig.result("pi-1", first, kind="detections", source="drive", output=output("objects", detection("person", [10.0, 10.0, 300.0, 900.0])))
    rig.tick()
    assert rig.stats()["frames_lost"] == {}
    rig.advance(rig.settings.lease + 0.1)
    rig.beat("pi-1")
    rig.tick()
    assert frame_results(rig) == [] and rig.stats()["frames_lost"] == {"drive": 1}
    assert any("stage 1 wants model 'face-far'" in e and "counted lost" in e for e in rig.errors()), rig.errors()
    rig.frame("drive", "objects", WIDE, FACES_OF_PEOPLE)  # the camera is not held up by it
    assert len(rig.sent_ids("pi-1")) == 2


def test_results_carry_every_part_in_the_documented_shape() -> None:
    rig = Rig()
    fleet(rig, "pi-1", slots=3)
    rig.frame("drive", "objects", WIDE, TILED)
    for part in rig.sent_ids("pi-1"):
        rig.result("pi-1", part, kind="detections", source="drive", output=output("objects"))
    (payload,) = rig.relayed("detections", "drive")
    body = orjson.loads(payload)
    assert set(body["output"]) == {"model", "width", "height", "detections", "inference_ms", "parts", "elapsed_ms"}
    assert {frozenset(p) for p in body["output"]["parts"]} == {frozenset({"node", "rect", "of", "found", "inference_ms"})}
