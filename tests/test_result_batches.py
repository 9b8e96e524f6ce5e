"""Results that travel together, end to end on both brokers: real coordinator, real agents.

Under a burst the coordinator sends each node an array of jobs and the agent answers with an
array of results; what users see must not change: every job has exactly one final state and
exactly one result on `results/{kind}/{source}`, and a node may answer only for its own jobs,
item by item."""

from __future__ import annotations

import signal

import orjson
import pytest
from harness import Fleet, Recorder, wait_nodes_online, wait_until

pytestmark = pytest.mark.integration

BURST = 300


def on_topic(recorder: Recorder, suffix: str) -> list[bytes]:
    topic = f"{recorder.prefix}/{suffix}"
    with recorder._lock:
        return [p for t, p, _ in recorder.messages if t == topic]


def test_a_burst_ends_every_job_once_with_its_result_though_results_travel_in_arrays(fleet: Fleet, recorder: Recorder) -> None:
    fleet.heartbeat_s = 1.0  # the coordinator is held stopped for a moment below: well inside dead_after
    coordinator = fleet.coordinator()
    for node in ("pi-1", "pi-2"):
        fleet.agent(node, EDGEHIVE_WORKERS="2", EDGEHIVE_SLOTS="64")
    wait_nodes_online(recorder, 2)
    ids = [f"burst-{i}" for i in range(BURST)]
    # Held stopped while the burst is published, the coordinator reads it many messages at a
    # time when it goes on, so it places many jobs per node at once: the array path, for sure.
    coordinator.send_signal(signal.SIGSTOP)
    try:
        for i, job_id in enumerate(ids):
            recorder.publish("jobs/submit", orjson.dumps({"v": 1, "kind": "noop", "id": job_id, "params": {"echo": i}}))
        wait_until(lambda: recorder.bus.outgoing_backlog() == 0, 10, "the burst to leave the recorder")
    finally:
        coordinator.send_signal(signal.SIGCONT)

    def done() -> int:
        return sum(1 for s in recorder.json("jobs/+/state") if s["state"] == "DONE")

    wait_until(lambda: done() >= BURST, 60, "every job DONE")
    wait_until(lambda: len(recorder.json("results/noop/+")) >= BURST, 20, "every result relayed")
    results = recorder.json("results/noop/+")
    assert sorted(r["job_id"] for r in results) == sorted(ids), "exactly one result per job"
    assert all(r["output"] == int(r["job_id"].split("-")[1]) for r in results), "each with its own output"
    finals = [s for s in recorder.json("jobs/+/state") if s["state"] in ("DONE", "FAILED")]
    assert sorted(s["job_id"] for s in finals) == sorted(ids) and {s["state"] for s in finals} == {"DONE"}

    arrays = [p for node in ("pi-1", "pi-2") for p in on_topic(recorder, f"nodes/{node}/results") if p.startswith(b"[")]
    assert arrays, "the agents answered part of the burst in arrays"

    # An idle fleet answers one job with one plain result, as before batching.
    recorder.publish("jobs/submit", orjson.dumps({"v": 1, "kind": "noop", "id": "alone", "params": {"echo": "x"}}))
    node = recorder.wait_state("alone", "DONE")["node"]
    alone = [p for p in on_topic(recorder, f"nodes/{node}/results") if b'"alone"' in p]
    assert len(alone) == 1 and orjson.loads(alone[0])["job_id"] == "alone"


def test_a_forged_item_in_a_batch_is_refused_on_errors_while_the_others_pass(fleet: Fleet, recorder: Recorder) -> None:
    """pi-2 sends an array: a result for pi-1's job, an item naming pi-1, and a result for its own
    job. The two forged items are refused with their reasons; its own job ends with that result;
    pi-1's job ends later with pi-1's own result, relayed once."""
    fleet.coordinator()
    fleet.agent("pi-1")
    fleet.agent("pi-2")
    wait_nodes_online(recorder, 2)
    for job_id, node in (("theirs", "pi-1"), ("mine", "pi-2")):
        recorder.publish("jobs/submit", orjson.dumps({"v": 1, "kind": "sleep", "id": job_id, "params": {"seconds": 2.0},
                                                      "requires": {"node": node}}))
    assert recorder.wait_state("theirs", "RUNNING")["node"] == "pi-1"
    assert recorder.wait_state("mine", "RUNNING")["node"] == "pi-2"

    def item(job_id: str, node: str, output: object) -> bytes:
        return orjson.dumps({"v": 1, "job_id": job_id, "kind": "sleep", "node": node, "source": job_id, "attempt": 1,
                             "ok": True, "output": output, "timings": {}})

    good = item("mine", "pi-2", {"slept_s": 0.0})
    batch = b"[" + b",".join([item("theirs", "pi-2", {"forged": 1}), item("theirs", "pi-1", {"forged": 2}), good]) + b"]"
    recorder.publish("nodes/pi-2/results", batch)

    def reasons() -> list[str]:
        return [e["reason"] for e in recorder.json("errors") if "theirs" in e.get("reason", "")]

    wait_until(lambda: len(reasons()) >= 2, 10, "both forged items refused")
    assert sorted(reasons()) == sorted([
        "result 2 of 3 (job theirs) names node 'pi-1' but arrived on node 'pi-2''s topic",
        "result for job theirs from node pi-2, but the job is placed on node pi-1: refused",
    ])
    assert recorder.wait_state("mine", "DONE")["node"] == "pi-2"
    assert on_topic(recorder, "results/sleep/mine") == [good], "the good item passed, relayed as it came"

    assert recorder.wait_state("theirs", "DONE")["node"] == "pi-1"
    relayed = [orjson.loads(p) for p in on_topic(recorder, "results/sleep/theirs")]
    assert [(r["node"], r["output"]) for r in relayed] == [("pi-1", {"slept_s": 2.0})]
    wait_until(lambda: any(s.get("duplicates", 0) >= 1 for s in recorder.json("coordinator/stats")), 10,
               "pi-2's own late result for 'mine' counted as a duplicate")
    assert [s["state"] for s in recorder.states("mine")].count("DONE") == 1
    assert len(on_topic(recorder, "results/sleep/mine")) == 1
