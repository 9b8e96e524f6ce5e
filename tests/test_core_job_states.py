"""EDGEHIVE_JOB_STATES: `all` announces every step of a job on jobs/{id}/state, `final` only its
outcome, one message per job; what else the core does (dispatch, journal, retries, results,
error reports) is the same either way."""

from __future__ import annotations

import pytest
from core_rig import Rig


def _one_of_each(rig: Rig) -> None:
    """A job done first time, one re-queued once after its node died and then done elsewhere, one
    that failed on its node, one refused because no node runs its kind, one
    refused because the queue is full."""
    rig.node("pi-1")
    rig.submit("done")
    rig.beat("pi-1", held=["done"], running=["done"])
    rig.result("pi-1", "done", output={"slept_s": 0})
    rig.submit("moved")
    rig.offline("pi-1", "unplugged")
    rig.node("pi-2")
    rig.result("pi-2", "moved", attempt=2)
    rig.submit("broke")
    rig.result("pi-2", "broke", ok=False)
    rig.submit("odd", kind="transmogrify")
    rig.submit("busy")  # runs on pi-2's only slot
    rig.submit("waits")
    rig.submit("full")


ALL = {"done": ["REQUESTED", "SCHEDULED", "RUNNING", "DONE"],
       "moved": ["REQUESTED", "SCHEDULED", "REQUESTED", "SCHEDULED", "RUNNING", "DONE"],
       "broke": ["REQUESTED", "SCHEDULED", "RUNNING", "FAILED"],
       "odd": ["REQUESTED", "FAILED"], "busy": ["REQUESTED", "SCHEDULED"], "waits": ["REQUESTED"], "full": ["FAILED"]}


@pytest.mark.parametrize("setting", ["all", "final"])
def test_final_publishes_only_the_outcome_and_all_publishes_every_state(setting: str) -> None:
    rig = Rig(job_states=setting, queue_max=1)
    _one_of_each(rig)
    got = {job: rig.state_names(job) for job in ALL}
    if setting == "all":
        assert got == ALL
    else:
        assert got == {job: [names[-1]] if names[-1] in ("DONE", "FAILED") else [] for job, names in ALL.items()}
    # The rest is the same either way: what ran where, the outcome's reason, the error reports, the journal.
    assert rig.sent_ids("pi-2") == ["moved", "broke", "busy"]
    assert rig.states("moved")[-1]["attempt"] == 2 and rig.states("broke")[-1]["reason"] == "it broke"
    assert rig.errors() == ["job odd (transmogrify) refused: no node can run this job "
                            "(pi-1 does not run kind 'transmogrify'; pi-2 does not run kind 'transmogrify')",
                            "job full refused: queue full (1 jobs waiting)"]
    assert [entry for entry in rig.journal() if entry[1] == "odd"] == [("accepted", "odd"), ("ended", "odd")]
    stats = rig.stats()
    assert (stats["done"], stats["failed"], stats["retried"], stats["rejected"]) == (2, 2, 1, 1)


def test_with_final_a_resubmitted_id_is_answered_only_once_its_job_has_ended() -> None:
    rig = Rig(job_states="final")
    rig.node("pi-1")
    rig.submit("j1")
    again = rig.submit("j1")
    assert rig.state_names("j1", again) == [] and rig.sent_ids("pi-1") == ["j1"] and rig.stats()["submitted"] == 1
    rig.result("pi-1", "j1")
    after = rig.submit("j1")
    assert rig.state_names("j1", after) == ["DONE"] and rig.sent_ids("pi-1") == ["j1"]
