"""Job bookkeeping in the coordinator, without a broker: the bounded memory of finished jobs,
lapsed leases, RUNNING only once started, deadlines of placed jobs. The coordinator is not
connected (what it publishes waits in paho); it is fed real messages."""

from __future__ import annotations

import time

from edgehive.coordinator.jobs import FinishedJobs, JobRecord
from edgehive.coordinator.service import Coordinator
from edgehive.coordinator.settings import CoordinatorSettings
from edgehive.schemas import Capabilities, Heartbeat, JobRequest, JobStateName


def test_finished_jobs_keep_only_the_newest() -> None:
    finished = FinishedJobs(capacity=100)
    for i in range(250):
        job = JobRecord(f"j{i}", JobRequest(kind="noop"), submitted=0.0, deadline=None, state=JobStateName.DONE)
        finished.add(job, None)
    assert "j149" not in finished and "j150" in finished and "j249" in finished
    assert finished.get("j249") == (JobStateName.DONE, "noop", None, 0, None)


def test_coordinator_bound_comes_from_the_setting() -> None:
    """The default is what the soak benchmark measured flat; operators can change it."""
    assert Coordinator(CoordinatorSettings(state_dir="")).finished.capacity == 10_000
    assert Coordinator(CoordinatorSettings(state_dir="", finished_max=500)).finished.capacity == 500


def _coordinator_with_two_nodes() -> Coordinator:
    """Two one-slot nodes, alive."""
    coordinator = Coordinator(CoordinatorSettings(state_dir="", heartbeat_s=1.0))
    for node in ("a", "b"):
        coordinator._on_capabilities("t", Capabilities(node=node, boot_id="b1", ts=0, version="0", arch="x", board="b", os="l",
                                                       python="3", cores=2, ram_mb=100, kinds=["sleep"], workers=1, slots=1))
        coordinator._on_heartbeat("t", Heartbeat(node=node, boot_id="b1", seq=1, ts=time.time(), cpu_pct=1, mem_pct=1,
                                                 in_flight=0, queued=0, jobs_done=0, jobs_failed=0))
    return coordinator


def _beat(node: str, held: list[str], running: list[str] | None = None) -> Heartbeat:
    return Heartbeat(node=node, boot_id="b1", seq=2, ts=time.time(), cpu_pct=1, mem_pct=1, in_flight=0, queued=0,
                     jobs_done=0, jobs_failed=0, held=held, running=running)


def test_lapsed_lease_moves_the_job_without_using_an_attempt() -> None:
    coordinator = _coordinator_with_two_nodes()
    coordinator._on_submit("t", JobRequest(kind="sleep", id="j1"))
    coordinator._after_read_burst()
    job = coordinator.active["j1"]
    first = job.node
    assert first is not None and job.attempt == 1
    job.dispatched_mono -= 10 * coordinator.settings.lease  # its lease is long over
    coordinator._on_heartbeat("t", _beat(first, held=[]))
    assert job.attempt == 0 and job.avoid == {first} and coordinator.registry.nodes[first].suspect
    coordinator._after_read_burst()
    assert job.node is not None and job.node != first and job.attempt == 1
    coordinator._on_heartbeat("t", _beat(first, held=["j1"]))  # the stale dispatch got there after all
    assert not coordinator.registry.nodes[first].suspect


def test_prefetched_job_is_running_only_once_started_and_fails_at_its_deadline_on_the_node() -> None:
    coordinator = _coordinator_with_two_nodes()
    coordinator._on_submit("t", JobRequest(kind="sleep", id="j1", deadline_s=60))
    coordinator._after_read_burst()
    job = coordinator.active["j1"]
    node = job.node
    assert node is not None
    coordinator._on_heartbeat("t", _beat(node, held=["j1"], running=[]))
    assert job.state is JobStateName.SCHEDULED  # held, waiting for a worker
    coordinator._on_heartbeat("t", _beat(node, held=["j1"], running=["j1"]))
    assert job.state is JobStateName.RUNNING
    job.deadline = time.time() - 1
    coordinator._deadlines = [(job.deadline, "j1")]
    coordinator.tick()
    assert "j1" not in coordinator.active
    assert coordinator.finished.get("j1") == (JobStateName.FAILED, "sleep", node, 1, f"deadline of 60 s passed while running on node {node}")
    assert coordinator.registry.nodes[node].free_slots == 0  # it still runs there
    coordinator._on_heartbeat("t", _beat(node, held=[], running=[]))
    assert coordinator.registry.nodes[node].free_slots == 1
