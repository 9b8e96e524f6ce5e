"""Placement: which node gets each waiting frame and queued job, asked of the scheduler.

One pass places what it can while any live node has a free slot: frames first (they are real
time), each to a node that has its camera's model, then queued jobs in priority order, each
to `scheduler.choose`'s node. The caller's `send_*` turns a choice into a lease on that node
before the next choice, so free slots and load are always current. A pass runs once per batch
of events (a burst of messages, a tick), not per message: that lets one message carry several
jobs to a node under load.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from edgehive.schemas import Requirements
from edgehive.schemas.kinds import DETECT_KIND

from . import scheduler
from .frames import Frame, FrameRouter
from .jobs import JobQueue
from .leases import Lease
from .registry import Node

_BATCH_BYTES = 256 * 1024  # job arrays stay well under the agent's size limit


class ModelRequirements:
    """`Requirements(model=...)` per model, built once: a camera's envelope names the model,
    so the cache is bounded."""

    def __init__(self, bound: int = 256) -> None:
        self._cache: dict[str, Requirements] = {}
        self._bound = bound

    def __call__(self, model: str) -> Requirements:
        requires = self._cache.get(model)
        if requires is None:
            if len(self._cache) >= self._bound:
                self._cache.clear()
            requires = self._cache[model] = Requirements(model=model)
        return requires


def place(nodes: list[Node], frames: FrameRouter, queue: JobQueue, requirements: ModelRequirements,
          send_frame: Callable[[Frame, Node], None], send_job: Callable[[Lease, Node], None]) -> None:
    """Place waiting frames, then queued jobs, on `nodes` (the live ones) while slots are free."""
    if not (queue or frames.pending) or not any(n.free_slots for n in nodes):
        return
    for frame in frames.waiting():
        node = scheduler.choose(nodes, DETECT_KIND, requirements(frame.model))
        if node is not None:
            send_frame(frame, node)

    def try_place(job: Lease) -> bool | None:
        assert job.request is not None
        node = scheduler.choose(nodes, job.kind, job.request.requires, job.avoid)
        if node is not None:
            send_job(job, node)
            return True
        return None if not any(n.free_slots for n in nodes) else False

    queue.take(try_place)


class Outbox:
    """The job messages of one pass, per node: a node gets one message for everything placed on
    it, a job or a JSON array of jobs (the agent takes both)."""

    def __init__(self) -> None:
        self._jobs: dict[str, list[bytes]] = {}

    def __bool__(self) -> bool:
        return bool(self._jobs)

    def add(self, node_id: str, job: bytes) -> None:
        self._jobs.setdefault(node_id, []).append(job)

    def drain(self) -> Iterator[tuple[str, bytes]]:
        """(node, payload) for each message to send; empties the outbox."""
        jobs_by_node, self._jobs = self._jobs, {}
        for node_id, jobs in jobs_by_node.items():
            if len(jobs) == 1:
                yield node_id, jobs[0]
                continue
            chunk: list[bytes] = []
            size = 0
            for job in jobs:
                chunk.append(job)
                size += len(job)
                if size >= _BATCH_BYTES:
                    yield node_id, b"[" + b",".join(chunk) + b"]"
                    chunk, size = [], 0
            if chunk:
                yield node_id, b"[" + b",".join(chunk) + b"]"
