"""Bad input at the door (fault F6): what cannot round-trip, what needs guessing, what no node
can run, what is retained, and a journal that cannot be written: refused or survived, never
a wedged coordinator. Real mosquitto_pub, both brokers."""

from __future__ import annotations

import shutil
import signal
import subprocess

import orjson
import pytest
from harness import Fleet, Recorder, wait_nodes_online, wait_until

pytestmark = pytest.mark.integration

WEDGE = '{"v":1,"kind":"noop","params":{"echo":18446744073709551616}}'  # 2**64: beyond 64 bits


def mosquitto_pub(fleet: Fleet, topic: str, message: str, *extra: str) -> None:
    subprocess.run(["mosquitto_pub", "-p", str(fleet.broker.port), "-q", "1", "-t", f"{fleet.prefix}/{topic}", "-m", message, *extra],
                   check=True, timeout=10)


def errors_about(recorder: Recorder, text: str) -> list[dict]:  # type: ignore[type-arg]
    return [e for e in recorder.json("errors") if text in e["reason"]]


def stats_after(recorder: Recorder, count: int, done: int = 0) -> dict:  # type: ignore[type-arg]
    """A coordinator/stats message that arrived after the first `count` ones and counts `done` jobs."""
    return wait_until(lambda: next((s for s in recorder.json("coordinator/stats")[count:] if s["done"] >= done), None), 10, "fresh coordinator/stats")


def test_values_that_cannot_round_trip_or_need_guessing_are_refused_and_work_goes_on(fleet: Fleet, recorder: Recorder) -> None:
    fleet.coordinator()
    fleet.agent("pi-1")
    wait_nodes_online(recorder, 1)
    bad = {
        "64 bits": WEDGE,
        "NaN and infinities": '{"v":1,"kind":"noop","id":"inf-1","params":{"echo":1e309}}',
        "priority": '{"v":1,"kind":"noop","id":"strict-1","priority":"1"}',
        "deadline_s": '{"v":1,"kind":"sleep","id":"strict-2","deadline_s":true}',
    }
    for message in bad.values():
        mosquitto_pub(fleet, "jobs/submit", message)
    for why in bad:
        wait_until(lambda why=why: errors_about(recorder, why), 15, f"an error report naming {why!r}")
    assert not recorder.states("inf-1") and not recorder.states("strict-1") and not recorder.states("strict-2")

    # The coordinator was not wedged: many jobs later it still accepts work and publishes stats.
    seen = len(recorder.json("coordinator/stats"))
    for i in range(50):
        recorder.publish("jobs/submit", orjson.dumps({"v": 1, "kind": "noop", "id": f"after-{i}", "params": {"echo": 2**64 - 1}}))
    for i in range(50):
        recorder.wait_state(f"after-{i}", "DONE")
    assert recorder.results("after-0")[0]["output"] == 2**64 - 1
    stats_after(recorder, seen, done=50)  # the stats keep flowing and count the work
    assert not errors_about(recorder, "internal error")
    assert "Traceback" not in fleet.log("coordinator")


def test_an_unknown_kind_is_failed_and_reported(fleet: Fleet, recorder: Recorder) -> None:
    fleet.coordinator()
    fleet.agent("pi-1")
    wait_nodes_online(recorder, 1)
    mosquitto_pub(fleet, "jobs/submit", '{"v":1,"kind":"transmogrify","id":"unknown-1"}')
    failed = recorder.wait_state("unknown-1", "FAILED")
    assert "transmogrify" in failed["reason"] or "kind" in failed["reason"]
    report = wait_until(lambda: errors_about(recorder, "unknown-1"), 10, "an errors report for the job")[0]
    assert report["source"] == "coordinator" and "refused" in report["reason"]


def test_a_retained_submission_runs_once_and_is_refused_and_cleared_at_restart(fleet: Fleet, recorder: Recorder) -> None:
    fleet.coordinator()
    fleet.agent("pi-1")
    wait_nodes_online(recorder, 1)
    mosquitto_pub(fleet, "jobs/submit", '{"v":1,"kind":"sleep","id":"kept-1","params":{"seconds":0.01}}', "-r")
    recorder.wait_state("kept-1", "DONE")
    scheduled_before = sum(s["state"] == "SCHEDULED" for s in recorder.states("kept-1"))

    fleet.kill("coordinator", signal.SIGKILL)
    fleet.coordinator()
    wait_until(lambda: errors_about(recorder, "retained submissions are refused"), 15, "the retained submission refused")
    seen = len(recorder.json("coordinator/stats"))
    stats_after(recorder, seen)
    assert sum(s["state"] == "SCHEDULED" for s in recorder.states("kept-1")) == scheduled_before
    # The coordinator cleared the retained copy: nothing is retained on jobs/submit any more.
    out = subprocess.run(["mosquitto_sub", "-p", str(fleet.broker.port), "-t", f"{fleet.prefix}/jobs/submit", "--retained-only", "-W", "2"],
                         capture_output=True, text=True, timeout=10)
    assert out.stdout.strip() == ""
    # ...and the echo of the clearing message was not reported as garbage.
    assert not [e for e in recorder.json("errors") if e["topic"].endswith("jobs/submit") and e["size"] == 0]


def test_a_journal_that_cannot_be_written_is_reported_work_continues_and_it_heals(fleet: Fleet, recorder: Recorder) -> None:
    """The journal's path is taken by a directory: reading and rewriting it fail. The coordinator
    reports it, keeps running jobs from memory, and once the way is clear writes the open jobs,
    which a coordinator killed afterwards adopts again."""
    state = fleet.workdir / "state"
    blocker = state / f"jobs-{fleet.prefix.replace('/', '_')}.jsonl"
    (blocker / "in-the-way").mkdir(parents=True)
    fleet.coordinator()
    fleet.agent("pi-1", EDGEHIVE_WORKERS="1", EDGEHIVE_SLOTS="1")
    wait_nodes_online(recorder, 1)
    report = wait_until(lambda: errors_about(recorder, "job journal"), 15, "the journal failure reported")[0]
    assert "IsADirectoryError" in report["reason"]

    recorder.publish("jobs/submit", orjson.dumps({"v": 1, "kind": "sleep", "id": "during-outage", "params": {"seconds": 0.01}}))
    recorder.wait_state("during-outage", "DONE")
    recorder.publish("jobs/submit", orjson.dumps({"v": 1, "kind": "sleep", "id": "long-1", "params": {"seconds": 30}}))
    recorder.wait_state("long-1", "RUNNING")

    shutil.rmtree(blocker)
    wait_until(lambda: blocker.is_file() and b'"long-1"' in blocker.read_bytes(), 40, "the journal rewritten with the open job")
    assert len(errors_about(recorder, "job journal")) == 1

    fleet.kill("coordinator", signal.SIGKILL)
    fleet.coordinator()
    adopted = wait_until(lambda: [s for s in recorder.states("long-1") if "adopted" in (s.get("reason") or "")], 20, "long-1 adopted")
    assert adopted[0]["node"] == "pi-1"
    assert "Traceback" not in fleet.log("coordinator")

