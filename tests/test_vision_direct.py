"""Direct frames end to end on real brokers: `edgehive camera` → the agent that asked → detections.

Direct frames are opt-in (`EDGEHIVE_DIRECT=true`): these cameras turn them on, and one test
checks that a camera left at the default never goes direct. With them on, the coordinator assigns the camera to the agents with its model; the frames never reach
`frames/{camera}` (so never the coordinator); results still come out on
`results/detections/{camera}`, checked and relayed by the coordinator, and its stats add up.
"""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import cv2
import orjson
import pytest
from harness import Fleet, MosquittoSub, Recorder, wait_nodes_online, wait_until
from vision_fixtures import REFERENCE_FACE, box_iou, models_dir, photo  # noqa: F401  (fixture)

pytestmark = pytest.mark.integration


def detections(recorder: Recorder, camera: str, after: int = 0) -> list[dict]:  # type: ignore[type-arg]
    return recorder.json(f"results/detections/{camera}", after)


def astronaut_folder(tmp_path: Path) -> Path:
    """A folder with the real astronaut photo: the camera service plays it over and over."""
    folder = tmp_path / "frames"
    folder.mkdir()
    cv2.imwrite(str(folder / "astronaut.jpg"), photo("astronaut"))
    return folder


def start(fleet: Fleet, recorder: Recorder, models_dir: Path, nodes: list[str], slots: str = "2") -> None:
    fleet.coordinator(EDGEHIVE_CAMERA_MODELS="door=face")
    for node in nodes:
        fleet.agent(node, EDGEHIVE_MODELS_DIR=str(models_dir), EDGEHIVE_MODELS="face", EDGEHIVE_WORKERS="1", EDGEHIVE_SLOTS=slots)
    wait_nodes_online(recorder, len(nodes), timeout_s=60)


def assigned(recorder: Recorder, camera: str) -> list[str] | None:
    found = recorder.json(f"cameras/{camera}/assigned")
    return found[-1].get("nodes") if found else None


def final_stats(recorder: Recorder, camera: str) -> dict:  # type: ignore[type-arg]
    """Stats, after the camera stopped, in which its frames add up with none in flight and
    `frames_done` is exactly the results seen on `results/detections/{camera}`."""
    def settled() -> dict | None:  # type: ignore[type-arg]
        for stats in reversed(recorder.json("coordinator/stats")):
            n_in = stats["frames_in"].get(camera, 0)
            rest = sum(stats[k].get(camera, 0) for k in ("frames_done", "frames_dropped", "frames_lost"))
            if n_in and n_in == rest and stats["frames_done"].get(camera) == len(detections(recorder, camera)):
                return stats  # type: ignore[no-any-return]
            break
        return None
    return wait_until(settled, 30, f"stats of {camera} to add up")  # type: ignore[no-any-return]


def test_a_camera_sends_frames_straight_to_two_agents_and_faces_come_back(fleet: Fleet, recorder: Recorder, models_dir: Path,
                                                                          tmp_path: Path) -> None:
    start(fleet, recorder, models_dir, ["pi-1", "pi-2"])
    fleet.camera("porch", EDGEHIVE_SOURCE=str(astronaut_folder(tmp_path)), EDGEHIVE_FPS="20", EDGEHIVE_MODEL="face", EDGEHIVE_DIRECT="true")
    wait_until(lambda: assigned(recorder, "porch") == ["pi-1", "pi-2"], 30, "porch assigned to both agents")
    results = wait_until(lambda: len(found := [r for r in detections(recorder, "porch") if r["ok"]]) >= 20
                         and {r["node"] for r in found} == {"pi-1", "pi-2"} and found, 60, "detections from both agents")
    for result in results:
        [face] = result["output"]["detections"]
        assert face["label"] == "face" and box_iou(face["box"], REFERENCE_FACE) >= 0.5
    assert sum(r["job_id"].startswith("d.") for r in results) >= len(results) - 2
    # Until its assignment arrives (just after its first frame) the camera uses frames/porch, the
    # coordinator's path; from its first direct frame on, the JPEGs go only to the agents' own topics.
    topics = [t for t, _, _ in list(recorder.messages) if t.endswith("/frames/porch")]
    first_direct = next(i for i, t in enumerate(topics) if "/nodes/" in t)
    assert all("/nodes/" in t for t in topics[first_direct:])
    fleet.kill("porch", signal.SIGTERM)
    stats = final_stats(recorder, "porch")
    assert stats["frames_done"]["porch"] >= 20
    assert wait_until(lambda: assigned(recorder, "porch") == [] or recorder.json("cameras/porch/assigned")[-1] == {"raw": ""}, 10,
                      "the assignment cleared when the camera stopped")
    assert "Traceback" not in fleet.log("coordinator") + fleet.log("pi-1") + fleet.log("pi-2") + fleet.log("porch")


def test_a_killed_agents_share_moves_to_the_other_and_the_books_still_balance(fleet: Fleet, recorder: Recorder, models_dir: Path,
                                                                             tmp_path: Path) -> None:
    start(fleet, recorder, models_dir, ["pi-1", "pi-2"])
    fleet.camera("porch", EDGEHIVE_SOURCE=str(astronaut_folder(tmp_path)), EDGEHIVE_FPS="20", EDGEHIVE_MODEL="face", EDGEHIVE_DIRECT="true")
    wait_until(lambda: {r["node"] for r in detections(recorder, "porch") if r["ok"]} == {"pi-1", "pi-2"}, 60, "both agents serving")
    fleet.kill("pi-2")
    wait_until(lambda: assigned(recorder, "porch") == ["pi-1"], 30, "pi-2 left the assignment")
    mark = recorder.mark()
    after = wait_until(lambda: len(found := detections(recorder, "porch", mark)) >= 15 and found, 60, "frames after the kill")
    assert {r["node"] for r in after} == {"pi-1"}
    assert all(r["ok"] and r["output"]["detections"][0]["label"] == "face" for r in after)
    fleet.kill("porch", signal.SIGTERM)
    stats = final_stats(recorder, "porch")
    assert stats["frames_done"]["porch"] >= 15
    assert "Traceback" not in fleet.log("coordinator") + fleet.log("pi-1") + fleet.log("porch")


def test_raw_jpeg_from_mosquitto_pub_still_goes_through_the_coordinator(fleet: Fleet, recorder: Recorder, models_dir: Path,
                                                                        prefix: str, tmp_path: Path) -> None:
    """A camera that is not ours (no offer) keeps the coordinator's path, next to a direct one."""
    start(fleet, recorder, models_dir, ["pi-1"])
    fleet.camera("porch", EDGEHIVE_SOURCE=str(astronaut_folder(tmp_path)), EDGEHIVE_FPS="5", EDGEHIVE_MODEL="face", EDGEHIVE_DIRECT="true")
    wait_until(lambda: assigned(recorder, "porch") == ["pi-1"], 30, "porch assigned")
    jpeg = tmp_path / "frames" / "astronaut.jpg"
    port = str(fleet.broker.port)
    with MosquittoSub(port, f"{prefix}/results/detections/door") as sub:
        subprocess.run(["mosquitto_pub", "-p", port, "-t", f"{prefix}/frames/door", "-f", str(jpeg)], check=True)
        _, payload = sub.next_message(timeout_s=30)
    result = orjson.loads(payload)
    assert result["ok"] and not result["job_id"].startswith("d.")
    [face] = result["output"]["detections"]
    assert box_iou(face["box"], REFERENCE_FACE) >= 0.5
    wait_until(lambda: any(r["ok"] for r in detections(recorder, "porch")), 30, "the direct camera served too")


def test_a_camera_killed_and_started_again_goes_direct_again_under_its_new_boot(fleet: Fleet, recorder: Recorder, models_dir: Path,
                                                                               tmp_path: Path) -> None:
    start(fleet, recorder, models_dir, ["pi-1"])
    folder = astronaut_folder(tmp_path)
    fleet.camera("porch", EDGEHIVE_SOURCE=str(folder), EDGEHIVE_FPS="10", EDGEHIVE_MODEL="face", EDGEHIVE_DIRECT="true")

    def direct_boots() -> set[str]:
        return {r["job_id"].split(".")[1] for r in detections(recorder, "porch") if r["job_id"].startswith("d.") and r["ok"]}

    first = wait_until(direct_boots, 60, "direct detections")
    fleet.kill("porch")  # SIGKILL: its will withdraws the offer
    fleet.camera("porch", EDGEHIVE_SOURCE=str(folder), EDGEHIVE_FPS="10", EDGEHIVE_MODEL="face", EDGEHIVE_DIRECT="true")
    wait_until(lambda: direct_boots() - first, 60, "direct detections from the new boot")
    assert "Traceback" not in fleet.log("coordinator") + fleet.log("pi-1")


@pytest.mark.parametrize("broker", ["mosquitto"], indirect=True)  # the camera's choice does not depend on the broker
def test_a_camera_left_at_the_default_publishes_on_frames_and_never_offers_itself(fleet: Fleet, recorder: Recorder, models_dir: Path,
                                                                                 tmp_path: Path) -> None:
    """Without EDGEHIVE_DIRECT every frame goes to frames/porch (users watch that topic) and is
    served through the coordinator; the camera never offers itself on cameras/porch/direct."""
    start(fleet, recorder, models_dir, ["pi-1"])
    fleet.camera("porch", EDGEHIVE_SOURCE=str(astronaut_folder(tmp_path)), EDGEHIVE_FPS="10", EDGEHIVE_MODEL="face")
    results = wait_until(lambda: len(found := [r for r in detections(recorder, "porch") if r["ok"]]) >= 10 and found, 60,
                         "detections through the coordinator")
    for result in results:
        assert not result["job_id"].startswith("d.")
        [face] = result["output"]["detections"]
        assert face["label"] == "face" and box_iou(face["box"], REFERENCE_FACE) >= 0.5
    fleet.kill("porch", signal.SIGTERM)
    frames = [t for t, _, _ in list(recorder.messages) if t.endswith("/frames/porch")]
    assert len(frames) >= 10 and all(t == f"{recorder.prefix}/frames/porch" for t in frames)
    # The recorder subscribed to everything before the camera started, so an offer (retained or
    # not), a want or an assignment naming agents would be here.
    assert recorder.json("cameras/porch/direct") == []
    assert recorder.json("cameras/porch/want/+") == []
    assert not [a for a in recorder.json("cameras/porch/assigned") if a.get("nodes")]
    assert "Traceback" not in fleet.log("coordinator") + fleet.log("pi-1") + fleet.log("porch")


def test_a_camera_served_through_the_coordinator_leaves_no_assignment_behind(fleet: Fleet, recorder: Recorder, models_dir: Path,
                                                                            tmp_path: Path) -> None:
    """A direct camera whose settings need the coordinator (tiles) is answered with no nodes and
    falls back to frames/porch; once it stops, that retained answer is cleared like any other
    (it used to stay on the broker, naming the camera's old boot)."""
    fleet.coordinator(EDGEHIVE_CAMERAS='{"porch": {"tiles": "3x2"}}')
    fleet.agent("pi-1", EDGEHIVE_MODELS_DIR=str(models_dir), EDGEHIVE_MODELS="face", EDGEHIVE_WORKERS="1")
    wait_nodes_online(recorder, 1, timeout_s=60)
    fleet.camera("porch", EDGEHIVE_SOURCE=str(astronaut_folder(tmp_path)), EDGEHIVE_FPS="5", EDGEHIVE_MODEL="face", EDGEHIVE_DIRECT="true")
    wait_until(lambda: assigned(recorder, "porch") == [], 60, "an answer with no nodes")
    wait_until(lambda: [r for r in detections(recorder, "porch") if r["ok"] and "parts" in r["output"]], 60, "tiled results via the coordinator")
    fleet.kill("porch", signal.SIGTERM)  # a clean stop withdraws the offer
    wait_until(lambda: recorder.json("cameras/porch/direct")[-1] == {"raw": ""}, 30, "the offer withdrawn")
    wait_until(lambda: recorder.json("cameras/porch/assigned")[-1] == {"raw": ""}, 30, "the answer cleared")
    assert "Traceback" not in fleet.log("coordinator") + fleet.log("pi-1") + fleet.log("porch")
