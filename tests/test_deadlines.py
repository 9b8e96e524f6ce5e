"""Time limits on running jobs, RUNNING only when a job starts, and prefetched jobs off a stuck node."""

from __future__ import annotations

import orjson
import pytest
from harness import Fleet, Recorder, wait_nodes_online, wait_until

pytestmark = pytest.mark.integration


def submit(recorder: Recorder, job_id: str, seconds: float, **fields: object) -> None:
    recorder.publish("jobs/submit", orjson.dumps({"v": 1, "kind": "sleep", "id": job_id, "params": {"seconds": seconds}, **fields}))


def finals(recorder: Recorder, job_id: str) -> list[dict]:
    return [s for s in recorder.states(job_id) if s["state"] in ("DONE", "FAILED")]


def held_by(recorder: Recorder, node: str, job_id: str) -> bool:
    return any(job_id in beat.get("held", ()) for beat in recorder.json(f"nodes/{node}/heartbeat")[-3:])


def test_running_job_fails_at_its_deadline_and_frees_its_slot(fleet: Fleet, recorder: Recorder) -> None:
    """A sleep far longer than its deadline is FAILED at the deadline, with the reason, once, and
    the node's only slot is free again at once (sleep is cancelled, not left to run for minutes)."""
    fleet.coordinator()
    fleet.agent("pi-1", EDGEHIVE_WORKERS="1", EDGEHIVE_SLOTS="1")
    wait_nodes_online(recorder, 1)

    submit(recorder, "long", 300, deadline_s=1.5)
    recorder.wait_state("long", "RUNNING")
    failed = recorder.wait_state("long", "FAILED", timeout_s=10)
    # The agent's and the coordinator's verdicts read the same (README, Deadlines), whichever comes first.
    assert failed["reason"] == "deadline of 1.5 s passed while running on node pi-1", failed
    submit(recorder, "next", 0.05)
    assert recorder.wait_result("next", timeout_s=10)["ok"] is True
    recorder.wait_state("next", "DONE")
    # The agent cancelled it and said so on its own topic; the coordinator relays that result only
    # if it beat the coordinator's own verdict (one final word per job either way).
    wait_until(lambda: [r for r in recorder.json("nodes/pi-1/results") if r.get("job_id") == "long"], 10, "the cancelled job's own result")
    assert len(finals(recorder, "long")) == 1, recorder.states("long")


def test_prefetched_job_is_not_running_and_moves_off_a_stuck_node(fleet: Fleet, recorder: Recorder) -> None:
    """pi-2 is busy with a pinned job, so `waiting` is prefetched on pi-1 behind a long job. It is
    not announced RUNNING while it waits; pi-1 hands it back and it runs on pi-2, no attempt used."""
    fleet.coordinator()
    fleet.agent("pi-1", EDGEHIVE_WORKERS="1", EDGEHIVE_SLOTS="2", EDGEHIVE_PREFETCH_WAIT_MAX_S="1")
    fleet.agent("pi-2", EDGEHIVE_WORKERS="1", EDGEHIVE_SLOTS="1")
    wait_nodes_online(recorder, 2)

    submit(recorder, "pinned", 3, requires={"node": "pi-2"})
    assert recorder.wait_state("pinned", "RUNNING")["node"] == "pi-2"
    submit(recorder, "stuck", 300)
    assert recorder.wait_state("stuck", "RUNNING")["node"] == "pi-1"
    submit(recorder, "waiting", 0.05)
    assert recorder.wait_state("waiting", "SCHEDULED")["node"] == "pi-1"
    wait_until(lambda: held_by(recorder, "pi-1", "waiting"), 10, "pi-1's heartbeat to list the prefetched job")
    states = recorder.states("waiting")
    assert "RUNNING" not in [s["state"] for s in states], states

    result = recorder.wait_result("waiting", timeout_s=20)
    assert result["ok"] and result["node"] == "pi-2" and result["attempt"] == 1, result
    handed_back = [s for s in recorder.states("waiting") if s["state"] == "REQUESTED" and s.get("reason")]
    assert handed_back and "pi-1" in handed_back[0]["reason"] and "worker" in handed_back[0]["reason"], handed_back
    running = [s for s in recorder.states("waiting") if s["state"] == "RUNNING"]
    assert [s["node"] for s in running] == ["pi-2"], running
    recorder.wait_state("waiting", "DONE")
    assert len(finals(recorder, "waiting")) == 1
