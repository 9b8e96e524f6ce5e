"""Results that travel together: an array on `nodes/{node}/results`, through the door into the core.

Agents send the results that finish together as one JSON array. The door (coordinator/ingest.py)
checks each item as it checks a single result, and the core gets one event per good item, so
every rule that holds per result (only the node a job is placed on may answer for it, one final
state per job, a relay per result) holds per item. These tests feed the door the bytes an agent
sends and the core what the door made of them, and read what users would see."""

from __future__ import annotations

import orjson
import pytest
from core_rig import Rig

from edgehive.coordinator.events import ResultIn, ResultsIn, Submitted
from edgehive.coordinator.ingest import Ingest
from edgehive.schemas import JobRequest, Result, encode


def door(rig: Rig) -> Ingest:
    return Ingest(rig.topics, rig.settings.camera_policy, 5.0, 3600.0)


def result_bytes(node: str, job_id: str, output: object = None, kind: str = "sleep") -> bytes:
    """What an agent encodes for one result (agents/runner.py → agents/agent.py)."""
    return encode(Result(job_id=job_id, kind=kind, node=node, source=job_id, attempt=1, ok=True, output=output,
                         timings={"started": 1.0, "finished": 2.0}))


def batch(*items: bytes) -> bytes:
    return b"[" + b",".join(items) + b"]"


def deliver(rig: Rig, node: str, payload: bytes) -> tuple[list[str], list[str]]:
    """The message through the door and the good items through the core: (door refusals, core errors)."""
    parsed = door(rig).result(rig.topics.node_results(node), payload)
    if isinstance(parsed, ResultIn):
        return [], rig.errors(rig.step(parsed))
    assert isinstance(parsed, ResultsIn)
    return [reason for reason, _ in parsed.refused], rig.errors(rig.step(*parsed.results))


def test_a_batch_of_results_ends_each_job_once_and_relays_each_result_as_its_own_message() -> None:
    rig = Rig()
    rig.node("pi-1", slots=4)
    rig.step(*(Submitted(rig.topics.submit, JobRequest(kind="sleep", id=f"j{i}")) for i in range(3)))
    assert rig.sent_ids("pi-1") == ["j0", "j1", "j2"]
    items = [result_bytes("pi-1", f"j{i}", {"n": i}) for i in range(3)]

    refused, errors = deliver(rig, "pi-1", batch(*items))

    assert refused == [] and errors == []
    for i in range(3):
        assert rig.state_names(f"j{i}") == ["REQUESTED", "SCHEDULED", "RUNNING", "DONE"]
        assert rig.relayed("sleep", f"j{i}") == [items[i]], "each item relayed alone, as the agent wrote it"
    assert rig.journal() == [("accepted", "j0"), ("accepted", "j1"), ("accepted", "j2"), ("ended", "j0"), ("ended", "j1"), ("ended", "j2")]
    assert rig.stats()["done"] == 3 and rig.stats()["in_flight"] == 0

    # The same batch again (a redelivery) is three duplicates: no second final state, no second relay.
    deliver(rig, "pi-1", batch(*items))
    assert rig.stats()["duplicates"] == 3 and all(rig.relayed("sleep", f"j{i}") == [items[i]] for i in range(3))
    assert all(rig.state_names(f"j{i}").count("DONE") == 1 for i in range(3))


def test_forged_and_broken_items_are_refused_one_by_one_and_the_good_ones_pass() -> None:
    rig = Rig()
    rig.node("pi-1")
    rig.node("pi-2")
    rig.submit("mine", requires={"node": "pi-2"})
    rig.submit("theirs", requires={"node": "pi-1"})
    assert rig.holder("mine") == "pi-2" and rig.holder("theirs") == "pi-1"
    good = result_bytes("pi-2", "mine", {"ok": 1})
    payload = batch(
        result_bytes("pi-2", "theirs", {"forged": True}),  # pi-2 answers for a job leased to pi-1
        result_bytes("pi-1", "theirs", {"forged": True}),  # an item naming another node than the topic's
        b'{"v":1,"job_id":"mine","kind":"sleep"}',  # not a result
        good,
    )

    refused, errors = deliver(rig, "pi-2", payload)

    assert refused[0] == "result 2 of 4 (job theirs) names node 'pi-1' but arrived on node 'pi-2''s topic"
    assert refused[1] == "result 3 of 4: node: Field required; source: Field required; ok: Field required; timings: Field required"
    assert len(refused) == 2
    assert errors == ["result for job theirs from node pi-2, but the job is placed on node pi-1: refused"]
    assert rig.state_names("mine")[-1] == "DONE" and rig.relayed("sleep", "mine") == [good]
    assert "DONE" not in rig.state_names("theirs") and rig.relayed("sleep", "theirs") == []
    assert rig.holder("theirs") == "pi-1", "the job stays with the node it is leased to"

    real = result_bytes("pi-1", "theirs", {"real": True})
    deliver(rig, "pi-1", real)  # a single result is still a plain object, as before
    assert rig.state_names("theirs")[-1] == "DONE" and rig.relayed("sleep", "theirs") == [real]


@pytest.mark.parametrize(("payload", "message"), [
    (b"[]", "an array of results must hold at least one result"),
    (b"  [1, 2", "unexpected end of data"),
])
def test_a_results_message_that_is_no_usable_array_is_refused_whole(payload: bytes, message: str) -> None:
    rig = Rig()
    with pytest.raises(ValueError) as raised:  # Rejected is a ValueError; the bus reports either on errors
        door(rig).result(rig.topics.node_results("pi-1"), payload)
    assert message in str(raised.value)


def test_an_item_that_is_not_an_object_is_refused_with_its_place_in_the_batch() -> None:
    rig = Rig()
    parsed = door(rig).results(rig.topics.node_results("pi-1"), batch(b"7", result_bytes("pi-1", "x")))
    assert [r.result.job_id for r in parsed.results] == ["x"]
    [(reason, raw)] = parsed.refused
    assert reason.startswith("result 1 of 2: ") and raw == b"7"


def test_frames_results_in_a_batch_count_per_frame() -> None:
    rig = Rig()
    rig.node("cam-node", slots=2, kinds=("detections",), models=("face",))
    rig.frame("door")
    [job] = rig.sent("cam-node")
    item = result_bytes("cam-node", job["id"], {"objects": []}, kind="detections")
    item = orjson.dumps({**orjson.loads(item), "source": "door"})
    refused, errors = deliver(rig, "cam-node", batch(item))
    assert refused == [] and errors == []
    assert rig.relayed("detections", "door") == [item]
    assert rig.stats()["frames_done"] == {"door": 1}
