"""Fault F4: the broker restarts under a stream of submissions. Every job submitted with
`edgehive submit` (before, during and after the outage) ends DONE and its submitter exits 0;
every component reconnects by itself. On amqtt the restart loses every session, subscription
and queued message, so this holds only because of our own re-sends and heartbeats."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from harness import Fleet, MosquittoSub, Recorder, wait_nodes_online, wait_until

pytestmark = pytest.mark.integration

BEFORE, DURING, AFTER = 12, 6, 12


def submit(fleet: Fleet, job_id: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "edgehive.cli", "submit", "sleep", "--id", job_id, "--params", '{"seconds": 0.2}', "--timeout", "90"],
        env=fleet.env(EDGEHIVE_LOG_LEVEL="WARNING"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


# Stopping the in-process amqtt broker while a dozen clients reconnect leaves, now and then (about
# one full-suite run in three), one server-side socket that amqtt's cancelled accept never closed;
# it is collected during this test and warned about. That is amqtt's bookkeeping inside the test
# process, not a fault of the fleet, whose outcome this test checks.
@pytest.mark.filterwarnings("ignore:Exception ignored in. <(function _SelectorTransport.__del__|socket.socket):pytest.PytestUnraisableExceptionWarning")
def test_every_submission_survives_a_broker_restart_and_everyone_reconnects(fleet: Fleet, recorder: Recorder) -> None:
    fleet.coordinator()
    fleet.agent("pi-1", EDGEHIVE_WORKERS="2", EDGEHIVE_SLOTS="2")
    fleet.agent("pi-2", EDGEHIVE_WORKERS="2", EDGEHIVE_SLOTS="2")
    wait_nodes_online(recorder, 2)

    procs = {f"before-{i}": submit(fleet, f"before-{i}") for i in range(BEFORE)}
    wait_until(lambda: sum(bool(recorder.states(job)) for job in procs) >= BEFORE // 2, 30, "half the first jobs acknowledged")
    fleet.broker.stop()
    procs |= {f"during-{i}": submit(fleet, f"during-{i}") for i in range(DURING)}
    time.sleep(2.0)  # the outage itself: the broker is down for this long on purpose
    fleet.broker.start()
    restarted = time.monotonic()
    port = str(fleet.broker.port)
    with MosquittoSub(port, f"{fleet.prefix}/nodes/+/heartbeat", f"{fleet.prefix}/coordinator/stats") as sub:
        procs |= {f"after-{i}": submit(fleet, f"after-{i}") for i in range(AFTER)}
        back: dict[str, float] = {}
        while len(back) < 3:
            topic, _ = sub.next_message(timeout_s=30)
            who = "coordinator" if topic.endswith("coordinator/stats") else topic.split("/")[-2]
            back.setdefault(who, time.monotonic() - restarted)

    outcomes = {job: proc.communicate(timeout=120) for job, proc in procs.items()}
    failed = {job: (procs[job].returncode, err[-300:]) for job, (_, err) in outcomes.items() if procs[job].returncode != 0}
    assert not failed, failed
    # Only the components' own reconnects count here; the recorder's view is not needed.
    print(f"\nF4 {fleet.broker.kind}: {len(procs)}/{len(procs)} submissions DONE; reconnected after the broker came back: "
          + ", ".join(f"{who} {seconds:.1f} s" for who, seconds in sorted(back.items())))
    assert set(back) == {"coordinator", "pi-1", "pi-2"}
