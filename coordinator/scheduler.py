"""Placement: which node should run a job.

First filter by what the job requires (kind, model, accelerator, memory, arch, tags,
a pinned node), then pick the smallest expected completion time: the node's measured
service time for this kind, stretched by the jobs it already holds per worker, by
high CPU load and by heat. A throttling Pi therefore gets less work than a cool one.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from edgehive.schemas import Capabilities, Requirements

from .registry import Node

DEFAULT_SERVICE_S = 0.05


def unmet(caps: Capabilities, kind: str, req: Requirements | None) -> str | None:
    """Why a node with `caps` can never run this job, or None when it can."""
    if kind not in caps.kinds:
        return f"does not run kind {kind!r}"
    if req is None:
        return None
    if req.node is not None and req.node != caps.node:
        return f"is not node {req.node!r}"
    if req.model is not None and req.model not in caps.models:
        return f"has no model {req.model!r}"
    if req.accelerator is not None and req.accelerator not in caps.accelerators:
        return f"has no {req.accelerator} accelerator"
    if req.min_ram_mb is not None and caps.ram_mb < req.min_ram_mb:
        return f"has {caps.ram_mb} MB RAM < {req.min_ram_mb}"
    if req.arch is not None and req.arch != caps.arch:
        return f"is {caps.arch}, not {req.arch}"
    missing = set(req.tags) - set(caps.tags)
    if missing:
        return f"lacks tags {sorted(missing)}"
    return None


def never_runnable(nodes: Iterable[Node], kind: str, req: Requirements | None) -> str | None:
    """A reason when no known node (alive or not) could ever run the job."""
    known = [n for n in nodes if n.caps is not None]
    if not known:
        return "no agent is known to the coordinator"
    reasons = [unmet(n.caps, kind, req) for n in known]  # type: ignore[arg-type]
    if any(r is None for r in reasons):
        return None
    sample = "; ".join(f"{n.id} {r}" for n, r in list(zip(known, reasons))[:3])
    return f"no node can run this job ({sample})"


def expected_completion_s(node: Node, kind: str, fallback_s: float) -> float:
    caps, beat = node.caps, node.heartbeat
    assert caps is not None
    measured = beat.service_by_kind.get(kind) if beat is not None else None
    service = measured if measured is not None else fallback_s  # the fleet's median for a node new to this kind
    eta = service * (1.0 + len(node.jobs) / caps.workers)
    if beat is not None:
        if beat.cpu_pct > 80.0:
            eta *= 1.0 + (beat.cpu_pct - 80.0) / 20.0
        if beat.temp_c is not None and beat.temp_c > 70.0:
            eta *= 1.0 + (beat.temp_c - 70.0) / 15.0
        if beat.throttled:
            eta *= 2.0
    return eta


def fleet_service_s(nodes: Iterable[Node], kind: str) -> float:
    """The median measured service time of `kind`; the guess for a node that has not run it yet."""
    values = sorted(n.heartbeat.service_by_kind[kind] for n in nodes if n.heartbeat and kind in n.heartbeat.service_by_kind)
    return values[len(values) // 2] if values else DEFAULT_SERVICE_S


def choose(nodes: list[Node], kind: str, req: Requirements | None, avoid: Collection[str] = ()) -> Node | None:
    """The eligible node with a free slot and the earliest expected completion. Nodes in `avoid`
    (where this job's lease lapsed or that handed it back) are used only when no other of
    `nodes` could ever run the job; otherwise the job waits for one of those."""
    capable = [n for n in nodes if unmet(n.caps, kind, req) is None]  # type: ignore[arg-type]
    if avoid:
        others = [n for n in capable if n.id not in avoid]
        capable = others or capable
    candidates = [n for n in capable if n.free_slots > 0]
    if not candidates:
        return None
    fallback = fleet_service_s(nodes, kind)
    return min(candidates, key=lambda n: (expected_completion_s(n, kind, fallback), len(n.jobs), n.dispatched))
