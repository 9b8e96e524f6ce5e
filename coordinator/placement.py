"""Placement: which node gets each waiting frame and queued job, asked of the scheduler.

One pass places what it can while any live node has a free slot: frames first (they are real
time), each to a node that has its camera's model — the remaining parts of frames already
begun (tiles, pipeline stages) before any new frame, so a frame begun is finished first —
then queued jobs in priority order, each to `scheduler.choose`'s node. The caller's `send_*` turns a choice into a lease on that node
before the next choice, so free slots and load are always current. A pass runs once per batch
of events (a burst of messages, a tick), not per message: that lets one message carry several
jobs to a node under load.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Collection, Iterator

from edgehive.schemas import Requirements
from edgehive.schemas.kinds import DETECT_KIND

from . import scheduler
from .framegroups import FrameGroup, FrameGroups
from .frames import Frame, FrameRouter
from .jobs import JobQueue
from .leases import Lease
from .registry import Node

_BATCH_BYTES = 256 * 1024  # job arrays stay well under the agent's size limit


def requirement_key(req: Requirements | None) -> tuple[object, ...] | None:
    """A hashable stand-in for a job's requirements: jobs alike share one answer per pass."""
    if req is None:
        return None
    return (req.node, req.model, req.accelerator, req.min_ram_mb, req.arch, tuple(req.tags))


class Placer:
    """One placement pass over the live nodes: which nodes could run each distinct requirement,
    and the fleet-wide estimates, are worked out once per pass, not once per job."""

    def __init__(self, nodes: list[Node], rng: random.Random) -> None:
        self.nodes = nodes
        self._rng = rng
        self._capable: dict[tuple[str, tuple[object, ...] | None], list[Node]] = {}
        self._estimates = scheduler.Estimates(nodes)

    def choose(self, kind: str, req: Requirements | None, avoid: Collection[str] = ()) -> Node | None:
        key = (kind, requirement_key(req))
        capable = self._capable.get(key)
        if capable is None:
            capable = self._capable[key] = scheduler.capable_nodes(self.nodes, kind, req)
        return scheduler.choose_among(self.nodes, capable, kind, req, avoid, self._rng, self._estimates)

    def any_free(self) -> bool:
        return any(n.free_slots for n in self.nodes)


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


def place(placer: Placer, frames: FrameRouter, groups: FrameGroups, queue: JobQueue, requirements: ModelRequirements,
          send_frame: Callable[[Frame, Node], None], send_part: Callable[[FrameGroup, Node], None],
          send_job: Callable[[Lease, Node], None]) -> None:
    """Place the parts of frames begun, waiting frames, then queued jobs, on the live nodes
    while slots are free. A frame that `send_frame` turns into a group places its first part
    there; its other parts follow in the same pass, on whichever nodes are free."""
    if not (queue or frames.pending or groups) or not placer.any_free():
        return
    place_parts(placer, groups, requirements, send_part)
    if frames.pending:
        for frame in frames.waiting():
            node = placer.choose(DETECT_KIND, requirements(frame.model))
            if node is not None:
                send_frame(frame, node)
        place_parts(placer, groups, requirements, send_part)

    def try_place(job: Lease) -> bool | None:
        assert job.request is not None
        node = placer.choose(job.kind, job.request.requires, job.avoid)
        if node is not None:
            send_job(job, node)
            return True
        return None if not placer.any_free() else False

    queue.take(try_place)


def place_parts(placer: Placer, groups: FrameGroups, requirements: ModelRequirements,
                send_part: Callable[[FrameGroup, Node], None]) -> None:
    for group in groups.waiting():
        requires = requirements(group.stage.model)
        while group.has_unplaced():
            node = placer.choose(DETECT_KIND, requires)
            if node is None:
                break
            send_part(group, node)


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
