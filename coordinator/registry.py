"""The node registry: who is in the fleet, what they can do, and whether they are alive.

It is rebuilt from retained messages alone (capabilities and status), so a restarted
coordinator knows the fleet without any agent restarting. Death is decided three
ways: the will (or an explicit `offline`), or heartbeats silent for `dead_after`. A
boot id ties each message to one run of an agent, so a will from an earlier boot
never kills the live one.

A node can be alive (its heartbeats arrive) and still not receive what we send it: after a
partition heals, the broker's TCP retransmissions to it back off for seconds. Such a node
is `suspect` (its heartbeats stopped, or a lease lapsed there): it gets no new work until
it confirms a job we sent it since, except one probe job per lease (half-open, like a
circuit breaker), so a node that lost the jobs it was sent is not shunned forever.

The registry decides who is alive; what each node holds (`Node.jobs`) is changed only by the
lease book (coordinator/leases.py): a `Change` says when a node's holdings are void (it died or
restarted), and the book vacates them. Time comes in with every call (the coordinator's core
passes its clock in; nothing here reads one), kept in a `Clock` the nodes share.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from edgehive.schemas import Capabilities, Heartbeat, NodeStatus


@dataclass
class Clock:
    """The monotonic time of the event being handled, as the registry was last told it."""

    now: float = 0.0


@dataclass
class Node:
    id: str
    caps: Capabilities | None = None
    boot_id: str | None = None
    alive: bool = False
    last_seen: float = 0.0
    known_since: float = 0.0  # when this coordinator first heard of it: a node never seen alive is dead since then
    heartbeat: Heartbeat | None = None
    jobs: set[str] = field(default_factory=set)
    dispatched: int = 0
    retired_boots: dict[str, None] = field(default_factory=dict)  # oldest first
    foreign: int = 0
    paused_until: float = 0.0
    suspect: bool = False
    probe_after: float = 0.0
    unconfirmed: set[str] = field(default_factory=set)
    clock: Clock = field(default_factory=Clock, repr=False, compare=False)

    @property
    def draining(self) -> bool:
        return self.heartbeat is not None and self.heartbeat.draining

    @property
    def free_slots(self) -> int:
        """Slots minus our jobs there minus `foreign` ones its heartbeat lists but we do not
        track (work from before a coordinator restart); none while paused after a refusal; while
        suspect, one probe slot once `probe_after` has passed."""
        now = self.clock.now
        if self.caps is None or not self.alive or self.draining or self.paused_until > now:
            return 0
        free = max(0, self.caps.slots - len(self.jobs) - self.foreign)
        if self.suspect:
            return min(free, 1) if now >= self.probe_after else 0
        return free

    def mark_suspect(self, job_id: str | None, retry_after: float) -> None:
        """Our messages may not reach it: no new work but a probe at `retry_after` (monotonic).
        `job_id` (a dispatch that lapsed) confirms the node if it ever shows up."""
        if not self.suspect:
            self.suspect, self.unconfirmed = True, set()
        self.probe_after = retry_after
        if job_id is not None and len(self.unconfirmed) < MAX_UNCONFIRMED:
            self.unconfirmed.add(job_id)

    def sent(self, job_id: str, lease: float) -> None:
        """A job dispatched to it (the lease book records the holding); to a suspect node that
        is the probe, the next one a lease later."""
        self.dispatched += 1
        if self.suspect:
            self.probe_after = self.clock.now + lease
            if len(self.unconfirmed) < MAX_UNCONFIRMED:
                self.unconfirmed.add(job_id)

    def confirm(self, job_ids: Iterable[str]) -> bool:
        """The node heard us: it holds (or returned) a job sent while it was suspect. True if that ended it."""
        if self.suspect and not self.unconfirmed.isdisjoint(job_ids):
            self.suspect, self.unconfirmed = False, set()
            return True
        return False


MAX_RETIRED_BOOTS = 64
MAX_UNCONFIRMED = 256  # ids a suspect node may confirm by; it gets at most one new job per lease


@dataclass
class Change:
    """What an event did to a node: when `vacated`, whatever it held is gone (died or restarted)."""

    node: Node
    died: bool = False
    revived: bool = False
    vacated: bool = False


class NodeRegistry:
    def __init__(self, clock: Clock | None = None) -> None:
        self.nodes: dict[str, Node] = {}
        self.clock = clock or Clock()

    def get(self, node_id: str) -> Node:
        node = self.nodes.get(node_id)
        if node is None:
            node = self.nodes[node_id] = Node(node_id, known_since=self.clock.now, clock=self.clock)
        return node

    def alive(self) -> list[Node]:
        return [n for n in self.nodes.values() if n.alive]

    def _new_boot(self, node: Node, boot_id: str) -> bool:
        """A different boot id: the earlier run's jobs are gone with it (True)."""
        restarted = node.boot_id is not None and node.boot_id != boot_id
        if restarted:
            assert node.boot_id is not None
            node.retired_boots[node.boot_id] = None
            if len(node.retired_boots) > MAX_RETIRED_BOOTS:  # an agent in a restart loop must not grow it for ever
                del node.retired_boots[next(iter(node.retired_boots))]  # the oldest: its will is long delivered
            node.heartbeat = None
            node.suspect, node.unconfirmed = False, set()  # a new boot made a new connection
        node.boot_id = boot_id
        return restarted

    def on_capabilities(self, caps: Capabilities, now: float) -> Change:
        self.clock.now = now
        node = self.get(caps.node)
        if caps.boot_id in node.retired_boots:
            return Change(node)
        restarted = self._new_boot(node, caps.boot_id)
        node.caps = caps
        return Change(node, vacated=restarted)

    def on_status(self, node_id: str, status: NodeStatus, now: float) -> Change:
        self.clock.now = now
        node = self.get(node_id)
        stale = status.boot_id is not None and (status.boot_id in node.retired_boots or (node.boot_id is not None and status.boot_id != node.boot_id))
        if status.state == "offline":
            if stale or not node.alive:
                return Change(node)
            node.alive = False
            return Change(node, died=True, vacated=True)
        if stale and status.boot_id in node.retired_boots:
            return Change(node)
        restarted = self._new_boot(node, status.boot_id) if status.boot_id else False
        revived = not node.alive
        node.alive, node.last_seen = True, now
        return Change(node, revived=revived, vacated=restarted)

    def on_heartbeat(self, beat: Heartbeat, now: float) -> Change:
        self.clock.now = now
        node = self.get(beat.node)
        if beat.boot_id in node.retired_boots:
            return Change(node)
        restarted = self._new_boot(node, beat.boot_id)
        revived = not node.alive
        node.alive, node.last_seen, node.heartbeat = True, now, beat
        return Change(node, revived=revived, vacated=restarted)

    def expire(self, now: float, dead_after: float) -> list[Change]:
        """Nodes whose heartbeats stopped: dead, their holdings void."""
        self.clock.now = now
        changes = []
        for node in self.nodes.values():
            if node.alive and now - node.last_seen > dead_after:
                node.alive = False
                node.mark_suspect(None, retry_after=0.0)  # if it comes back on this boot, probe the way to it first
                changes.append(Change(node, died=True, vacated=True))
        return changes

    def forget(self, now: float, after: float) -> list[Node]:
        """Nodes dead for `after` seconds leave the fleet: dropped, and returned so that what was
        said about them (retained messages, Home Assistant devices) can be taken back. Dead
        means not alive, with no job held; the time counts from its last heartbeat or `online`,
        or from when this coordinator first heard of it (after a restart, a node known only from
        its retained capabilities)."""
        self.clock.now = now
        gone = [node for node in self.nodes.values()
                if not node.alive and not node.jobs and now - max(node.last_seen, node.known_since) > after]
        for node in gone:
            del self.nodes[node.id]
        return gone
