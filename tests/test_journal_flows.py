"""A coordinator whose job journal cannot be written keeps running jobs and says so once, on
`errors` and in its log, without claiming that a submission was rejected."""

from __future__ import annotations

import orjson
import pytest
from harness import Fleet, Recorder, wait_nodes_online, wait_until

pytestmark = pytest.mark.integration


def test_an_unwritable_journal_is_reported_once_and_jobs_still_run(fleet: Fleet, recorder: Recorder) -> None:
    taken = fleet.workdir / "taken"
    taken.write_text("a file where the state directory should be\n")
    fleet.coordinator(EDGEHIVE_STATE_DIR=str(taken))
    fleet.agent("pi-1")
    wait_nodes_online(recorder, 1, timeout_s=30)
    for i in range(3):
        recorder.publish("jobs/submit", orjson.dumps({"v": 1, "kind": "noop", "id": f"j{i}", "params": {"echo": i}}))
    for i in range(3):
        assert recorder.wait_result(f"j{i}")["output"] == i
    reports = wait_until(lambda: [e for e in recorder.json("errors") if "job journal" in e["reason"]], 15, "the journal reported")
    assert len(reports) == 1 and "jobs continue from memory" in reports[0]["reason"], reports
    log = fleet.log("coordinator")
    assert log.count("job journal") == 1, log  # the journal's own ERROR line, once
    assert "rejected" not in log and "Traceback" not in log, log  # the jobs were accepted and ran
