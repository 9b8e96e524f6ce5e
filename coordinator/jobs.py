"""The priority queue of jobs waiting for a node, and the final states of finished jobs.

Both hold leases (coordinator/leases.py) of the policies that are retried: jobs and fusion
windows. Frames wait elsewhere (coordinator/frames.py: only the newest per camera).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable, Iterator

from edgehive.schemas import JobStateName

from .leases import Lease


class JobQueue:
    """FIFO within a priority, higher priorities first; re-queued jobs go to the front."""

    def __init__(self) -> None:
        self._lanes: dict[int, deque[Lease]] = {}
        self._order: list[int] = []

    def __len__(self) -> int:
        return sum(len(lane) for lane in self._lanes.values())

    def __bool__(self) -> bool:
        return any(self._lanes.values())

    def _lane(self, priority: int) -> deque[Lease]:
        lane = self._lanes.get(priority)
        if lane is None:
            lane = self._lanes[priority] = deque()
            self._order = sorted(self._lanes, reverse=True)
        return lane

    def push(self, job: Lease, front: bool = False) -> None:
        lane = self._lane(job.priority)
        job.queued = True
        if front:
            lane.appendleft(job)
        else:
            lane.append(job)

    def __iter__(self) -> Iterator[Lease]:
        for priority in self._order:
            yield from list(self._lanes[priority])

    def take(self, try_place: Callable[[Lease], bool | None]) -> None:
        """Offer queued jobs in order to `try_place`: True takes the job out of the queue,
        False keeps it in place, None stops. Costs what it offers, never a copy of the queue."""
        for priority in self._order:
            lane = self._lanes[priority]
            kept: list[Lease] = []
            try:
                while lane:
                    job = lane.popleft()
                    verdict = try_place(job)
                    if verdict:
                        job.queued = False
                        continue
                    kept.append(job)
                    if verdict is None:
                        return
            finally:
                lane.extendleft(reversed(kept))

    def remove(self, job: Lease) -> None:
        self._lanes[job.priority].remove(job)
        job.queued = False

    def count_by_kind(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for job in self:
            counts[job.kind] = counts.get(job.kind, 0) + 1
        return counts


class FinishedJobs:
    """The last `capacity` finished jobs' final states, to answer duplicates and resubmissions.
    About 250 bytes each: the bound is the coordinator's largest cache (`finished_max`)."""

    def __init__(self, capacity: int = 10_000) -> None:
        self.capacity = capacity
        self._states: OrderedDict[str, tuple[JobStateName, str, str | None, int, str | None]] = OrderedDict()

    def add(self, job: Lease, reason: str | None) -> None:
        self._states[job.id] = (job.state, job.kind, job.node, job.attempt, reason)
        if len(self._states) > self.capacity:
            self._states.popitem(last=False)

    def get(self, job_id: str) -> tuple[JobStateName, str, str | None, int, str | None] | None:
        return self._states.get(job_id)

    def ids(self) -> list[str]:
        """Every job id kept, oldest first."""
        return list(self._states)

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._states
