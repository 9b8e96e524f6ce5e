"""Job bookkeeping: the finished-jobs memory is bounded by `finished_max`."""

from __future__ import annotations

from edgehive.coordinator.jobs import FinishedJobs, JobRecord
from edgehive.coordinator.service import Coordinator
from edgehive.coordinator.settings import CoordinatorSettings
from edgehive.schemas import JobRequest, JobStateName


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
