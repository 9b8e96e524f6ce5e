"""EDGEHIVE_JOB_STATES=final end to end, on real Mosquitto and real amqtt: `mosquitto_sub` on
jobs/+/state sees one message per job, its final state, a refused job's FAILED included, and
`edgehive submit`, which takes any state as its acknowledgement, still prints the result."""

from __future__ import annotations

import subprocess
import sys
from collections import defaultdict

import orjson
import pytest
from harness import Fleet, MosquittoSub, Recorder, wait_nodes_online

pytestmark = pytest.mark.integration


def test_with_final_states_each_job_publishes_only_its_final_state(fleet: Fleet, recorder: Recorder, prefix: str) -> None:
    fleet.coordinator(EDGEHIVE_JOB_STATES="final")
    fleet.agent("pi-1")
    wait_nodes_online(recorder, 1)
    port = str(fleet.broker.port)
    seen: dict[str, list[dict[str, object]]] = defaultdict(list)
    with MosquittoSub(port, f"{prefix}/jobs/+/state") as sub:
        # Runs longer than the 2 s after which `edgehive submit` re-sends an unacknowledged request:
        # the repeat of a job under way is answered with no state.
        cli = subprocess.Popen([sys.executable, "-m", "edgehive.cli", "submit", "sleep", "--id", "by-cli", "--params", '{"seconds": 2.5}',
                                "--timeout", "60"], env=fleet.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        job = '{"v":1,"kind":"sleep","id":"by-pub","params":{"seconds":0.05}}'
        subprocess.run(["mosquitto_pub", "-p", port, "-q", "1", "-t", f"{prefix}/jobs/submit", "-m", job], check=True)
        out, err = cli.communicate(timeout=90)
        odd = '{"v":1,"kind":"transmogrify","id":"odd"}'  # no node runs this kind: refused at submission
        subprocess.run(["mosquitto_pub", "-p", port, "-q", "1", "-t", f"{prefix}/jobs/submit", "-m", odd], check=True)
        # A job's states go out in order: any state before the final one would be printed before it.
        while {"by-cli", "by-pub", "odd"} - {job_id for job_id, states in seen.items() if states[-1]["state"] in ("DONE", "FAILED")}:
            topic, payload = sub.next_message(timeout_s=30)
            state = orjson.loads(payload)
            assert topic == f"{prefix}/jobs/{state['job_id']}/state"
            seen[state["job_id"]].append(state)
    assert cli.returncode == 0, err
    result = orjson.loads(out)
    assert (result["job_id"], result["ok"], result["node"], result["output"]) == ("by-cli", True, "pi-1", {"slept_s": 2.5})
    assert {job_id: [s["state"] for s in states] for job_id, states in seen.items()} == {"by-cli": ["DONE"], "by-pub": ["DONE"], "odd": ["FAILED"]}
    assert "no node can run" in str(seen["odd"][0]["reason"]) and seen["by-pub"][0]["node"] == "pi-1"
