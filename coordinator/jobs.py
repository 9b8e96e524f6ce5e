"""Job records and the priority queue of jobs waiting for a node."""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from edgehive.schemas import JobRequest, JobStateName


@dataclass
class JobRecord:
    id: str
    request: JobRequest
    submitted: float
    deadline: float | None
    state: JobStateName = JobStateName.REQUESTED
    attempt: int = 0
    node: str | None = None
    boot_id: str | None = None
    dispatched_mono: float = 0.0
    dispatched: float = 0.0
    running_announced: bool = False
    bounces: int = 0
    queued: bool = False
    avoid: set[str] = field(default_factory=set)  # nodes where its lease lapsed or that handed it back
    placed_on: set[str] = field(default_factory=set)  # every node it was given to: whose result counts

    @property
    def kind(self) -> str:
        return self.request.kind

    @property
    def source(self) -> str:
        return self.request.source or self.id


class JobQueue:
    """FIFO within a priority, higher priorities first; re-queued jobs go to the front."""

    def __init__(self) -> None:
        self._lanes: dict[int, deque[JobRecord]] = {}
        self._order: list[int] = []

    def __len__(self) -> int:
        return sum(len(lane) for lane in self._lanes.values())

    def __bool__(self) -> bool:
        return any(self._lanes.values())

    def _lane(self, priority: int) -> deque[JobRecord]:
        lane = self._lanes.get(priority)
        if lane is None:
            lane = self._lanes[priority] = deque()
            self._order = sorted(self._lanes, reverse=True)
        return lane

    def push(self, job: JobRecord, front: bool = False) -> None:
        lane = self._lane(job.request.priority)
        job.queued = True
        if front:
            lane.appendleft(job)
        else:
            lane.append(job)

    def __iter__(self) -> Iterator[JobRecord]:
        for priority in self._order:
            yield from list(self._lanes[priority])

    def take(self, try_place: Callable[[JobRecord], bool | None]) -> None:
        """Offer queued jobs in order to `try_place`: True takes the job out of the queue,
        False keeps it in place, None stops. Costs what it offers, never a copy of the queue."""
        for priority in self._order:
            lane = self._lanes[priority]
            kept: list[JobRecord] = []
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

    def remove(self, job: JobRecord) -> None:
        self._lanes[job.request.priority].remove(job)
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

    def add(self, job: JobRecord, reason: str | None) -> None:
        self._states[job.id] = (job.state, job.kind, job.node, job.attempt, reason)
        if len(self._states) > self.capacity:
            self._states.popitem(last=False)

    def get(self, job_id: str) -> tuple[JobStateName, str, str | None, int, str | None] | None:
        return self._states.get(job_id)

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._states
