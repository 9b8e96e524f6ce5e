"""Liveness from our own heartbeats and drains, on both brokers (amqtt sends no will on silent death)."""

from __future__ import annotations

import signal

import orjson
import pytest
from harness import Fleet, Recorder, wait_nodes_online, wait_until

pytestmark = pytest.mark.integration


def submit(recorder: Recorder, job_id: str, seconds: float, **fields: object) -> None:
    recorder.publish("jobs/submit", orjson.dumps({"v": 1, "kind": "sleep", "id": job_id, "params": {"seconds": seconds}, **fields}))


def last_status(recorder: Recorder, node: str) -> dict:  # type: ignore[type-arg]
    return recorder.json(f"nodes/{node}/status")[-1]


def test_sigterm_drains_in_flight_work_then_says_offline(fleet: Fleet, recorder: Recorder) -> None:
    fleet.coordinator()
    agent = fleet.agent("pi-1", EDGEHIVE_WORKERS="1", EDGEHIVE_SLOTS="1")
    wait_nodes_online(recorder, 1)
    submit(recorder, "drain-1", 0.8)
    recorder.wait_state("drain-1", "RUNNING")
    agent.send_signal(signal.SIGTERM)
    submit(recorder, "after-drain", 0.01)  # must not go to the draining node

    result = recorder.wait_result("drain-1")
    assert result["ok"] is True and result["node"] == "pi-1"
    assert agent.wait(20) == 0
    status = wait_until(lambda: (s := last_status(recorder, "pi-1"))["state"] == "offline" and s, 10, "offline status")
    assert status["reason"] == "drained"
    assert all(s.get("node") != "pi-1" for s in recorder.states("after-drain") if s["state"] == "SCHEDULED")
    assert len(recorder.results("drain-1")) == 1


def test_frozen_agent_is_declared_dead_by_heartbeat_timeout_and_comes_back(fleet: Fleet, recorder: Recorder) -> None:
    """SIGSTOP keeps the TCP connection open, so no broker will fire: only heartbeats can tell."""
    fleet.coordinator()
    frozen = fleet.agent("pi-1", EDGEHIVE_WORKERS="1", EDGEHIVE_SLOTS="1")
    fleet.agent("pi-2", EDGEHIVE_WORKERS="1", EDGEHIVE_SLOTS="1")
    wait_nodes_online(recorder, 2)
    submit(recorder, "frozen-1", 0.6, requires={"node": "pi-1"})
    recorder.wait_state("frozen-1", "RUNNING")
    frozen.send_signal(signal.SIGSTOP)
    try:
        wait_nodes_online(recorder, 1)
        offline = wait_until(lambda: (s := last_status(recorder, "pi-1"))["state"] == "offline" and s, 10, "offline published for it")
        assert offline["reason"] == "heartbeat timeout"
        assert recorder.wait_state("frozen-1", "SCHEDULED")["node"] == "pi-1"
        wait_until(lambda: any(s["state"] == "REQUESTED" and "heartbeat" in (s.get("reason") or "") for s in recorder.states("frozen-1")),
                   10, "the job re-queued because of the heartbeat timeout")
    finally:
        frozen.send_signal(signal.SIGCONT)
    # Back: it heartbeats again, corrects its retained status, and the pinned job runs there.
    wait_nodes_online(recorder, 2)
    wait_until(lambda: last_status(recorder, "pi-1")["state"] == "online", 10, "pi-1 re-announces online")
    result = recorder.wait_result("frozen-1")
    assert result["node"] == "pi-1"
    wait_until(lambda: any(s["state"] == "DONE" for s in recorder.states("frozen-1")), 10, "DONE")
    assert [s["state"] for s in recorder.states("frozen-1")].count("DONE") == 1


def test_a_late_will_from_an_earlier_boot_never_kills_the_restarted_agent(fleet: Fleet, recorder: Recorder) -> None:
    """The old process hangs (SIGSTOP) and a new one starts under the same node id: the broker
    drops the old connection and (Mosquitto) publishes its will *after* the new boot is online."""
    fleet.coordinator()
    old = fleet.agent("pi-1")
    wait_nodes_online(recorder, 1)
    old_boot = recorder.json("nodes/pi-1/capabilities")[-1]["boot_id"]
    old.send_signal(signal.SIGSTOP)
    fleet.rename("pi-1", "pi-1-old")
    fleet.agent("pi-1")
    new_boot = wait_until(lambda: (b := recorder.json("nodes/pi-1/capabilities")[-1]["boot_id"]) != old_boot and b, 15, "the new boot")
    if fleet.broker.kind == "mosquitto":
        wait_until(lambda: any(s.get("state") == "offline" and s.get("boot_id") == old_boot for s in recorder.json("nodes/pi-1/status")),
                   15, "the old boot's will")
    fleet.kill("pi-1-old")
    submit(recorder, "after-will", 0.01)
    result = recorder.wait_result("after-will")
    assert result["node"] == "pi-1" and result["ok"] is True
    # The coordinator's first stats after the result (an earlier one may predate the new boot's birth).
    seen_stats = len(recorder.json("coordinator/stats"))
    after = wait_until(lambda: recorder.json("coordinator/stats")[seen_stats:], 10, "stats after the result")
    assert after[0]["nodes_online"] == 1
    assert not any("pi-1 went offline" in (s.get("reason") or "") for s in recorder.states("after-will"))
    assert new_boot != old_boot
    # The old boot may be declared dead (its will can arrive before the new boot's birth), the new one never.
    assert f"node pi-1 (boot {new_boot}) is dead" not in fleet.log("coordinator")
