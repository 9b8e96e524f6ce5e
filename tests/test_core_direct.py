"""Direct frames in the coordinator's core, driven by events: assignments, trusted results, counts.

The frames themselves never reach the core (sensors/direct.py sends them to the agents); what
it sees is the camera's offer and counts, the nodes' births and deaths, and the results."""

from __future__ import annotations

from typing import Any

import orjson
from core_rig import Rig

from edgehive.coordinator.events import CameraCountsIn, CameraOfferIn, Now, ResultIn
from edgehive.schemas import Result
from edgehive.schemas.direct import CameraCounts, CameraOffer


def offer(rig: Rig, camera: str = "porch", boot: str = "c1", model: str | None = "face", size: tuple[int, int] = (512, 512)) -> Any:
    return rig.step(CameraOfferIn(rig.topics.camera_direct(camera), camera,
                                  CameraOffer(boot=boot, model=model, width=size[0], height=size[1], ts=rig.now.wall)))


def counts(rig: Rig, frames_in: int, dropped: int, sent: dict[str, int], camera: str = "porch", boot: str = "c1") -> Any:
    return rig.step(CameraCountsIn(rig.topics.camera_counts(camera), camera,
                                   CameraCounts(boot=boot, frames_in=frames_in, dropped=dropped, sent=sent, ts=rig.now.wall)))


def assigned(rig: Rig, camera: str = "porch") -> list[Any]:
    topic = rig.topics.camera_assigned(camera)
    return [orjson.loads(m.payload) if m.payload else None for m in rig.log.publish if m.topic == topic]


def direct_result(rig: Rig, node: str, seq: int, camera: str = "porch", boot: str = "c1", refused: bool = False) -> tuple[Any, bytes]:
    if refused:
        result = Result(job_id=f"d.{boot}.{seq}", kind="detections", node=node, source=camera, ok=False, error="node is full",
                        retryable=True, timings={})
        payload = orjson.dumps(result.model_dump(exclude_none=True))
        return rig.step(ResultIn(rig.topics.node_results(node), result, payload)), payload
    return rig.result(node, f"d.{boot}.{seq}", kind="detections", source=camera, output={"detections": []})


def face_node(rig: Rig, name: str, boot: str = "b1") -> None:
    rig.node(name, slots=2, kinds=("detections",), models=("face",), inputs={"face": (128, 128)}, boot=boot)


def test_an_offered_camera_is_assigned_to_every_live_node_with_its_model() -> None:
    rig = Rig()
    face_node(rig, "pi-1")
    rig.node("pi-2", kinds=("detections",), models=("person",))
    face_node(rig, "pi-3")
    offer(rig)
    [assignment] = assigned(rig)
    assert assignment["nodes"] == ["pi-1", "pi-3"] and assignment["boot"] == "c1"
    assert assignment["params"] == {"model": "face"}


def test_a_camera_that_needs_tiles_or_a_pipeline_stays_on_the_coordinator_path() -> None:
    rig = Rig()
    face_node(rig, "pi-1")
    offer(rig, size=(3840, 2160))  # far larger than the model's input: tiled, which only the coordinator does
    assert assigned(rig) == [{**assigned(rig)[0], "nodes": []}]


def test_a_withdrawn_camera_that_was_served_through_the_coordinator_is_unassigned_too() -> None:
    """Its retained answer named no nodes; withdrawing the offer clears it all the same (it used
    to stay on the broker, retained, naming the camera's old boot)."""
    rig = Rig()
    face_node(rig, "pi-1")
    offer(rig, size=(3840, 2160))  # tiled: no nodes, frames through the coordinator
    assert assigned(rig)[-1]["nodes"] == []
    rig.step(CameraOfferIn(rig.topics.camera_direct("porch"), "porch", None))
    assert assigned(rig)[-1] is None


def test_a_result_is_relayed_only_from_an_assigned_node() -> None:
    rig = Rig()
    face_node(rig, "pi-1")
    rig.node("pi-9", kinds=("detections",), models=("person",))
    offer(rig)
    actions, payload = direct_result(rig, "pi-1", 1)
    assert rig.relayed("detections", "porch", actions) == [payload]
    refused, _ = direct_result(rig, "pi-9", 2)
    assert rig.relayed("detections", "porch", refused) == []
    assert "not assigned to that camera: refused" in rig.errors(refused)[0]


def test_a_dead_nodes_share_moves_and_its_unanswered_frames_are_lost_until_a_late_result() -> None:
    rig = Rig()
    face_node(rig, "pi-1")
    face_node(rig, "pi-2")
    offer(rig)
    counts(rig, 10, 2, {"pi-1/b1": 4, "pi-2/b1": 4})
    for seq in range(1, 5):
        direct_result(rig, "pi-1", seq)
    direct_result(rig, "pi-2", 5)
    direct_result(rig, "pi-2", 6, refused=True)  # could not take it: a drop
    stats = rig.stats()
    assert (stats["frames_in"]["porch"], stats["frames_done"]["porch"], stats["frames_dropped"]["porch"]) == (10, 5, 3)
    assert stats["frames_lost"].get("porch", 0) == 0  # pi-2's other two are still in flight
    rig.offline("pi-2", reason="lost connection")
    assert assigned(rig)[-1]["nodes"] == ["pi-1"]
    stats = rig.stats()
    assert stats["frames_lost"]["porch"] == 2
    assert stats["frames_in"]["porch"] == stats["frames_done"]["porch"] + stats["frames_dropped"]["porch"] + stats["frames_lost"]["porch"]
    direct_result(rig, "pi-2", 7)  # sent while it was assigned, answered late: done, one fewer lost
    stats = rig.stats()
    assert (stats["frames_done"]["porch"], stats["frames_lost"]["porch"]) == (6, 1)


def test_counts_never_fall_behind_the_results_and_a_withdrawn_camera_is_unassigned() -> None:
    rig = Rig()
    face_node(rig, "pi-1")
    offer(rig)
    counts(rig, 1, 0, {"pi-1/b1": 1})
    for seq in range(1, 4):  # results come as they happen, counts once a second
        direct_result(rig, "pi-1", seq)
    stats = rig.stats()
    assert stats["frames_in"]["porch"] >= stats["frames_done"]["porch"] == 3
    rig.step(CameraOfferIn(rig.topics.camera_direct("porch"), "porch", None))
    assert assigned(rig)[-1] is None


def test_a_frame_a_live_node_never_answers_is_lost_after_a_lease_and_done_if_it_answers_late() -> None:
    rig = Rig()
    face_node(rig, "pi-1")
    offer(rig)
    counts(rig, 2, 0, {"pi-1/b1": 2})
    direct_result(rig, "pi-1", 1)
    assert rig.stats()["frames_lost"].get("porch", 0) == 0  # one in flight
    rig.advance(rig.settings.lease + 0.1)
    rig.beat("pi-1")
    assert rig.stats()["frames_lost"]["porch"] == 1  # lost on the way (QoS 0), or the node dropped it
    direct_result(rig, "pi-1", 2)
    stats = rig.stats()
    assert (stats["frames_done"]["porch"], stats["frames_lost"].get("porch", 0)) == (2, 0)


def test_a_restarted_camera_gets_an_answer_for_its_new_boot() -> None:
    rig = Rig()
    face_node(rig, "pi-1")
    offer(rig, boot="c1")
    offer(rig, boot="c2")
    assert [(a["boot"], a["nodes"]) for a in assigned(rig)] == [("c1", ["pi-1"]), ("c2", ["pi-1"])]


def test_a_coordinator_that_just_started_does_not_answer_an_offer_with_no_nodes() -> None:
    rig = Rig(now=Now(1_000_000.0, 0.5))  # half a second after the start
    offer(rig)  # the offer (retained) came before any birth certificate
    assert assigned(rig) == []
    face_node(rig, "pi-1")
    assert assigned(rig)[-1]["nodes"] == ["pi-1"]
