"""Placement: which node should run a job.

First filter by what the job requires (kind, model, accelerator, memory, arch, tags,
a pinned node), then pick the smallest expected completion time: the node's measured
service time for this job, stretched by the jobs it already holds per worker, by
high CPU load and by heat. A throttling Pi therefore gets less work than a cool one.

A job that names a model (every frame does) is weighed by the node's time for that model,
else its time for the kind. A node that has not run the job yet is guessed at the fleet's
median. For a model the manifest marks heavy (agents say so in `model_runtimes`), a node's
time for other models says nothing, and an unmeasured node is guessed from nodes like it:
those that run the model on a GPU, or those that run it on a CPU; with no such measurement,
a GPU node is guessed ACCELERATED_SPEEDUP times faster than a CPU node. So the first heavy
frames go to an accelerated node, and from then on measured times decide.

In a large fleet, weighing every node for every job costs jobs × nodes: 2,000 jobs over
2,000 nodes is four million weighings, seconds of a core during which nothing else is read.
So beyond SAMPLE_ABOVE eligible nodes a job goes to the best of SAMPLE nodes with a free slot,
taken from a random place in the list (the "power of d choices" of Sparrow and Mitzenmacher:
nearly as balanced as the full scan, at a constant cost), and the fleet-wide guesses are
computed once per placement pass (`Estimates`), not once per job.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Iterable, Sequence

from edgehive.schemas import Capabilities, Requirements

from .registry import Node

DEFAULT_SERVICE_S = 0.05
SAMPLE_ABOVE = 64  # eligible nodes beyond which a job is weighed against a sample of them
SAMPLE = 16  # nodes with a free slot weighed per job in a large fleet
# A heavy model on a GPU against the same model on a CPU, before anyone has measured both
# (CenterFace at 960x544: about 0.2 s on one Pi-class core; a Jetson's GPU runs it in ~10 ms).
ACCELERATED_SPEEDUP = 10.0


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
    reasons = [unmet(n.caps, kind, req) for n in known]  # type: ignore[arg-type]  # `known` holds only nodes with caps
    if any(r is None for r in reasons):
        return None
    sample = "; ".join(f"{n.id} {r}" for n, r in list(zip(known, reasons))[:3])
    return f"no node can run this job ({sample})"


def accelerated_for(caps: Capabilities, model: str) -> bool:
    """The node has an accelerator and runs `model` on it (not on its CPU)."""
    runtime = caps.model_runtimes.get(model)
    return bool(caps.accelerators) and runtime is not None and runtime.device != "cpu"


def heavy_model(nodes: Iterable[Node], model: str) -> bool:
    """Some node that loaded `model` says its manifest marks it heavy."""
    for n in nodes:
        runtime = n.caps.model_runtimes.get(model) if n.caps is not None else None
        if runtime is not None and runtime.heavy:
            return True
    return False


def _median(values: Sequence[float]) -> float | None:
    ordered = sorted(values)
    return ordered[len(ordered) // 2] if ordered else None


def guess_service_s(nodes: Iterable[Node], kind: str, model: str | None, accelerated: bool = False) -> float:
    """What a node that has not measured this job yet is assumed to take (see the module's doc)."""
    nodes = list(nodes)
    kind_guess = fleet_service_s(nodes, kind)
    if model is None:
        return kind_guess
    measured = [
        (n.caps is not None and accelerated_for(n.caps, model), n.heartbeat.service_by_model[model])
        for n in nodes if n.heartbeat is not None and model in n.heartbeat.service_by_model
    ]
    if not heavy_model(nodes, model):
        fleet = _median([s for _, s in measured])
        return fleet if fleet is not None else kind_guess
    alike = _median([s for acc, s in measured if acc == accelerated])
    if alike is not None:
        return alike
    other = _median([s for acc, s in measured if acc != accelerated])
    base, scaled_from_other = (other, True) if other is not None else (kind_guess, False)
    if accelerated:
        return base / ACCELERATED_SPEEDUP
    return base * ACCELERATED_SPEEDUP if scaled_from_other else base


def expected_completion_s(
    node: Node, kind: str, fallback_s: float, model: str | None = None, kind_time_counts: bool = True
) -> float:
    """`fallback_s`: the guess for a node that has not measured this job. A job naming `model`
    is weighed by the node's time for that model, else (when `kind_time_counts`) for the kind."""
    caps, beat = node.caps, node.heartbeat
    assert caps is not None
    measured = None
    if beat is not None:
        if model is not None:
            measured = beat.service_by_model.get(model)
        if measured is None and (model is None or kind_time_counts):
            measured = beat.service_by_kind.get(kind)
    service = measured if measured is not None else fallback_s
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


class Estimates:
    """The fleet-wide guesses `choose` needs, computed once per placement pass: each is a pass
    over every node, and they change only with heartbeats, not with each job placed."""

    def __init__(self, nodes: Sequence[Node]) -> None:
        self.nodes = nodes
        self._fleet: dict[str, float] = {}
        self._heavy: dict[str, bool] = {}
        self._guesses: dict[tuple[str, str, bool], float] = {}

    def fleet_service_s(self, kind: str) -> float:
        if kind not in self._fleet:
            self._fleet[kind] = fleet_service_s(self.nodes, kind)
        return self._fleet[kind]

    def heavy(self, model: str) -> bool:
        if model not in self._heavy:
            self._heavy[model] = heavy_model(self.nodes, model)
        return self._heavy[model]

    def guess(self, kind: str, model: str, accelerated: bool) -> float:
        key = (kind, model, accelerated)
        if key not in self._guesses:
            self._guesses[key] = guess_service_s(self.nodes, kind, model, accelerated)
        return self._guesses[key]


def capable_nodes(nodes: Iterable[Node], kind: str, req: Requirements | None) -> list[Node]:
    """The nodes that could run the job at all (free slots aside)."""
    return [n for n in nodes if n.caps is not None and unmet(n.caps, kind, req) is None]


def with_free_slots(capable: Sequence[Node], rng: random.Random | None = None) -> list[Node]:
    """Every capable node with a free slot; in a large fleet (and given `rng`), SAMPLE of them
    found from a random starting place, so that the cost does not grow with the fleet."""
    if rng is None or len(capable) <= SAMPLE_ABOVE:
        return [n for n in capable if n.free_slots > 0]
    size = len(capable)
    start = rng.randrange(size)
    found: list[Node] = []
    for i in range(size):
        node = capable[(start + i) % size]
        if node.free_slots > 0:
            found.append(node)
            if len(found) == SAMPLE:
                break
    return found


def choose(nodes: list[Node], kind: str, req: Requirements | None, avoid: Collection[str] = ()) -> Node | None:
    """The eligible node with a free slot and the earliest expected completion. Nodes in `avoid`
    (where this job's lease lapsed or that handed it back) are used only when no other of
    `nodes` could ever run the job; otherwise the job waits for one of those."""
    return choose_among(nodes, capable_nodes(nodes, kind, req), kind, req, avoid)


def choose_among(nodes: Sequence[Node], capable: Sequence[Node], kind: str, req: Requirements | None,
                 avoid: Collection[str] = (), rng: random.Random | None = None, estimates: Estimates | None = None) -> Node | None:
    """`choose`, given the capable nodes (a placement pass keeps them per requirement), a random
    source for sampling large fleets, and the pass's estimates."""
    if avoid:
        others = [n for n in capable if n.id not in avoid]
        capable = others or capable
    candidates = with_free_slots(capable, rng)
    if not candidates:
        return None
    estimates = estimates or Estimates(nodes)
    model = req.model if req is not None else None
    if model is None:
        fallback = estimates.fleet_service_s(kind)
        return min(candidates, key=lambda n: (expected_completion_s(n, kind, fallback), len(n.jobs), n.dispatched))
    heavy = estimates.heavy(model)
    guesses = {acc: estimates.guess(kind, model, acc) for acc in (False, True)}

    def key(n: Node) -> tuple[float, int, int]:
        guess = guesses[n.caps is not None and accelerated_for(n.caps, model)]
        return (expected_completion_s(n, kind, guess, model, kind_time_counts=not heavy), len(n.jobs), n.dispatched)

    return min(candidates, key=key)
