"""The core flows (birth, placement, death, restart, bad input), end to end, on real Mosquitto and real amqtt."""

from __future__ import annotations

import signal
import subprocess
from collections import Counter

import orjson
import pytest
from harness import Fleet, MosquittoSub, Recorder, wait_nodes_online, wait_until

pytestmark = pytest.mark.integration


def submit(recorder: Recorder, kind: str, job_id: str, **fields: object) -> None:
    recorder.publish("jobs/submit", orjson.dumps({"v": 1, "kind": kind, "id": job_id, **fields}))


def test_mosquitto_pub_job_produces_result_seen_by_mosquitto_sub(fleet: Fleet, recorder: Recorder, prefix: str) -> None:
    fleet.coordinator()
    fleet.agent("pi-1")
    wait_nodes_online(recorder, 1)
    port = str(fleet.broker.port)
    with MosquittoSub(port, f"{prefix}/results/#") as sub:
        job = '{"v":1,"kind":"sleep","id":"cli-job-1","params":{"seconds":0.05}}'
        subprocess.run(["mosquitto_pub", "-p", port, "-q", "1", "-t", f"{prefix}/jobs/submit", "-m", job], check=True)
        topic, payload = sub.next_message(timeout_s=20)
    assert topic == f"{prefix}/results/sleep/cli-job-1"
    result = orjson.loads(payload)
    assert result["job_id"] == "cli-job-1" and result["ok"] is True and result["node"] == "pi-1"
    assert result["output"] == {"slept_s": 0.05}
    wait_until(lambda: "DONE" in [s["state"] for s in recorder.states("cli-job-1")], 10, "DONE state")
    states = [s["state"] for s in recorder.states("cli-job-1")]
    assert states == ["REQUESTED", "SCHEDULED", "RUNNING", "DONE"], states


def test_jobs_go_only_to_capable_nodes_and_spread_across_equal_ones(fleet: Fleet, recorder: Recorder) -> None:
    fleet.coordinator()
    fleet.agent("jetson-1", EDGEHIVE_TAGS="gpu", EDGEHIVE_WORKERS="2", EDGEHIVE_SLOTS="2")
    fleet.agent("pi-1", EDGEHIVE_WORKERS="2", EDGEHIVE_SLOTS="2")
    wait_nodes_online(recorder, 2)

    for i in range(8):
        submit(recorder, "sleep", f"gpu-{i}", params={"seconds": 0.05}, requires={"tags": ["gpu"]})
    gpu_nodes = {recorder.wait_result(f"gpu-{i}")["node"] for i in range(8)}
    assert gpu_nodes == {"jetson-1"}

    for i in range(16):
        submit(recorder, "sleep", f"any-{i}", params={"seconds": 0.1})
    spread = Counter(recorder.wait_result(f"any-{i}")["node"] for i in range(16))
    assert set(spread) == {"jetson-1", "pi-1"}
    assert min(spread.values()) >= 4, spread

    submit(recorder, "sleep", "impossible", requires={"tags": ["coral"]})
    failed = recorder.wait_state("impossible", "FAILED", timeout_s=5)
    assert "no node can run" in failed["reason"] and "coral" in failed["reason"]


def test_agent_killed_mid_job_job_finishes_elsewhere_once(fleet: Fleet, recorder: Recorder) -> None:
    fleet.coordinator()
    fleet.agent("pi-1", EDGEHIVE_WORKERS="1", EDGEHIVE_SLOTS="1")
    fleet.agent("pi-2", EDGEHIVE_WORKERS="1", EDGEHIVE_SLOTS="1")
    wait_nodes_online(recorder, 2)

    submit(recorder, "sleep", "long-1", params={"seconds": 1.5})
    running = recorder.wait_state("long-1", "RUNNING")
    victim = running["node"]
    killed_at = recorder.mark()
    fleet.kill(victim, signal.SIGKILL)

    result = recorder.wait_result("long-1", timeout_s=20)
    assert result["ok"] is True
    assert result["node"] != victim and result["attempt"] == 2
    recorder.wait_state("long-1", "DONE")
    # Once: one result, one DONE, even after the dead node's lease and will have played out.
    wait_nodes_online(recorder, 1, timeout_s=10, after=killed_at)  # death noticed
    assert len(recorder.results("long-1")) == 1
    assert [s["state"] for s in recorder.states("long-1")].count("DONE") == 1
    requeued = [s for s in recorder.states("long-1") if s["state"] == "REQUESTED" and s.get("reason")]
    assert requeued and victim in requeued[0]["reason"]


def test_coordinator_restart_rebuilds_registry_and_loses_no_job(fleet: Fleet, recorder: Recorder) -> None:
    fleet.coordinator()
    fleet.agent("pi-1", EDGEHIVE_WORKERS="1", EDGEHIVE_SLOTS="1")
    fleet.agent("pi-2", EDGEHIVE_WORKERS="1", EDGEHIVE_SLOTS="1")
    wait_nodes_online(recorder, 2)
    boots = {c["node"]: c["boot_id"] for c in recorder.json("nodes/+/capabilities")}

    # Two jobs running and two queued behind them when the coordinator dies.
    for i in range(4):
        submit(recorder, "sleep", f"before-{i}", params={"seconds": 0.8})
    wait_until(lambda: sum(1 for i in range(4) for s in recorder.states(f"before-{i}") if s["state"] == "RUNNING") >= 2,
               10, "two jobs running")
    fleet.kill("coordinator", signal.SIGKILL)
    killed_at = recorder.mark()

    # A submission while no coordinator runs, through the CLI that re-sends until acknowledged.
    cli = subprocess.Popen(
        [*_cli(), "submit", "sleep", "--id", "during-1", "--params", '{"seconds": 0.05}', "--timeout", "40"],
        env=fleet.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    fleet.coordinator()
    wait_until(lambda: recorder.json("coordinator/stats", after=killed_at), 15, "coordinator back")
    wait_nodes_online(recorder, 2, after=killed_at)  # the new coordinator's count, not the old one's

    for job_id in [f"before-{i}" for i in range(4)] + ["during-1"]:
        result = recorder.wait_result(job_id, timeout_s=30)
        assert result["ok"] is True, (result, recorder.states(job_id))
        recorder.wait_state(job_id, "DONE", timeout_s=10)
    out, err = cli.communicate(timeout=30)
    assert cli.returncode == 0, err
    assert orjson.loads(out)["job_id"] == "during-1"
    # No agent restarted: the same boot ids, and both nodes known again.
    assert {c["node"]: c["boot_id"] for c in recorder.json("nodes/+/capabilities")} == boots


def _cli() -> list[str]:
    import sys

    return [sys.executable, "-m", "edgehive.cli"]


GARBAGE = [
    ("jobs/submit", b"not json"),
    ("jobs/submit", b'{"v": 1, "kind": 42}'),
    ("jobs/submit", b'{"v": 2, "kind": "sleep"}'),
    ("jobs/submit", b'{"v": 1, "kind": "sleep", "extra": true}'),
    ("jobs/submit", b"[1, 2, 3]"),
    ("jobs/submit", b""),
    ("jobs/submit", b'{"v":1,"kind":"sleep","params":{"seconds":"' + b"x" * 300_000 + b'"}}'),
    ("nodes/pi-1/heartbeat", b'{"v": 1, "node": "pi-1"}'),
    ("nodes/pi-1/heartbeat", b"\xff\xfe\x00garbage"),
    ("nodes/pi-1/capabilities", b'{"v": 1, "node": "pi-1", "cores": "many"}'),
    ("nodes/pi-1/status", b"maybe"),
    ("nodes/pi-1/jobs", b"{broken"),
    ("nodes/pi-1/jobs", b'{"v": 1, "id": "j", "kind": "sleep"}'),
    ("nodes/pi-1/jobs", b"z" * 2_000_000),
    ("nodes/pi-1/results", b'{"v": 1, "job_id": "x"}'),
    ("nodes/bad node!/heartbeat", b"{}"),
    ("nodes/pi-2/heartbeat", b'{"v":1,"node":"pi-1","boot_id":"b","seq":1,"ts":1,"cpu_pct":1,"mem_pct":1,"in_flight":0,"queued":0,"jobs_done":0,"jobs_failed":0}'),
    ("nodes/pi-2/results", b'{"v":1,"job_id":"j","kind":"sleep","node":"n","source":"y","ok":true,"timings":{}}'),
    ("nodes/pi-2/snapshots/door", b"\xff\xd8 from a node nobody knows"),
]


def test_garbage_on_every_topic_is_reported_and_nobody_crashes(fleet: Fleet, recorder: Recorder) -> None:
    fleet.coordinator()
    fleet.agent("pi-1")
    wait_nodes_online(recorder, 1)
    for suffix, payload in GARBAGE:
        recorder.publish(suffix, payload, qos=1)

    def reported() -> bool:
        topics = Counter(e["topic"].removeprefix(recorder.prefix + "/") for e in recorder.json("errors"))
        wanted = Counter(suffix for suffix, _ in GARBAGE)
        return all(topics[t] >= n for t, n in wanted.items())

    wait_until(reported, 20, "an error report for every garbage message")
    errors = recorder.json("errors")
    assert all(e["reason"] and e["source"] in ("coordinator", "pi-1") for e in errors)
    huge = [e for e in errors if e["size"] >= 2_000_000]
    assert huge and "exceeds" in huge[0]["reason"] and len(huge[0]["excerpt"]) <= 256
    assert fleet.alive("coordinator") and fleet.alive("pi-1")
    assert "Traceback" not in fleet.log("coordinator") + fleet.log("pi-1")

    submit(recorder, "sleep", "after-garbage", params={"seconds": 0.01})
    assert recorder.wait_result("after-garbage")["ok"] is True
