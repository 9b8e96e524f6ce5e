"""Tiles and pipelines end to end on real brokers: a 1080p frame cut over two agents, a second
model on crops of the first's people, and a tile whose node stops answering."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import cv2
import orjson
import pytest
from harness import Fleet, Recorder, wait_nodes_online, wait_until
from vision_fixtures import QUARTER, REFERENCE_FACE, box_iou, canvas_with_astronauts, models_dir, photo  # noqa: F401  (fixture)

from edgehive.schemas.vision import DetectionOutput

pytestmark = pytest.mark.integration

CAMERAS = {
    "drive": {"model": "objects", "tiles": "auto"},
    "flat": {"model": "objects", "tiles": "off"},
    "porch": {"model": "objects", "tiles": "off", "stages": [{"model": "face-far", "on": ["person"]}]},
}


def results(recorder: Recorder, camera: str) -> list[dict[str, Any]]:
    return recorder.json(f"results/detections/{camera}")


def start(fleet: Fleet, recorder: Recorder, models_dir: Path, agents: dict[str, str], **coordinator_env: str) -> None:
    fleet.coordinator(EDGEHIVE_CAMERAS=orjson.dumps(CAMERAS).decode(), **coordinator_env)
    for node, models in agents.items():
        fleet.agent(node, EDGEHIVE_MODELS_DIR=str(models_dir), EDGEHIVE_MODELS=models, EDGEHIVE_WORKERS="1", EDGEHIVE_SLOTS="1")
    wait_nodes_online(recorder, len(agents), timeout_s=60)


def jpeg(image: Any) -> bytes:
    return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 92])[1].tobytes()


def test_a_distant_person_in_a_1080p_frame_is_found_by_tiles_spread_over_two_agents(fleet: Fleet, recorder: Recorder, models_dir: Path) -> None:
    start(fleet, recorder, models_dir, {"pi-1": "objects", "pi-2": "objects"})
    frame = jpeg(canvas_with_astronauts((1500, 700)))
    recorder.publish("frames/flat", frame, qos=1)  # the same frame untiled: the person is too small
    [flat] = wait_until(lambda: results(recorder, "flat"), 60, "the untiled frame's result")
    recorder.publish("frames/drive", frame, qos=1)  # both agents free: the first two parts go one to each
    [tiled] = wait_until(lambda: results(recorder, "drive"), 60, "the tiled frame's one result")
    assert flat["ok"] and [d for d in flat["output"]["detections"] if d["label"] == "person"] == []
    assert "parts" not in flat["output"]
    assert tiled["ok"] and tiled["source"] == "drive", tiled
    out = DetectionOutput.model_validate(tiled["output"])
    people = [d for d in out.detections if d.label == "person"]
    assert len(people) == 1 and box_iou(people[0].box, [1500, 700, 1500 + QUARTER, 700 + QUARTER]) >= 0.4, out.detections
    assert out.parts is not None and len(out.parts) > 2 and [p.rect for p in out.parts].count(None) == 1  # the whole frame, and tiles
    assert {p.node for p in out.parts} == {"pi-1", "pi-2"}  # one frame, worked on by both agents
    assert (out.width, out.height) == (1920, 1080)
    t = tiled["timings"]  # the frame's timings span its parts, in the same order as an untiled frame's
    assert t["queued"] <= t["dispatched"] <= t["received"] <= t["started"] <= t["inferred"] <= t["finished"] <= t["published"], t
    stats = wait_until(lambda: next((s for s in reversed(recorder.json("coordinator/stats"))
                                     if s.get("frames_done", {}).get("drive") == 1), None), 10, "the frame counted done")
    assert stats["frames_in"]["drive"] == 1 and not stats.get("frames_lost", {}).get("drive")


def test_nothing_is_found_in_the_hubble_deep_field_tiled(fleet: Fleet, recorder: Recorder, models_dir: Path) -> None:
    start(fleet, recorder, models_dir, {"pi-1": "objects"})
    recorder.publish("frames/drive", jpeg(cv2.resize(photo("hubble_deep_field"), (1920, 1080))), qos=1)
    [result] = wait_until(lambda: results(recorder, "drive"), 60, "the tiled frame's result")
    assert result["ok"] and result["output"]["detections"] == [] and len(result["output"]["parts"]) > 2


def test_a_pipeline_finds_the_face_of_the_person_the_first_model_found(fleet: Fleet, recorder: Recorder, models_dir: Path) -> None:
    start(fleet, recorder, models_dir, {"pi-1": "objects", "jetson": "face-far"})
    recorder.publish("frames/porch", jpeg(photo("astronaut")), qos=1)
    [result] = wait_until(lambda: results(recorder, "porch"), 60, "the pipeline's one result")
    assert result["ok"] and result["node"] == "pi-1", result
    out = DetectionOutput.model_validate(result["output"])
    assert out.model == "objects" and [d.label for d in out.detections] == ["person"]
    assert out.stages is not None and len(out.stages) == 1
    stage = out.stages[0]
    assert stage.model == "face-far" and [p.node for p in stage.parts] == ["jetson"] and stage.parts[0].of == 0
    [face] = stage.detections
    assert face.label == "face" and box_iou(face.box, REFERENCE_FACE) >= 0.5, face  # in the frame's pixels, not the crop's
    assert stage.inference_ms > 0 and stage.elapsed_ms >= stage.inference_ms and out.elapsed_ms is not None


def test_a_tile_whose_node_stops_answering_loses_its_frame_once_and_the_next_frame_is_whole(
    fleet: Fleet, recorder: Recorder, models_dir: Path
) -> None:
    # A node is dead after 3 s of silence here (not the suite's 0.6 s), so that the frozen node is
    # surely still counted alive when the frame arrives, however slow the machine is just then.
    start(fleet, recorder, models_dir, {"pi-1": "objects", "pi-2": "objects"}, EDGEHIVE_DEAD_AFTER_S="3")
    frame = jpeg(canvas_with_astronauts((1500, 700)))
    fleet.procs["pi-2"].send_signal(signal.SIGSTOP)  # frozen: still "alive" until its heartbeats are missed
    try:
        recorder.publish("frames/drive", frame, qos=1)  # one of its parts goes to the frozen node
        stats = wait_until(lambda: next((s for s in reversed(recorder.json("coordinator/stats"))
                                         if s.get("frames_lost", {}).get("drive") == 1), None), 60, "the frame counted lost")
        assert results(recorder, "drive") == [] and stats["frames_in"]["drive"] == 1
        recorder.publish("frames/drive", frame, qos=1)
        [result] = wait_until(lambda: results(recorder, "drive"), 60, "the next frame's result, from pi-1 alone")
        assert result["ok"] and {p["node"] for p in result["output"]["parts"]} == {"pi-1"}
        assert [d["label"] for d in result["output"]["detections"]].count("person") == 1
        stats = wait_until(lambda: next((s for s in reversed(recorder.json("coordinator/stats"))
                                         if s.get("frames_done", {}).get("drive") == 1), None), 10, "the frame counted done")
        assert stats["frames_in"]["drive"] == 2 and stats["frames_lost"]["drive"] == 1
    finally:
        fleet.kill("pi-2")
