"""Placement: requirement filtering, slot limits, and weighing load, heat and measured speed (per kind,
per model, and for heavy models the accelerated nodes first)."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest
from pydantic import ValidationError

from edgehive.coordinator.registry import Node
from edgehive.coordinator.scheduler import (
    ACCELERATED_SPEEDUP,
    DEFAULT_SERVICE_S,
    SAMPLE,
    SAMPLE_ABOVE,
    Estimates,
    accelerated_for,
    capable_nodes,
    choose,
    choose_among,
    expected_completion_s,
    fleet_service_s,
    guess_service_s,
    never_runnable,
    unmet,
    with_free_slots,
)
from edgehive.schemas import Capabilities, Heartbeat, ModelRuntime, Requirements


def caps(node: str = "n1", **overrides: Any) -> Capabilities:
    """A plausible Pi's capabilities; override what a test is about."""
    fields: dict[str, Any] = dict(
        node=node, boot_id="b1", ts=0.0, version="0.1.0", arch="aarch64", board="Raspberry Pi 5 Model B Rev 1.0",
        os="Linux", python="3.11", cores=4, ram_mb=4096, accelerators=[], backends=["litert"], models=["face"],
        kinds=["sleep", "detect"], workers=2, slots=4, tags=["camera"],
    )
    fields.update(overrides)
    return Capabilities(**fields)


def beat(node: str = "n1", **overrides: Any) -> Heartbeat:
    """A cool, idle heartbeat; override what a test is about."""
    fields: dict[str, Any] = dict(
        node=node, boot_id="b1", seq=1, ts=0.0, cpu_pct=10.0, mem_pct=30.0, temp_c=45.0, throttled=False,
        in_flight=0, queued=0, jobs_done=0, jobs_failed=0,
    )
    fields.update(overrides)
    return Heartbeat(**fields)


def node(node_id: str, *, alive: bool = True, heartbeat: dict[str, Any] | None = None, **cap_overrides: Any) -> Node:
    """A registry Node built from real models, alive by default, with an idle heartbeat."""
    return Node(node_id, caps=caps(node_id, **cap_overrides), boot_id="b1", alive=alive,
                heartbeat=beat(node_id, **(heartbeat or {})))


# -- unmet -------------------------------------------------------------------------------------


def test_unmet_none_when_everything_fits() -> None:
    """A node that has all that is required is eligible."""
    req = Requirements(model="face", accelerator="edgetpu", min_ram_mb=4096, arch="aarch64", tags=["camera"], node="n1")
    assert unmet(caps(accelerators=["edgetpu"]), "detect", req) is None
    assert unmet(caps(), "sleep", None) is None
    assert unmet(caps(), "sleep", Requirements()) is None


@pytest.mark.parametrize(
    ("kind", "req", "words"),
    [
        ("fuse", None, "kind 'fuse'"),
        ("fuse", Requirements(), "kind 'fuse'"),
        ("detect", Requirements(node="n2"), "is not node 'n2'"),
        ("detect", Requirements(model="pose"), "no model 'pose'"),
        ("detect", Requirements(accelerator="cuda"), "no cuda accelerator"),
        ("detect", Requirements(min_ram_mb=4097), "4096 MB RAM < 4097"),
        ("detect", Requirements(arch="x86_64"), "is aarch64, not x86_64"),
        ("detect", Requirements(tags=["camera", "outdoor"]), "lacks tags ['outdoor']"),
    ],
)
def test_unmet_reasons(kind: str, req: Requirements | None, words: str) -> None:
    """Each requirement on its own rules the node out, with a reason a person can read."""
    reason = unmet(caps(), kind, req)
    assert reason is not None and words in reason


# -- never_runnable ----------------------------------------------------------------------------


def test_never_runnable_without_nodes() -> None:
    """With an empty registry the submitter is told why nothing will happen."""
    assert never_runnable([], "sleep", None) == "no agent is known to the coordinator"
    assert never_runnable([Node("ghost")], "sleep", None) == "no agent is known to the coordinator"


def test_dead_but_capable_node_keeps_job_runnable() -> None:
    """A known node that is down now may come back: the job waits instead of failing."""
    assert never_runnable([node("n1", alive=False)], "detect", Requirements(model="face")) is None


def test_never_runnable_names_nodes_and_reasons() -> None:
    """When no known node fits, the reason names them."""
    reason = never_runnable([node("n1"), node("n2", models=["pose"])], "detect", Requirements(model="yolo"))
    assert reason is not None
    assert "n1 has no model 'yolo'" in reason and "n2 has no model 'yolo'" in reason


# -- choose ------------------------------------------------------------------------------------


def test_choose_nothing_eligible() -> None:
    """No node fits (or none exists): no placement."""
    assert choose([], "sleep", None) is None
    assert choose([node("n1")], "fuse", None) is None
    assert choose([node("n1", alive=False)], "sleep", None) is None


def test_choose_respects_requirements() -> None:
    """Only the node with the required accelerator is chosen, even if busier."""
    plain, tpu = node("plain"), node("tpu", accelerators=["edgetpu"])
    tpu.jobs = {"a", "b"}
    assert choose([plain, tpu], "detect", Requirements(accelerator="edgetpu")) is tpu
    assert choose([plain, tpu], "detect", Requirements(node="plain")) is plain


def test_choose_prefers_fewer_jobs_per_worker() -> None:
    """Of two equal nodes, the one with fewer held jobs finishes sooner."""
    busy, idle = node("busy"), node("idle")
    busy.jobs = {"j1", "j2"}
    assert choose([busy, idle], "sleep", None) is idle


def test_choose_prefers_more_workers() -> None:
    """Two jobs on four workers wait less than two jobs on one worker."""
    small, big = node("small", workers=1), node("big", workers=4)
    small.jobs, big.jobs = {"a", "b"}, {"c", "d"}
    assert choose([small, big], "sleep", None) is big


def test_never_past_slots() -> None:
    """A full node is never chosen, however fast it is; when all are full there is no placement."""
    fast = node("fast", slots=2, heartbeat={"service_by_kind": {"sleep": 0.001}})
    slow = node("slow", slots=2, heartbeat={"service_by_kind": {"sleep": 5.0}, "cpu_pct": 99.0, "throttled": True})
    fast.jobs = {"f1", "f2"}
    for i in range(2):
        chosen = choose([fast, slow], "sleep", None)
        assert chosen is slow
        chosen.jobs.add(f"s{i}")
    assert choose([fast, slow], "sleep", None) is None


def test_fills_exactly_to_slots() -> None:
    """Repeated placement without completions stops at the sum of slots."""
    nodes = [node("a", slots=3), node("b", slots=2)]
    placed = 0
    while (chosen := choose(nodes, "sleep", None)) is not None:
        chosen.jobs.add(f"j{placed}")
        placed += 1
        assert placed <= 5
    assert placed == 5
    assert [len(n.jobs) for n in nodes] == [3, 2]


@pytest.mark.parametrize(
    "hot",
    [{"throttled": True}, {"temp_c": 85.0}, {"cpu_pct": 98.0}],
    ids=["throttled", "hot", "cpu-saturated"],
)
def test_unhealthy_node_loses_to_cool_one(hot: dict[str, Any]) -> None:
    """A throttling, hot or saturated node gets less work than an otherwise equal cool one."""
    for order in ((0, 1), (1, 0)):  # the list order must not decide
        nodes = [node("sick", heartbeat=hot), node("cool")]
        nodes = [nodes[i] for i in order]
        assert choose(nodes, "sleep", None).id == "cool"


@pytest.mark.parametrize("hot", [{"throttled": True}, {"temp_c": 85.0}, {"cpu_pct": 98.0}])
def test_unhealthy_node_still_used_when_cool_one_is_busy(hot: dict[str, Any]) -> None:
    """Less work, not none: a sick idle node beats a cool one that is well loaded."""
    sick, cool = node("sick", heartbeat=hot), node("cool", slots=10)
    cool.jobs = {f"j{i}" for i in range(8)}
    assert choose([sick, cool], "sleep", None) is sick


def test_measured_slower_node_loses() -> None:
    """A node that measured this kind slower gets it less (a Pi vs a Jetson)."""
    for order in ((0, 1), (1, 0)):
        nodes = [node("pi", heartbeat={"service_by_kind": {"detect": 0.120}}),
                 node("jetson", heartbeat={"service_by_kind": {"detect": 0.015}})]
        nodes = [nodes[i] for i in order]
        assert choose(nodes, "detect", None).id == "jetson"


def test_per_kind_time_beats_overall_mean() -> None:
    """The scheduler weighs the measured time of this kind, not the node's mean over all kinds."""
    a = node("a", heartbeat={"service_s": 0.01, "service_by_kind": {"detect": 0.5}})
    b = node("b", heartbeat={"service_s": 1.0, "service_by_kind": {"detect": 0.05}})
    assert choose([a, b], "detect", None) is b


def test_fleet_median_is_the_guess_for_unmeasured_nodes() -> None:
    """A node that never ran the kind is assumed to be as fast as the fleet's median."""
    nodes = [node(f"n{i}", heartbeat={"service_by_kind": {"detect": s}}) for i, s in enumerate((0.1, 0.3, 0.2))]
    assert fleet_service_s(nodes, "detect") == 0.2
    assert fleet_service_s(nodes, "sleep") == DEFAULT_SERVICE_S
    fresh = node("fresh")
    fresh.heartbeat = None
    assert expected_completion_s(fresh, "detect", fleet_service_s(nodes, "detect")) == 0.2


@pytest.mark.parametrize("held", [False, True], ids=["jobs-finish-at-once", "jobs-held"])
def test_equal_nodes_alternate(held: bool) -> None:
    """Ties are broken by what was already dispatched, so equal nodes share the work evenly."""
    nodes = [node("a", slots=20), node("b", slots=20)]
    counts: Counter[str] = Counter()
    for i in range(10):
        chosen = choose(nodes, "sleep", None)
        assert chosen is not None
        if held:
            chosen.jobs.add(f"j{i}")
        chosen.dispatched += 1
        counts[chosen.id] += 1
    assert counts == {"a": 5, "b": 5}


def test_draining_node_not_chosen() -> None:
    """An agent shutting down takes no new work even when it is the best candidate."""
    draining = node("draining", heartbeat={"draining": True, "service_by_kind": {"sleep": 0.001}})
    normal = node("normal", heartbeat={"service_by_kind": {"sleep": 1.0}})
    assert choose([draining, normal], "sleep", None) is normal
    assert choose([draining], "sleep", None) is None


def test_dead_node_not_chosen() -> None:
    """Only live nodes receive jobs."""
    dead, alive = node("dead", alive=False, heartbeat={"service_by_kind": {"sleep": 0.001}}), node("alive")
    assert choose([dead, alive], "sleep", None) is alive


def test_avoided_node_left_for_another_capable_one() -> None:
    """A job whose lease lapsed on n1 goes elsewhere even when n1 looks best, or waits for the other."""
    fast, slow = node("n1", heartbeat={"service_by_kind": {"sleep": 0.01}}), node("n2", heartbeat={"service_by_kind": {"sleep": 1.0}})
    assert choose([fast, slow], "sleep", None) is fast
    assert choose([fast, slow], "sleep", None, avoid={"n1"}) is slow
    slow.jobs = {f"j{i}" for i in range(4)}  # full
    assert choose([fast, slow], "sleep", None, avoid={"n1"}) is None


def test_avoided_node_used_when_no_other_could_run_the_job() -> None:
    plain, tpu = node("plain"), node("tpu", accelerators=["edgetpu"])
    assert choose([plain, tpu], "detect", Requirements(accelerator="edgetpu"), avoid={"tpu"}) is tpu


# -- per-model service times and heavy models ---------------------------------------------------

HEAVY = "centerface"


def runtimes(device: str = "cpu", *, heavy: bool = True, backend: str = "onnx") -> dict[str, ModelRuntime]:
    """What an agent advertises for its models: face on LiteRT, centerface on `device`."""
    return {"face": ModelRuntime(backend="litert", device="cpu"), HEAVY: ModelRuntime(backend=backend, device=device, heavy=heavy)}


def cpu_node(node_id: str, **kw: Any) -> Node:
    return node(node_id, models=["face", HEAVY], model_runtimes=runtimes("cpu"), **kw)


def gpu_node(node_id: str, **kw: Any) -> Node:
    return node(node_id, models=["face", HEAVY], accelerators=["cuda", "tensorrt"], model_runtimes=runtimes("tensorrt"), **kw)


def test_per_model_time_beats_per_kind_time() -> None:
    """A job naming a model is weighed by each node's time for that model, not its kind average."""
    a = node("a", models=["face", "person"], heartbeat={"service_by_kind": {"detect": 0.01}, "service_by_model": {"person": 0.9}})
    b = node("b", models=["face", "person"], heartbeat={"service_by_kind": {"detect": 0.05}, "service_by_model": {"person": 0.1}})
    assert choose([a, b], "detect", Requirements(model="person")) is b
    assert choose([a, b], "detect", None) is a  # no model named: the kind's time


def test_unmeasured_model_falls_back_to_the_kind_time() -> None:
    """A light model no node has run yet: each node's time for the kind decides."""
    slow = node("slow", models=["face", "person"], heartbeat={"service_by_kind": {"detect": 0.5}})
    fast = node("fast", models=["face", "person"], heartbeat={"service_by_kind": {"detect": 0.05}})
    assert choose([slow, fast], "detect", Requirements(model="person")) is fast


def test_unmeasured_light_model_guessed_at_the_fleet_median_for_it() -> None:
    measured = [node(f"m{i}", heartbeat={"service_by_model": {"face": s}}) for i, s in enumerate((0.1, 0.3, 0.2))]
    assert guess_service_s(measured, "detect", "face") == 0.2
    assert guess_service_s(measured, "detect", "person") == DEFAULT_SERVICE_S


def test_heavy_model_goes_to_the_accelerated_node_before_anything_is_measured() -> None:
    """The CPU node is measured fast at light models; that says nothing about the heavy one."""
    cpu = cpu_node("pi", heartbeat={"service_by_kind": {"detect": 0.005}})
    gpu = gpu_node("jetson", heartbeat={"service_by_kind": {"detect": 0.03}})
    assert choose([cpu, gpu], "detect", Requirements(model=HEAVY)) is gpu
    assert choose([cpu, gpu], "detect", Requirements(model="face")) is cpu  # light: measured kind time decides


def test_an_accelerator_the_heavy_model_does_not_run_on_counts_for_nothing() -> None:
    """A Coral node runs centerface on its CPU (the EdgeTPU runs TFLite only): no preference."""
    coral = node("coral", models=["face", HEAVY], accelerators=["edgetpu"], model_runtimes=runtimes("cpu"),
                 heartbeat={"service_by_kind": {"detect": 0.001}})
    gpu = gpu_node("jetson")
    assert not accelerated_for(coral.caps, HEAVY)  # type: ignore[arg-type]
    assert accelerated_for(gpu.caps, HEAVY)  # type: ignore[arg-type]
    assert choose([coral, gpu], "detect", Requirements(model=HEAVY)) is gpu


def test_a_gpu_model_on_a_node_that_fell_back_to_the_cpu_is_not_accelerated() -> None:
    """The agent reports what really runs the model: device cpu, whatever the node's accelerators."""
    fallen = node("fallen", models=[HEAVY], accelerators=["cuda"], model_runtimes=runtimes("cpu"))
    assert not accelerated_for(fallen.caps, HEAVY)  # type: ignore[arg-type]


def test_measured_times_decide_once_known() -> None:
    """A GPU node measured slower than a CPU node (a throttled GPU, a fallback) loses: measurements beat guesses."""
    cpu = cpu_node("pc", heartbeat={"service_by_model": {HEAVY: 0.3}})
    gpu = gpu_node("jetson", heartbeat={"service_by_model": {HEAVY: 2.0}})
    assert choose([cpu, gpu], "detect", Requirements(model=HEAVY)) is cpu


def test_heavy_frames_stay_on_the_gpu_until_its_slots_are_full() -> None:
    """Measured 30 ms against 900 ms: the GPU node takes every frame it has room for, the CPU the rest."""
    cpu = cpu_node("pi", slots=4, heartbeat={"service_by_model": {HEAVY: 0.9}})
    gpu = gpu_node("jetson", slots=4, workers=1, heartbeat={"service_by_model": {HEAVY: 0.03}})
    placed = []
    for i in range(6):
        chosen = choose([cpu, gpu], "detect", Requirements(model=HEAVY))
        assert chosen is not None
        chosen.jobs.add(f"f{i}")
        placed.append(chosen.id)
    assert placed == ["jetson"] * 4 + ["pi"] * 2


def test_unmeasured_nodes_are_guessed_from_nodes_like_them() -> None:
    """Heavy model: a new GPU node is guessed at the GPU nodes' median, a new CPU node at the CPU
    nodes'; with only the other class measured, ACCELERATED_SPEEDUP converts between them."""
    gpus = [gpu_node(f"g{i}", heartbeat={"service_by_model": {HEAVY: s}}) for i, s in enumerate((0.02, 0.04, 0.03))]
    cpus = [cpu_node(f"c{i}", heartbeat={"service_by_model": {HEAVY: s}}) for i, s in enumerate((0.8, 1.0))]
    assert guess_service_s(gpus + cpus, "detect", HEAVY, accelerated=True) == 0.03
    assert guess_service_s(gpus + cpus, "detect", HEAVY, accelerated=False) == 1.0
    assert guess_service_s(gpus, "detect", HEAVY, accelerated=False) == pytest.approx(0.03 * ACCELERATED_SPEEDUP)
    assert guess_service_s(cpus, "detect", HEAVY, accelerated=True) == pytest.approx(1.0 / ACCELERATED_SPEEDUP)
    fresh = [cpu_node("c"), gpu_node("g")]
    assert guess_service_s(fresh, "detect", HEAVY, accelerated=True) == pytest.approx(DEFAULT_SERVICE_S / ACCELERATED_SPEEDUP)
    assert guess_service_s(fresh, "detect", HEAVY, accelerated=False) == DEFAULT_SERVICE_S


def test_a_new_cpu_node_does_not_steal_heavy_frames_from_a_measured_gpu() -> None:
    """The GPU measured 30 ms; a CPU node that joins is guessed at 300 ms, so it is not tried first."""
    gpu = gpu_node("jetson", heartbeat={"service_by_model": {HEAVY: 0.03}})
    newcomer = cpu_node("new-pi")
    assert choose([gpu, newcomer], "detect", Requirements(model=HEAVY)) is gpu


def test_heartbeat_bounds_service_by_model() -> None:
    """Like service_by_kind: at most 256 models, names that are identifiers, times within a day."""
    beat(service_by_model={f"m{i}": 0.1 for i in range(256)})
    with pytest.raises(ValidationError):
        beat(service_by_model={f"m{i}": 0.1 for i in range(257)})
    with pytest.raises(ValidationError):
        beat(service_by_model={"bad name/with slash": 0.1})
    with pytest.raises(ValidationError):
        beat(service_by_model={"m": -1.0})


# -- large fleets ------------------------------------------------------------------------------


def test_a_large_fleet_is_weighed_by_sample_yet_full_nodes_never_get_work_and_load_spreads() -> None:
    """Beyond SAMPLE_ABOVE nodes a job is weighed against SAMPLE of them: the cost stays constant,
    a full node is never chosen, and work still spreads over the whole fleet."""
    fleet = [node(f"n{i:03d}", slots=1, workers=1) for i in range(SAMPLE_ABOVE * 3)]
    for busy in fleet[: len(fleet) - 5]:
        busy.jobs.add("taken")  # all but five are full
    rng = random.Random(7)
    capable = capable_nodes(fleet, "sleep", None)
    chosen = []
    for i in range(5):
        pick = choose_among(fleet, capable, "sleep", None, rng=rng, estimates=Estimates(fleet))
        assert pick is not None and pick.free_slots == 1
        pick.jobs.add(f"j{i}")
        chosen.append(pick.id)
    assert sorted(chosen) == sorted(n.id for n in fleet[-5:])  # the five free ones, each once
    assert choose_among(fleet, capable, "sleep", None, rng=rng) is None  # a full fleet: none, not a full node


def test_a_sample_prefers_the_least_loaded_of_the_nodes_it_weighs() -> None:
    fleet = [node(f"n{i:03d}", slots=4, workers=1) for i in range(SAMPLE_ABOVE * 2)]
    for n in fleet:
        n.jobs.update({"a", "b"})
    idle = fleet[SAMPLE_ABOVE]
    idle.jobs.clear()
    picks = Counter(choose_among(fleet, fleet, "sleep", None, rng=random.Random(seed)).id for seed in range(200))  # type: ignore[union-attr]
    assert picks[idle.id] > 0  # found by the samples that include it, and then chosen over loaded nodes
    assert len(picks) > 20  # the others spread over the fleet, not piled on one node
    assert all(with_free_slots(fleet, random.Random(1))) and len(with_free_slots(fleet, random.Random(1))) == SAMPLE
