"""A read-only view of the fleet built from MQTT alone, like `ray status`.

Used by `edgehive status` (one snapshot) and `edgehive up` (a live table).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from .bus import MqttBus, Rejected
from .schemas import Capabilities, CoordinatorMember, CoordinatorStats, Heartbeat, LeaderClaim, NodeStatus, Topics, decode, parse_claim, parse_status


@dataclass
class NodeRow:
    node: str
    caps: Capabilities | None = None
    status: NodeStatus | None = None
    beat: Heartbeat | None = None
    beat_at: float = 0.0


@dataclass
class FleetView:
    """Subscribes on `bus` and keeps the latest of everything; call `render()` any time."""

    bus: MqttBus
    heartbeat_s: float = 1.0
    nodes: dict[str, NodeRow] = field(default_factory=dict)
    stats: CoordinatorStats | None = None
    coordinator: str = "unknown"
    members: dict[str, CoordinatorMember] = field(default_factory=dict)
    leader: LeaderClaim | None = None

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        t: Topics = self.bus.topics
        self.bus.subscribe(t.pattern("capabilities"), self._on_caps, self._parse_caps)
        self.bus.subscribe(t.pattern("status"), self._on_status, self._parse_status)
        self.bus.subscribe(t.pattern("heartbeat"), self._on_beat, lambda tp, p: decode(Heartbeat, p), qos=0, max_bytes=1 << 20)
        self.bus.subscribe(t.coordinator_stats, self._on_stats, lambda tp, p: decode(CoordinatorStats, p), qos=0)
        self.bus.subscribe(t.coordinator_status, self._on_coordinator, lambda tp, p: p.decode(errors="replace")[:20])
        self.bus.subscribe(t.pattern("coordinator_member"), self._on_member, lambda tp, p: decode(CoordinatorMember, p) if p else tp)
        self.bus.subscribe(t.coordinator_leader, self._on_leader, parse_claim)

    def _row(self, node: str) -> NodeRow:
        return self.nodes.setdefault(node, NodeRow(node))

    def _node_of(self, topic: str) -> str:
        node = self.bus.topics.parse(topic).node
        if node is None:  # the patterns name a node: this cannot be one of ours
            raise Rejected("a node topic without a node")
        return node

    def _parse_caps(self, topic: str, payload: bytes) -> tuple[str, Capabilities | None]:
        """None: the retained copy was cleared, as the coordinator does when the node leaves the fleet."""
        return self._node_of(topic), decode(Capabilities, payload) if payload else None

    def _on_caps(self, topic: str, value: tuple[str, Capabilities | None]) -> None:
        node, caps = value
        with self._lock:
            if caps is None:
                self.nodes.pop(node, None)
            else:
                self._row(node).caps = caps

    def _parse_status(self, topic: str, payload: bytes) -> tuple[str, NodeStatus | None]:
        return self._node_of(topic), parse_status(payload) if payload else None

    def _on_status(self, topic: str, value: tuple[str, NodeStatus | None]) -> None:
        node, status = value
        with self._lock:
            if status is not None or node in self.nodes:
                self._row(node).status = status

    def _on_beat(self, topic: str, beat: Heartbeat) -> None:
        with self._lock:
            row = self._row(beat.node)
            row.beat, row.beat_at = beat, time.monotonic()

    def _on_stats(self, topic: str, stats: CoordinatorStats) -> None:
        with self._lock:
            self.stats = stats

    def _on_coordinator(self, topic: str, state: str) -> None:
        with self._lock:
            self.coordinator = state

    def _on_member(self, topic: str, member: CoordinatorMember | str) -> None:
        with self._lock:
            if isinstance(member, str):  # cleared: the topic names who
                self.members.pop(topic.rsplit("/", 1)[-1], None)
            else:
                self.members[member.id] = member

    def _on_leader(self, topic: str, claim: LeaderClaim | None) -> None:
        with self._lock:
            self.leader = claim

    def coordinator_roles(self) -> list[dict[str, object]]:
        """Each coordinator known, by id: `active` (it holds coordinator/leader), `standby`, `gone`
        (it last said active but the claim is someone else's or nobody's: killed, its status has
        no will) or `offline`; with its epoch and, for a standby, whether it holds a journal copy."""
        leader = self.leader
        roles: list[dict[str, object]] = []
        for member in sorted(self.members.values(), key=lambda m: m.id):
            if leader is not None and member.id == leader.id and member.role != "offline":
                role, epoch = "active", leader.epoch
            elif member.role == "active":
                role, epoch = "gone", member.epoch
            else:
                role, epoch = member.role, member.epoch
            roles.append({"id": member.id, "role": role, "epoch": epoch, "synced": member.synced})
        return roles

    def coordinators_line(self) -> str | None:
        """Which coordinator is active and which stand by; None with only one that never published
        its role (older versions)."""
        if not self.members:
            return None
        leader = self.leader
        parts = []
        for c in self.coordinator_roles():
            if c["role"] == "active":
                parts.append(f"{c['id']} active (epoch {c['epoch']})")
            elif c["role"] == "gone":
                parts.append(f"{c['id']} gone (last said active; the claim is held by {leader.id if leader else 'nobody'})")
            elif c["role"] == "standby":
                parts.append(f"{c['id']} standby" + ("" if c["synced"] else " (no journal copy yet)"))
            else:
                parts.append(f"{c['id']} {c['role']}")
        return "coordinators: " + ", ".join(parts)

    def online(self, row: NodeRow) -> bool:
        fresh = row.beat is not None and time.monotonic() - row.beat_at < 3 * self.heartbeat_s
        said_online = row.status is not None and row.status.state == "online"
        if row.status is not None and row.caps is not None and row.status.boot_id not in (None, row.caps.boot_id):
            said_online = False
        return fresh or (said_online and row.beat is None)

    def render(self) -> str:
        with self._lock:
            rows = sorted(self.nodes.values(), key=lambda r: r.node)
            lines = [f"{'NODE':<20} {'BOARD':<28} {'STATE':<8} {'CPU%':>5} {'TEMP':>6} {'INFL':>5} {'DONE':>8} {'SVC ms':>8}  KINDS"]
            for row in rows:
                b, c = row.beat, row.caps
                state = ("draining" if b and b.draining else "online") if self.online(row) else "offline"
                lines.append(
                    f"{row.node[:20]:<20} {(c.board if c else '?')[:28]:<28} {state:<8} "
                    f"{(f'{b.cpu_pct:.0f}' if b else '-'):>5} {(f'{b.temp_c:.1f}' if b and b.temp_c is not None else '-'):>6} "
                    f"{(str(b.in_flight + b.queued) if b else '-'):>5} {(str(b.jobs_done) if b else '-'):>8} "
                    f"{(f'{b.service_s * 1000:.1f}' if b and b.service_s is not None else '-'):>8}  {','.join(c.kinds) if c else '?'}"
                )
            online = sum(1 for r in rows if self.online(r))
            lines.append(f"nodes: {online} online / {len(rows)} known; coordinator: {self.coordinator}")
            coordinators = self.coordinators_line()
            if coordinators:
                lines.append(coordinators)
            s = self.stats
            if s is not None:
                lines.append(
                    f"jobs: {s.queued} queued, {s.in_flight} in flight, {s.done} done, {s.failed} failed, "
                    f"{s.retried} retried, {s.jobs_per_s:g}/s"
                )
                if s.frames_in:
                    cameras = ", ".join(
                        f"{cam} {s.frames_done.get(cam, 0)}/{n} done, {s.frames_dropped.get(cam, 0)} dropped"
                        for cam, n in sorted(s.frames_in.items())
                    )
                    lines.append(f"frames: {cameras}")
                if s.fusion_windows:
                    groups = ", ".join(
                        f"{g} {s.fusion_fused.get(g, 0)}/{n} fused" + (f", {s.fusion_overflow[g]} refused" if s.fusion_overflow.get(g) else "")
                        for g, n in sorted(s.fusion_windows.items())
                    )
                    lines.append(f"fusion: {groups}")
            else:
                lines.append("jobs: no coordinator stats seen yet")
            return "\n".join(lines)
