"""Frames end to end on real brokers: camera topic → coordinator → agent with the model → detections."""

from __future__ import annotations

import subprocess
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import orjson
import psutil
import pytest
from harness import Fleet, MosquittoSub, Recorder, wait_nodes_online, wait_until
from vision_fixtures import REFERENCE_FACE, box_iou, models_dir, photo  # noqa: F401  (fixture)

from edgehive.schemas import envelope

pytestmark = pytest.mark.integration

ASTRONAUT = Path(__file__).resolve().parent.parent / "sensors" / "demo" / "01-astronaut.jpg"


def detections(recorder: Recorder, camera: str) -> list[dict]:  # type: ignore[type-arg]
    return recorder.json(f"results/detections/{camera}")


def start(fleet: Fleet, recorder: Recorder, models_dir: Path, agents: dict[str, str], **coordinator_env: str) -> None:
    """A coordinator and one agent per (node → models) entry, each with one worker and one slot."""
    fleet.coordinator(EDGEHIVE_CAMERA_MODELS="door=face,yard=person", **coordinator_env)
    for node, models in agents.items():
        fleet.agent(node, EDGEHIVE_MODELS_DIR=str(models_dir), EDGEHIVE_MODELS=models, EDGEHIVE_WORKERS="1", EDGEHIVE_SLOTS="1")
    wait_nodes_online(recorder, len(agents), timeout_s=60)


def test_mosquitto_pub_jpeg_yields_a_face_seen_by_mosquitto_sub(fleet: Fleet, recorder: Recorder, models_dir: Path, prefix: str) -> None:
    start(fleet, recorder, models_dir, {"pi-1": "face"})
    port = str(fleet.broker.port)
    with MosquittoSub(port, f"{prefix}/results/detections/#") as sub:
        subprocess.run(["mosquitto_pub", "-p", port, "-t", f"{prefix}/frames/door", "-f", str(ASTRONAUT)], check=True)
        topic, payload = sub.next_message(timeout_s=30)
    assert topic == f"{prefix}/results/detections/door"
    result = orjson.loads(payload)
    assert result["ok"] is True and result["node"] == "pi-1"
    output = result["output"]
    assert output["model"] == "face" and (output["width"], output["height"]) == (512, 512)
    [face] = output["detections"]
    assert face["label"] == "face" and box_iou(face["box"], REFERENCE_FACE) >= 0.5
    assert face["box_norm"] == pytest.approx([v / 512 for v in face["box"]], abs=1e-3)
    timings = result["timings"]
    assert timings["queued"] <= timings["dispatched"] <= timings["received"] <= timings["started"] <= timings["inferred"] <= timings["published"]


def test_agents_without_a_model_never_receive_its_frames(fleet: Fleet, recorder: Recorder, models_dir: Path) -> None:
    start(fleet, recorder, models_dir, {"face-node": "face", "person-node": "person"})
    jpeg = ASTRONAUT.read_bytes()
    for i in range(6):
        recorder.publish("frames/door", jpeg, qos=0)
        recorder.publish("frames/yard", jpeg, qos=0)
        wait_until(lambda: len(detections(recorder, "door")) > i and len(detections(recorder, "yard")) > i, 30, "both cameras served")
    assert {r["node"] for r in detections(recorder, "door")} == {"face-node"}
    assert {r["node"] for r in detections(recorder, "yard")} == {"person-node"}
    assert all(r["output"]["model"] == "person" and r["output"]["detections"][0]["label"] == "person" for r in detections(recorder, "yard"))


def test_a_flood_keeps_only_the_newest_frame_and_counts_every_drop(fleet: Fleet, recorder: Recorder, models_dir: Path) -> None:
    start(fleet, recorder, models_dir, {"pi-1": "person"})
    coordinator = psutil.Process(fleet.procs["coordinator"].pid)
    base = cv2.imread(str(ASTRONAUT))
    frames = []
    for i in range(300):  # distinct frames, each tagged with its sequence number as capture time
        img = base.copy()
        cv2.putText(img, str(i), (10, 500), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (255, 255, 255), 2)
        _, jpeg = cv2.imencode(".jpg", img)
        frames.append(envelope.pack(orjson.dumps({"v": 1, "captured": float(i)}), jpeg.tobytes()))
    rss_before = coordinator.memory_info().rss
    for frame in frames:
        recorder.publish("frames/yard", frame, qos=1)  # QoS 1 so that the broker drops none
    stats = wait_until(lambda: next((s for s in reversed(recorder.json("coordinator/stats"))
                                     if s.get("frames_in", {}).get("yard") == 300 and not s.get("in_flight")), None), 60, "the flood handled")
    done = detections(recorder, "yard")
    wait_until(lambda: len(detections(recorder, "yard")) >= stats["frames_done"]["yard"], 10, "every result seen")
    done = detections(recorder, "yard")
    assert stats["frames_dropped"]["yard"] == 300 - len(done) - stats.get("frames_lost", {}).get("yard", 0)
    assert stats["frames_dropped"]["yard"] > 0, "the agent kept up with 300 back-to-back frames: no drop to count"
    captured = [r["timings"]["captured"] for r in done]
    assert captured == sorted(captured), "frames were served out of order"
    assert captured[-1] == 299.0, "the newest frame was not the one served last"
    # 300 frames of ~55 KB went through; at most one per camera is ever held.
    assert coordinator.memory_info().rss - rss_before < 8 * 1024 * 1024


def test_corrupt_empty_and_huge_frames_are_rejected_and_nothing_crashes(fleet: Fleet, recorder: Recorder, models_dir: Path) -> None:
    start(fleet, recorder, models_dir, {"pi-1": "face"})
    corrupt = envelope.JPEG_SOI + b"\xe0" + bytes(range(256)) * 20
    for payload in (corrupt, b"", b"\xff\xd8\xff" + b"\x00" * (50 * 1024 * 1024)):
        recorder.publish("frames/door", payload, qos=1)

    def reasons() -> list[str]:
        return [e["reason"] for e in recorder.json("errors")]

    wait_until(lambda: any("exceeds" in r for r in reasons()) and any("empty frame" in r for r in reasons())
               and any("corrupt JPEG" in r for r in reasons()), 30, "three error reports")
    # The failed result is relayed by the coordinator: it may come after the agent's own error report.
    failed = wait_until(lambda: detections(recorder, "door"), 10, "the corrupt frame's failed result")
    assert len(failed) == 1 and failed[0]["ok"] is False and "corrupt JPEG" in failed[0]["error"]
    assert fleet.alive("coordinator") and fleet.alive("pi-1")
    recorder.publish("frames/door", ASTRONAUT.read_bytes(), qos=1)
    wait_until(lambda: any(r["ok"] for r in detections(recorder, "door")), 30, "a good frame after the bad ones")
    assert "Traceback" not in fleet.log("coordinator") + fleet.log("pi-1")


def test_several_cameras_share_the_fleet(fleet: Fleet, recorder: Recorder, models_dir: Path) -> None:
    start(fleet, recorder, models_dir, {"pi-1": "face", "pi-2": "face"})
    jpeg = ASTRONAUT.read_bytes()
    cameras = [f"cam{i}" for i in range(4)]
    for _ in range(5):
        for camera in cameras:
            recorder.publish(f"frames/{camera}", envelope.pack(b'{"v":1,"model":"face"}', jpeg), qos=1)
    wait_until(lambda: all(detections(recorder, c) for c in cameras), 30, "every camera served")
    nodes = Counter(r["node"] for c in cameras for r in detections(recorder, c))
    assert set(nodes) == {"pi-1", "pi-2"}, nodes


def test_a_camera_process_asks_for_its_model_and_its_frames_come_back_as_detections(fleet: Fleet, recorder: Recorder, models_dir: Path) -> None:
    """`edgehive camera` with a model: the envelope carries the model (face, not the default person) and the capture time."""
    start(fleet, recorder, models_dir, {"pi-1": "face,person"})
    fleet.camera("porch", EDGEHIVE_SOURCE="demo", EDGEHIVE_FPS="4", EDGEHIVE_MODEL="face")
    results = wait_until(lambda: len(found := [r for r in detections(recorder, "porch") if r["ok"]]) >= 3 and found, 60, "three detections")
    assert all(r["output"]["model"] == "face" and len(r["output"]["detections"]) == 1 for r in results)
    assert all(r["timings"]["captured"] <= r["timings"]["queued"] for r in results)


def test_an_annotated_snapshot_with_the_box_drawn_is_retained_per_camera(fleet: Fleet, recorder: Recorder, models_dir: Path) -> None:
    start(fleet, recorder, models_dir, {"pi-1": "face"})
    for i in range(3):  # three frames within one (5 s) interval: one snapshot
        recorder.publish("frames/door", ASTRONAUT.read_bytes(), qos=1)
        wait_until(lambda: len(detections(recorder, "door")) == i + 1, 30, "the detection")
    snapshots = [p for t, p, _ in recorder.messages if t == f"{recorder.prefix}/snapshots/door"]
    assert len(snapshots) == 1, "snapshots are throttled per camera"
    image = cv2.imdecode(np.frombuffer(snapshots[0], np.uint8), cv2.IMREAD_COLOR)
    original = cv2.imread(str(ASTRONAUT))
    assert image.shape == original.shape
    x0, y0, x1, y1 = (round(v) for v in detections(recorder, "door")[0]["output"]["detections"][0]["box"])
    edge = image[y0:y0 + 2, x0 + 10:x1 - 10].reshape(-1, 3).mean(axis=0)
    inside = (image[y0 + 20:y1 - 20, x0 + 20:x1 - 20].astype(int) - original[y0 + 20:y1 - 20, x0 + 20:x1 - 20].astype(int))
    assert edge[2] > 180 and edge[0] < 80, f"no amber box edge where the face is: {edge}"
    assert abs(inside).mean() < 12, "the inside of the box should be the photo, untouched"
    # Retained: a client that subscribes later still gets it.
    late = Recorder(fleet.broker.url, recorder.prefix)
    try:
        wait_until(lambda: any(t.endswith("/snapshots/door") for t, _, _ in late.messages), 10, "the retained snapshot")
    finally:
        late.close()


def test_each_camera_gets_its_model_labels_and_scores_from_one_cameras_file(fleet: Fleet, recorder: Recorder, models_dir: Path, tmp_path: Path) -> None:
    cameras = tmp_path / "cameras.json"
    cameras.write_bytes(orjson.dumps({
        "*": {"model": "person"},
        "porch": {"model": "face"},
        "door": {"model": "face", "min_score": {"face": 0.999}},
        "yard": {"labels": ["car", "dog"]},
        "gate": {"labels": ["Person"], "min_score": {"*": 0.2}},
    }))
    start(fleet, recorder, models_dir, {"pi-1": "face,person"}, EDGEHIVE_CAMERAS=str(cameras))
    jpeg = ASTRONAUT.read_bytes()
    for camera in ("porch", "door", "yard", "gate"):
        recorder.publish(f"frames/{camera}", jpeg, qos=1)
    results = {camera: wait_until(lambda c=camera: next(iter(detections(recorder, c)), None), 30, f"a result for {camera}")
               for camera in ("porch", "door", "yard", "gate")}
    assert all(r["ok"] for r in results.values()), results
    outputs = {camera: r["output"] for camera, r in results.items()}
    assert [d["label"] for d in outputs["porch"]["detections"]] == ["face"] and outputs["porch"]["model"] == "face"
    # The same face, scored below the door's own floor: the door's result says so by its empty list.
    assert outputs["door"]["model"] == "face" and outputs["door"]["detections"] == []
    assert outputs["porch"]["detections"][0]["score"] < 0.999
    # `*` gives yard the person model, but yard keeps only cars and dogs: nothing here is either.
    assert outputs["yard"]["model"] == "person" and outputs["yard"]["detections"] == []
    assert [d["label"] for d in outputs["gate"]["detections"]] == ["person"]


def test_centerface_on_onnx_next_to_a_tflite_model_and_a_cuda_agent_that_cannot_load_it(
    fleet: Fleet, recorder: Recorder, models_dir: Path
) -> None:
    """One agent serves BlazeFace on LiteRT and CenterFace on ONNX Runtime; another, told to run
    ONNX models on CUDA on this GPU-less machine, says why it cannot and advertises only BlazeFace.
    A 1080p frame with a face 46 px tall, sent for centerface, comes back with that face, and the
    agent's heartbeats then carry the model's measured service time."""
    fleet.coordinator()
    common = {"EDGEHIVE_MODELS_DIR": str(models_dir), "EDGEHIVE_MODELS": "face,centerface", "EDGEHIVE_WORKERS": "1",
              "EDGEHIVE_SLOTS": "1", "EDGEHIVE_LOG_LEVEL": "INFO"}
    fleet.agent("cpu-node", **common)
    fleet.agent("cuda-node", EDGEHIVE_ONNX_PROVIDERS="cuda", **common)
    wait_nodes_online(recorder, 2, timeout_s=90)
    caps = {n: recorder.json(f"nodes/{n}/capabilities")[-1] for n in ("cpu-node", "cuda-node")}
    assert caps["cpu-node"]["models"] == ["centerface", "face"]
    assert caps["cpu-node"]["model_runtimes"]["centerface"] == {"backend": "onnx", "device": "cpu", "heavy": True, "input_size": [960, 544]}
    assert caps["cpu-node"]["model_runtimes"]["face"] == {"backend": "litert", "device": "cpu", "heavy": False, "input_size": [128, 128]}
    assert "onnx" in caps["cpu-node"]["backends"] and caps["cpu-node"]["accelerators"] == []
    assert caps["cuda-node"]["models"] == ["face"]
    assert "CUDA execution provider not available" in fleet.log("cuda-node")

    scale = 46 / (REFERENCE_FACE[3] - REFERENCE_FACE[1])
    side = round(512 * scale)
    frame = cv2.resize(photo("coffee"), (1920, 1080))
    frame[600 : 600 + side, 1300 : 1300 + side] = cv2.resize(photo("astronaut"), (side, side), interpolation=cv2.INTER_AREA)
    truth = [1300 + v * scale if i % 2 == 0 else 600 + v * scale for i, v in enumerate(REFERENCE_FACE)]
    ok, jpeg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    recorder.publish("frames/far", envelope.pack(b'{"v":1,"model":"centerface"}', jpeg.tobytes()), qos=1)
    [result] = wait_until(lambda: detections(recorder, "far"), 60, "the centerface result")
    assert result["ok"] is True and result["node"] == "cpu-node"
    output = result["output"]
    assert output["model"] == "centerface" and (output["width"], output["height"]) == (1920, 1080)
    [face] = output["detections"]
    assert face["label"] == "face" and box_iou(face["box"], truth) >= 0.5, (face["box"], truth)
    beat = wait_until(lambda: next((b for b in reversed(recorder.json("nodes/cpu-node/heartbeat"))
                                    if "centerface" in b.get("service_by_model", {})), None), 30, "service_by_model in a heartbeat")
    assert beat["service_by_model"]["centerface"] > 0
