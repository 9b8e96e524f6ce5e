"""The agent's job runner: bounded acceptance, results for every outcome, and measured service times.

Jobs that must stay "in progress" block on a threading.Event (the `gate` kind) rather
than sleeping for a guessed time, so nothing here depends on how fast the machine is.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict

from edgehive.agents.kinds import JobFailed, JobKind, KindRegistry, builtin_kinds
from edgehive.agents.runner import JobRunner
from edgehive.schemas import Job, Result, encode

WAIT_S = 30.0  # generous upper bound for "eventually"; tests return as soon as the condition holds


class Results:
    """Collects published results; `wait(n)` blocks until n have arrived (or fails after WAIT_S)."""

    def __init__(self) -> None:
        self.items: list[Result] = []
        self._lock = threading.Lock()
        self._want = 0
        self._enough = threading.Event()

    def publish(self, result: Result) -> None:
        encode(result)  # what the agent does with it next: it must be publishable
        with self._lock:
            self.items.append(result)
            if len(self.items) >= self._want:
                self._enough.set()

    def wait(self, n: int) -> list[Result]:
        with self._lock:
            self._want = n
            if len(self.items) >= n:
                self._enough.set()
            else:
                self._enough.clear()
        assert self._enough.wait(WAIT_S), f"only {len(self.items)} of {n} results arrived"
        with self._lock:
            return list(self.items)

    def by_id(self, n: int) -> dict[str, Result]:
        return {r.job_id: r for r in self.wait(n)}


class EmptyParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


def eventually(predicate: Callable[[], bool], what: str) -> None:
    """Poll `predicate` until true; fail with `what` after WAIT_S. Never a fixed sleep."""
    deadline = time.monotonic() + WAIT_S
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def job(job_id: str, kind: str = "noop", params: dict[str, Any] | None = None, deadline: float | None = None) -> Job:
    """A job as the coordinator would hand it to this node."""
    now = time.time()
    return Job(id=job_id, kind=kind, params=params or {}, source=f"src-{job_id}", attempt=1, boot_id="boot-1",
               submitted=now, dispatched=now, deadline=deadline)


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    """Jobs of kind `gate` run until this is set; always set at teardown so no worker stays blocked."""
    event = threading.Event()
    yield event
    event.set()


@pytest.fixture
def kinds(gate: threading.Event) -> KindRegistry:
    """The built-in kinds plus `gate` (held open by the test) and two failing kinds."""
    registry = builtin_kinds()

    def run_gate(_: EmptyParams) -> str:
        if not gate.wait(WAIT_S):
            raise RuntimeError("gate never opened")
        return "opened"

    def explode(_: EmptyParams) -> None:
        raise RuntimeError("sensor on fire")

    def refuse(_: EmptyParams) -> None:
        raise JobFailed("no frame in payload")

    registry.register(JobKind("gate", EmptyParams, run_gate))
    registry.register(JobKind("explode", EmptyParams, explode))
    registry.register(JobKind("refuse", EmptyParams, refuse))
    return registry


@pytest.fixture
def results() -> Results:
    return Results()


@pytest.fixture
def make_runner(kinds: KindRegistry, results: Results, gate: threading.Event) -> Iterator[Callable[..., JobRunner]]:
    """Builds runners on node `n1` and shuts them down (gate opened first) after the test."""
    made: list[JobRunner] = []

    def build(workers: int = 2, capacity: int = 4) -> JobRunner:
        runner = JobRunner(kinds, "n1", workers, capacity, results.publish)
        made.append(runner)
        return runner

    yield build
    gate.set()
    for runner in made:
        runner.wait_idle(WAIT_S)
        runner.shutdown()


def test_runs_noop_and_sleep(make_runner: Callable[..., JobRunner], results: Results) -> None:
    """Built-in kinds run and their results carry the job's identity and output."""
    runner = make_runner()
    received = time.time()
    assert runner.try_accept(job("a", "noop", {"echo": {"hello": [1, 2]}}), received)
    assert runner.try_accept(job("b", "sleep", {"seconds": 0.01}), received)
    got = results.by_id(2)
    assert got["a"].ok and got["a"].output == {"hello": [1, 2]} and got["a"].error is None
    assert got["b"].ok and got["b"].output == {"slept_s": 0.01}
    for job_id, result in got.items():
        assert (result.node, result.source, result.attempt) == ("n1", f"src-{job_id}", 1)
        t = result.timings
        assert t.received == received and t.queued is not None and t.dispatched is not None
        assert t.started is not None and t.finished is not None and t.started <= t.finished
    assert runner.wait_idle(WAIT_S)
    assert (runner.done, runner.failed) == (2, 0)
    assert runner.held_ids() == [] and runner.counts() == (0, 0)


def test_sleep_default_from_design() -> None:
    """The README's `{"kind": "sleep", "params": {"seconds": 0.05}}` is what an empty sleep means."""
    sleep = builtin_kinds().get("sleep")
    assert sleep is not None
    assert sleep.params.model_validate({}).seconds == 0.05  # type: ignore[attr-defined]


def test_capacity_bound(make_runner: Callable[..., JobRunner], results: Results, gate: threading.Event) -> None:
    """A node never holds more than `capacity` jobs; room comes back when they finish."""
    runner = make_runner(workers=2, capacity=2)
    assert runner.try_accept(job("g1", "gate"), time.time())
    assert runner.try_accept(job("g2", "gate"), time.time())
    assert not runner.try_accept(job("third", "sleep", {"seconds": 0.3}), time.time())
    assert sorted(runner.held_ids()) == ["g1", "g2"]
    assert not runner.is_held("third")
    gate.set()
    results.wait(2)
    assert runner.wait_idle(WAIT_S)
    assert runner.try_accept(job("third", "noop"), time.time())
    assert {r.job_id for r in results.wait(3)} == {"g1", "g2", "third"}


def test_workers_bound_and_queue(make_runner: Callable[..., JobRunner], gate: threading.Event) -> None:
    """With one worker, a second accepted job waits: counts() reports (running, waiting) for heartbeats."""
    runner = make_runner(workers=1, capacity=3)
    assert runner.try_accept(job("g1", "gate"), time.time())
    assert runner.try_accept(job("g2", "gate"), time.time())
    eventually(lambda: runner.counts() == (1, 1), "one running and one waiting")
    gate.set()
    assert runner.wait_idle(WAIT_S)
    assert runner.counts() == (0, 0)


def test_duplicate_id_refused(make_runner: Callable[..., JobRunner], results: Results, gate: threading.Event) -> None:
    """A redelivered job is not run twice while the first copy is held."""
    runner = make_runner()
    assert runner.try_accept(job("dup", "gate"), time.time())
    assert runner.is_held("dup")
    assert not runner.try_accept(job("dup", "noop"), time.time())
    gate.set()
    assert [r.job_id for r in results.wait(1)] == ["dup"]
    assert runner.wait_idle(WAIT_S)
    assert len(results.items) == 1 and results.items[0].output == "opened"


@pytest.mark.parametrize("params", [{"seconds": -1}, {"seconds": "soon"}, {"seconds": 0.01, "extra": 1}, {"seconds": 1e9}])
def test_invalid_params(make_runner: Callable[..., JobRunner], results: Results, params: dict[str, Any]) -> None:
    """Bad parameters fail the job with a clear reason instead of an exception inside the work."""
    runner = make_runner()
    assert runner.try_accept(job("bad", "sleep", params), time.time())
    (result,) = results.wait(1)
    assert not result.ok
    assert result.error is not None and result.error.startswith("invalid params")
    assert runner.wait_idle(WAIT_S)
    assert (runner.done, runner.failed) == (0, 1)


def test_unknown_kind(make_runner: Callable[..., JobRunner], results: Results) -> None:
    """A kind this node does not run fails with a reason naming it."""
    runner = make_runner()
    assert runner.try_accept(job("x", "teleport"), time.time())
    (result,) = results.wait(1)
    assert not result.ok and result.error is not None and "'teleport'" in result.error
    assert result.kind == "teleport"


@pytest.mark.swallows_exceptions  # a job kind that raises is logged with its traceback, by design
def test_raising_kind_becomes_failed_result(make_runner: Callable[..., JobRunner], results: Results) -> None:
    """A crash inside a job is a failed result with the exception's text, never a dead agent."""
    runner = make_runner()
    assert runner.try_accept(job("boom", "explode"), time.time())
    assert runner.try_accept(job("no", "refuse"), time.time())
    got = results.by_id(2)
    assert not got["boom"].ok and got["boom"].error == "RuntimeError: sensor on fire"
    assert not got["no"].ok and got["no"].error == "no frame in payload"
    assert runner.wait_idle(WAIT_S)
    assert (runner.done, runner.failed) == (0, 2)
    # The runner is still healthy afterwards.
    assert runner.try_accept(job("after", "noop", {"echo": 1}), time.time())
    assert results.by_id(3)["after"].ok


@pytest.mark.swallows_exceptions  # a job kind that raises is logged with its traceback, by design
def test_custom_kind_in_fresh_registry(results: Results) -> None:
    """Each agent has its own registry; a kind registered there runs and its failure text is kept."""
    registry = KindRegistry()

    def divide(_: EmptyParams) -> float:
        return 1 / 0

    registry.register(JobKind("divide", EmptyParams, divide))
    runner = JobRunner(registry, "n2", 1, 1, results.publish)
    try:
        assert runner.try_accept(job("d", "divide"), time.time())
        (result,) = results.wait(1)
        assert (result.ok, result.node) == (False, "n2")
        assert result.error == "ZeroDivisionError: division by zero"
        assert runner.wait_idle(WAIT_S)  # the result is published just before the slot is released
        assert runner.try_accept(job("s", "sleep"), time.time())  # builtins are not in a fresh registry
        assert "'sleep'" in (results.by_id(2)["s"].error or "")
    finally:
        runner.wait_idle(WAIT_S)
        runner.shutdown()


def test_deadline_passed(make_runner: Callable[..., JobRunner], results: Results) -> None:
    """A job that could only start after its deadline is failed, not run late."""
    runner = make_runner()
    assert runner.try_accept(job("late", "noop", {"echo": 1}, deadline=time.time() - 60), time.time())
    (result,) = results.wait(1)
    assert not result.ok and result.error is not None and "deadline" in result.error


def test_future_deadline_runs(make_runner: Callable[..., JobRunner], results: Results) -> None:
    """A deadline that has not passed does not stop the job."""
    runner = make_runner()
    assert runner.try_accept(job("ok", "noop", {"echo": 2}, deadline=time.time() + 3600), time.time())
    (result,) = results.wait(1)
    assert result.ok and result.output == 2


def test_service_by_kind(make_runner: Callable[..., JobRunner], results: Results) -> None:
    """Measured service times per kind feed heartbeats and the scheduler."""
    runner = make_runner()
    assert runner.service_by_kind == {} and runner.mean_service_s() is None
    for i in range(3):
        assert runner.try_accept(job(f"s{i}", "sleep", {"seconds": 0.01}), time.time())
    assert runner.try_accept(job("n", "noop"), time.time())
    results.wait(4)
    assert runner.wait_idle(WAIT_S)
    assert set(runner.service_by_kind) == {"sleep", "noop"}
    assert runner.service_by_kind["sleep"] > 0  # time.sleep(0.01) took some time
    assert runner.service_by_kind["noop"] >= 0
    mean = runner.mean_service_s()
    assert mean == pytest.approx((runner.service_by_kind["sleep"] + runner.service_by_kind["noop"]) / 2)


class ModelParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str
    seconds: float = 0.0


def test_service_by_model(kinds: KindRegistry, results: Results) -> None:
    """A kind that says which params field names its model gets service times per model as
    well (the heartbeat's service_by_model); failures and other kinds' params do not count."""

    def infer(params: ModelParams) -> str:
        if params.model == "ghost":
            raise JobFailed("this node has no model 'ghost'")
        time.sleep(params.seconds)
        return params.model

    kinds.register(JobKind("infer", ModelParams, infer, model_param="model"))
    runner = JobRunner(kinds, "n1", 2, 8, results.publish)
    try:
        now = time.time()
        assert runner.try_accept(job("a", "infer", {"model": "centerface", "seconds": 0.01}), now)
        assert runner.try_accept(job("b", "infer", {"model": "face"}), now)
        assert runner.try_accept(job("c", "infer", {"model": "ghost"}), now)
        assert runner.try_accept(job("d", "noop", {"echo": 1, "model": "not-a-model-job"}), now)
        outcome = results.by_id(4)
        assert [outcome[i].ok for i in "abcd"] == [True, True, False, True]
        assert runner.wait_idle(WAIT_S)
        assert set(runner.service_by_model) == {"centerface", "face"}
        assert runner.service_by_model["centerface"] > 0  # slept 10 ms
        assert set(runner.service_by_kind) == {"infer", "noop"}
    finally:
        runner.shutdown()


def test_wait_idle(make_runner: Callable[..., JobRunner], gate: threading.Event) -> None:
    """Draining waits for held jobs: False while one is stuck, True once it finished."""
    runner = make_runner()
    assert runner.wait_idle(0.0)  # nothing held: idle at once
    assert runner.try_accept(job("g", "gate"), time.time())
    assert not runner.wait_idle(0.01)  # the gate is closed, so this cannot be idle, however slow the machine
    gate.set()
    assert runner.wait_idle(WAIT_S)
    assert runner.held_ids() == []


@pytest.mark.swallows_exceptions  # a job kind that raises is logged with its traceback, by design
def test_long_error_text_still_gives_a_result(results: Results) -> None:
    """A kind raising with a huge message must still yield a failed result and free its slot."""
    registry = KindRegistry()

    def verbose(_: EmptyParams) -> None:
        raise ValueError("x" * 5000)

    registry.register(JobKind("verbose", EmptyParams, verbose))
    runner = JobRunner(registry, "n1", 1, 1, results.publish)
    try:
        assert runner.try_accept(job("v", "verbose"), time.time())
        assert runner.wait_idle(5.0), "the job was never released: its slot is lost for good"
        (result,) = results.wait(1)
        assert not result.ok and result.error is not None and result.error.startswith("ValueError: xxx")
        assert runner.try_accept(job("next", "verbose"), time.time())
    finally:
        runner.shutdown()


def test_register_refuses_duplicate_name() -> None:
    """Two modules registering the same kind is a programming error, caught at start."""
    registry = builtin_kinds()
    assert registry.names() == ["noop", "sleep"]
    with pytest.raises(ValueError, match="'sleep' is already registered"):
        registry.register(JobKind("sleep", EmptyParams, lambda _: None))
    assert registry.get("sleep") is not None and registry.get("sleep").params is not EmptyParams  # type: ignore[union-attr]
    assert registry.get("missing") is None


def test_running_ids_exclude_waiting_jobs(make_runner: Callable[..., JobRunner], gate: threading.Event) -> None:
    """Heartbeats tell started jobs from prefetched ones: only the first are RUNNING."""
    runner = make_runner(workers=1, capacity=2)
    assert runner.try_accept(job("g1", "gate"), time.time())
    assert runner.try_accept(job("g2", "gate"), time.time())
    eventually(lambda: runner.counts() == (1, 1), "one running and one waiting")
    assert runner.running_ids() == ["g1"] and sorted(runner.held_ids()) == ["g1", "g2"]


def test_sleep_is_cancelled_at_its_deadline(make_runner: Callable[..., JobRunner], results: Results) -> None:
    """A running sleep far longer than its deadline ends at the deadline with the reason."""
    runner = make_runner()
    long = job("long", "sleep", {"seconds": 600})
    assert runner.try_accept(long.model_copy(update={"deadline": long.submitted + 0.25}), time.time())
    (result,) = results.wait(1)
    assert not result.ok and result.error == f"deadline of 0.25 s passed while running on node {runner.node}"
    assert runner.wait_idle(WAIT_S)


def test_max_runtime_of_a_kind_is_an_implicit_deadline(results: Results) -> None:
    """A cancellable kind that declares max_runtime_s is stopped after it, with no deadline on the job."""

    def wait_for_cancel(_: EmptyParams, cancel: threading.Event) -> str:
        if not cancel.wait(WAIT_S):
            return "never cancelled"
        raise JobFailed("cancelled")

    kinds = KindRegistry([JobKind("forever", EmptyParams, wait_for_cancel, cancellable=True, max_runtime_s=0.1)])
    runner = JobRunner(kinds, "n1", 1, 1, results.publish)
    try:
        assert runner.try_accept(job("f", "forever"), time.time())
        (result,) = results.wait(1)
        assert not result.ok and "ran longer than kind 'forever' allows (0.1 s)" in (result.error or "")
    finally:
        runner.wait_idle(WAIT_S)
        runner.shutdown()


def test_waiting_job_handed_back_once_and_deadline_fails_it(kinds: KindRegistry, results: Results, gate: threading.Event) -> None:
    """Behind a stuck worker: a prefetched job is handed back once (the second time it stays);
    one whose deadline passes while it waits fails without running."""
    handed: list[tuple[str, str]] = []
    runner = JobRunner(kinds, "n1", 1, 3, results.publish, lambda j, received, reason: handed.append((j.id, reason)))
    try:
        assert runner.try_accept(job("stuck", "gate"), time.time())
        eventually(lambda: runner.running_ids() == ["stuck"], "the gate job to start")
        assert runner.try_accept(job("behind", "sleep", {"seconds": 0.01}), time.time())
        late = job("late", "sleep")  # submitted a second ago with a deadline of half a second
        late = late.model_copy(update={"submitted": late.submitted - 1, "deadline": late.submitted - 0.5})
        assert runner.try_accept(late, time.time())
        runner.check_waiting(max_wait_s=1e-9)
        assert [h[0] for h in handed] == ["behind"] and "waited" in handed[0][1]
        (failed,) = results.wait(1)
        assert failed.job_id == "late" and failed.error == "deadline of 0.5 s passed while waiting for a worker on node n1"
        assert runner.held_ids() == ["stuck"]
        assert runner.try_accept(job("behind", "sleep", {"seconds": 0.01}), time.time())  # sent here again: it stays
        runner.check_waiting(max_wait_s=1e-9)
        assert len(handed) == 1 and sorted(runner.held_ids()) == ["behind", "stuck"]
        gate.set()
        assert {r.job_id for r in results.wait(3)} == {"late", "stuck", "behind"}
    finally:
        gate.set()
        runner.wait_idle(WAIT_S)
        runner.shutdown()


def test_a_job_s_slot_is_free_once_its_result_is_published_and_it_stays_held_until_then() -> None:
    """The coordinator sends the next job as soon as it reads a result, which can be before the
    worker that published it runs again: by then the slot must take that job. Until the result
    is queued, the job is still held, so a heartbeat never drops a job whose result is not out."""
    seen: list[tuple[bool, list[str]]] = []
    runner: JobRunner | None = None

    def publish(result: Result) -> None:
        assert runner is not None
        if result.job_id == "first":  # inside the publish of the one slot's result: the next job arrives
            seen.append((runner.try_accept(job("second", "sleep", {"seconds": 0.0}), time.time()), runner.held_ids()))

    runner = JobRunner(builtin_kinds(), "node-1", workers=1, capacity=1, publish_result=publish)
    try:
        assert runner.try_accept(job("first", "sleep", {"seconds": 0.0}), time.time())
        eventually(lambda: bool(seen), "the first result published")
        accepted, held = seen[0]
        assert accepted, "the slot was free for the next job"
        assert "first" in held, "the first job is still held while its result goes out"
        assert runner.wait_idle(WAIT_S) and runner.held_ids() == []
        assert runner.try_accept(job("third", "sleep", {"seconds": 60.0}), time.time())
        assert not runner.try_accept(job("fourth", "sleep", {"seconds": 0.0}), time.time()), "one slot: full again"
    finally:
        runner.cancel_all("test over")
        runner.shutdown()
