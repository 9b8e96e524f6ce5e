"""The lease: one record for everything the coordinator hands to a node, and what each node holds.

A submitted job, a camera frame and a fusion window all travel the same way: placed on a node
with a free slot, held there while the node's heartbeats list it, ended by the node's result
or lost when the node dies, a lease lapses or the node hands it back. What differs is only
what the coordinator owes the work when that happens, and that is the lease's `Policy`:

| policy | journaled | job states | when lost | waits as |
| --- | --- | --- | --- | --- |
| `JOB` | yes: survives a coordinator restart | REQUESTED … DONE/FAILED | back to the queue until `max_attempts` | a queued job |
| `WINDOW` (fusion) | yes | yes | back to the queue | a queued job; its output is the next window's prior |
| `FRAME` | no (5–30 a second per camera) | no | counted lost per camera (a newer frame waits) | its camera's newest frame |
| `PART` (a tile, a pipeline stage's crop) | no | no | its frame is counted lost, once | its frame's group (coordinator/framegroups.py) |

New kinds of work are new policies, not new dispatch paths.

`LeaseBook` is the only code that changes a node's holdings (`Node.jobs`, which the scheduler
reads for free slots and load): a holding is added when a lease is placed, dropped when the
lease moves or ends, and a dead node's holdings are vacated at once.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from edgehive.schemas import JobRequest, JobStateName
from edgehive.schemas.kinds import FUSION_KIND

from .events import Now
from .registry import Node, NodeRegistry


@dataclass(frozen=True)
class Policy:
    """What the coordinator owes one kind of work (see the table above)."""

    name: str
    journaled: bool  # accepted and ended lines in the job journal
    announced: bool  # states on jobs/{id}/state; counted in submitted/done/failed
    retried: bool  # lost → re-queued (attempts, avoid); otherwise counted lost per source
    carries_prior: bool = False  # its output feeds the next lease of its source (fusion windows)


JOB = Policy("job", journaled=True, announced=True, retried=True)
WINDOW = Policy("window", journaled=True, announced=True, retried=True, carries_prior=True)
FRAME = Policy("frame", journaled=False, announced=False, retried=False)
PART = Policy("part", journaled=False, announced=False, retried=False)


def policy_for(request: JobRequest) -> Policy:
    return WINDOW if request.kind == FUSION_KIND else JOB


@dataclass(eq=False, slots=True)
class Lease:
    """Work the coordinator answers for, from acceptance until its one final outcome."""

    id: str
    request: JobRequest | None  # what was submitted (journaled); None for a frame or a part of one
    submitted: float  # epoch: accepted (a frame: arrived)
    deadline: float | None = None  # epoch
    policy: Policy = JOB
    kind: str = ""  # from the request unless given
    source: str = ""  # results/{kind}/{source}: the request's source, else the id; a frame's camera
    state: JobStateName = JobStateName.REQUESTED
    attempt: int = 0
    bounces: int = 0  # moves that used no attempt (lapsed lease, hand-back), bounded too
    node: str | None = None  # who holds it now
    boot_id: str | None = None
    dispatched: float = 0.0
    dispatched_mono: float = 0.0
    running_announced: bool = False
    queued: bool = False
    lost: bool = False  # given up on (not retried); a late result from its node still counts
    avoid: set[str] = field(default_factory=set)  # nodes where its lease lapsed or that handed it back
    placed_on: set[str] = field(default_factory=set)  # every node it was given to: whose result counts
    state_topic: str = ""  # jobs/{id}/state, built once

    def __post_init__(self) -> None:
        if self.request is not None:
            self.kind = self.kind or self.request.kind
            self.source = self.source or self.request.source or self.id

    @property
    def priority(self) -> int:
        return self.request.priority if self.request is not None else 0


GIVEN_UP_KEPT = 1024  # lost leases remembered, so that a late result still finds its node


class LeaseBook:
    """Open leases by id, and the holdings of every node."""

    def __init__(self, registry: NodeRegistry, given_up_kept: int = GIVEN_UP_KEPT) -> None:
        self._registry = registry
        self.open: dict[str, Lease] = {}
        self.given_up: OrderedDict[str, Lease] = OrderedDict()
        self._given_up_kept = given_up_kept

    def __len__(self) -> int:
        return len(self.open)

    def get(self, lease_id: str) -> Lease | None:
        return self.open.get(lease_id)

    def find(self, lease_id: str) -> Lease | None:
        """An open lease, or one given up on but still remembered."""
        return self.open.get(lease_id) or self.given_up.get(lease_id)

    def add(self, lease: Lease) -> None:
        self.open[lease.id] = lease

    def hold(self, lease: Lease, node: Node, now: Now) -> None:
        """`node` holds `lease` from now on."""
        lease.node, lease.boot_id = node.id, node.boot_id
        lease.placed_on.add(node.id)
        lease.dispatched, lease.dispatched_mono = now
        node.jobs.add(lease.id)

    def release(self, lease: Lease) -> None:
        """Its node no longer holds it (the node stays in `placed_on`: its late result counts)."""
        if lease.node is not None:
            node = self._registry.nodes.get(lease.node)
            if node is not None:
                node.jobs.discard(lease.id)

    def let_go(self, node: Node, lease_id: str) -> None:
        """`node` no longer lists an id we no longer track (ended while it still ran there)."""
        node.jobs.discard(lease_id)

    def vacate(self, node: Node) -> list[Lease]:
        """The node died or restarted: it holds nothing now; its open leases, by id."""
        held, node.jobs = node.jobs, set()
        return [self.open[i] for i in sorted(held) if i in self.open]

    def close(self, lease: Lease) -> None:
        """The lease has its final outcome. Its node keeps the slot while it still lists the id."""
        self.open.pop(lease.id, None)
        self.given_up.pop(lease.id, None)

    def give_up(self, lease: Lease) -> None:
        """A lease that is not retried was lost: closed, but remembered for its node's late result."""
        self.release(lease)
        self.open.pop(lease.id, None)
        lease.lost = True
        self.given_up[lease.id] = lease
        if len(self.given_up) > self._given_up_kept:
            self.given_up.popitem(last=False)
