"""Job bookkeeping in the coordinator's core, without a broker: the bounded memory of finished
jobs, lapsed leases, RUNNING only once started, deadlines of placed jobs. The core is fed real
messages (tests/core_rig.py) and the clock is the test's."""

from __future__ import annotations

from core_rig import Rig

from edgehive.coordinator.core import CoordinatorCore
from edgehive.coordinator.fusion import FusionWindows
from edgehive.coordinator.jobs import FinishedJobs
from edgehive.coordinator.leases import Lease
from edgehive.coordinator.settings import CoordinatorSettings
from edgehive.schemas import JobRequest, JobStateName


def test_finished_jobs_keep_only_the_newest() -> None:
    finished = FinishedJobs(capacity=100)
    for i in range(250):
        job = Lease(f"j{i}", JobRequest(kind="noop"), submitted=0.0, deadline=None, state=JobStateName.DONE)
        finished.add(job, None)
    assert "j149" not in finished and "j150" in finished and "j249" in finished
    assert finished.get("j249") == (JobStateName.DONE, "noop", None, 0, None)


def test_coordinator_bound_comes_from_the_setting() -> None:
    """The default is what the soak benchmark measured flat; operators can change it."""
    def core(settings: CoordinatorSettings) -> CoordinatorCore:  # as the service builds it when it becomes active
        return CoordinatorCore(settings, FusionWindows({}, 10, 100, 0.25, None), started=0.0)

    assert core(CoordinatorSettings(state_dir="")).finished.capacity == 10_000
    assert core(CoordinatorSettings(state_dir="", finished_max=500)).finished.capacity == 500


def _two_nodes() -> Rig:
    """Two one-slot nodes, alive."""
    rig = Rig()
    rig.node("a")
    rig.node("b")
    return rig


def test_lapsed_lease_moves_the_job_without_using_an_attempt() -> None:
    rig = _two_nodes()
    rig.submit("j1")
    job = rig.core.book.get("j1")
    assert job is not None
    first = job.node
    assert first is not None and job.attempt == 1
    rig.advance(10 * rig.settings.lease)  # its lease is long over
    rig.beat("b" if first == "a" else "a")  # the other node stays alive
    rig.beat(first, held=[])
    assert job.avoid == {first} and rig.core.registry.nodes[first].suspect
    assert job.node is not None and job.node != first and job.attempt == 1
    rig.beat(first, held=["j1"])  # the stale dispatch got there after all
    assert not rig.core.registry.nodes[first].suspect


def test_prefetched_job_is_running_only_once_started_and_fails_at_its_deadline_on_the_node() -> None:
    rig = _two_nodes()
    rig.submit("j1", deadline_s=60)
    job = rig.core.book.get("j1")
    assert job is not None
    node = job.node
    assert node is not None
    rig.beat(node, held=["j1"], running=[])
    assert job.state is JobStateName.SCHEDULED  # held, waiting for a worker
    rig.beat(node, held=["j1"], running=["j1"])
    assert job.state is JobStateName.RUNNING
    rig.advance(59)
    rig.beat(node, held=["j1"], running=["j1"])
    rig.tick()
    assert rig.core.book.get("j1") is not None  # not yet
    rig.advance(2)
    rig.beat(node, held=["j1"], running=["j1"])
    rig.tick()
    assert rig.core.book.get("j1") is None
    assert rig.core.finished.get("j1") == (JobStateName.FAILED, "sleep", node, 1, f"deadline of 60 s passed while running on node {node}")
    assert rig.core.registry.nodes[node].free_slots == 0  # it still runs there
    rig.beat(node, held=[], running=[])
    assert rig.core.registry.nodes[node].free_slots == 1
