"""Dispatch benchmark: `noop` jobs through a real Mosquitto to two local agents.

    .venv/bin/python bench/dispatch.py [--jobs N] [--seconds S] [--window W] [--job-states all|final] [--json PATH]

What runs: Debian's `mosquitto` started from the project's own config
(`edgehive.broker.mosquitto.render_config`), one `edgehive coordinator` and two
`edgehive agent` processes, and a load generator in this process that submits on
`jobs/submit` (QoS 1) and times each job until its result arrives on
`results/noop/{job}` (QoS 1).

Two floors run in the same invocation:

* the paho floor (bench/paho_floor.py): plain paho request/reply through the *same*
  Mosquitto, a requester here and an echoing replier in its own process, QoS 1 both ways,
  TCP_NODELAY on both sides. It is what MQTT itself costs on this machine today; the
  system's throughput is judged as a ratio to it, because absolute rates on a shared VM
  drift by 2x from day to day.
* the runner floor: the same agent code (`edgehive.agents.runner.JobRunner` with
  `builtin_kinds()`, same workers and slots), fed `Job` objects directly from one thread,
  timed from submit to the result callback. Added latency is measured against it: what the
  whole MQTT path (broker, coordinator, three hops, JSON on the wire) adds to the work.

Each path runs two phases:

* throughput: a closed loop with `--window` jobs outstanding, `--jobs` jobs;
* latency: an open loop paced at `--latency-fraction` (0.5) of the system's phase-1
  rate. Both floors are paced at the *same* absolute rate, so "added p50" compares
  like with like.

Targets (from the issue): system jobs/s >= 0.90 x the paho floor's, measured in the same
run; added p50 < 1 ms at half the system's rate. The exit status is 0 when both are met,
1 when one is missed. `--json PATH` writes every figure; `--keep` keeps the component logs;
`--edgehive CMD` runs another build's CLI (the floors and the generator are this build's);
`--job-states final` has the coordinator publish only each job's final state (EDGEHIVE_JOB_STATES).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

import orjson
import psutil

from edgehive.agents.kinds import builtin_kinds
from edgehive.agents.runner import JobRunner
from edgehive.broker.mosquitto import render_config
from edgehive.bus import MqttBus
from edgehive.schemas import CoordinatorStats, Job, JobRequest, Result, Topics, decode, encode
from edgehive.schemas.kinds import NOOP_KIND
from edgehive.settings import MqttUrl

sys.path.insert(0, str(Path(__file__).resolve().parent))
# bench/ is not a package: the paho floor is a sibling module (and the replier's script).
from paho_floor import PahoRequester

TARGET_FLOOR_RATIO = 0.90  # system jobs/s over the paho floor's, same run
TARGET_ADDED_P50_MS = 1.0  # system p50 minus the runner floor's, paced at half the system's rate
MOSQUITTO = os.environ.get("BENCH_MOSQUITTO", "/usr/sbin/mosquitto")  # another build, e.g. one carried to a machine without Debian's
AGENT_IDS = ("bench-a", "bench-b")


# --------------------------------------------------------------------------------------------
# Measurement
# --------------------------------------------------------------------------------------------


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile; the benchmark reports what some job really saw, not an interpolation."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), round(q / 100.0 * len(sorted_values) + 0.5)))
    return sorted_values[rank - 1]


class Tracker:
    """Per-job start stamps and latencies; the window semaphore makes the closed loop closed.

    `begin` runs on the generator thread and `end` on whichever thread sees the result
    (paho's network thread, or a runner worker); dict and list operations are atomic
    under the GIL, so no extra lock sits on the measured path.
    """

    def __init__(self, expected: int, window: int) -> None:
        self.expected = expected
        self.window = threading.Semaphore(window)
        self.started: dict[str, float] = {}
        self.latencies: list[float] = []
        self.failed = 0
        self.done = threading.Event()
        self.first_start = 0.0
        self.last_end = 0.0

    def begin(self, job_id: str) -> None:
        now = time.perf_counter()
        if not self.first_start:
            self.first_start = now
        self.started[job_id] = now

    def end(self, job_id: str, ok: bool) -> None:
        now = time.perf_counter()
        start = self.started.pop(job_id, None)
        if start is None:
            return  # a duplicate, or a job of another phase
        self.latencies.append(now - start)
        self.last_end = now
        if not ok:
            self.failed += 1
        self.window.release()
        if len(self.latencies) >= self.expected:
            self.done.set()


@dataclass
class PhaseResult:
    """One row of the report."""

    phase: str
    path: str
    jobs: int
    completed: int
    failed: int
    seconds: float
    jobs_per_s: float
    p50_ms: float
    p99_ms: float
    offered_per_s: float | None = None
    generator_lag_p99_ms: float | None = None
    cpu_pct: dict[str, float] = field(default_factory=dict)
    stages_p50_ms: dict[str, float] = field(default_factory=dict)
    stages_p99_ms: dict[str, float] = field(default_factory=dict)


def summarize(phase: str, path: str, tracker: Tracker, **extra: object) -> PhaseResult:
    """Rate over first submit → last result, and nearest-rank percentiles of the latencies."""
    values = sorted(tracker.latencies)
    seconds = max(1e-9, tracker.last_end - tracker.first_start)
    return PhaseResult(
        phase=phase, path=path, jobs=tracker.expected, completed=len(values), failed=tracker.failed,
        seconds=round(seconds, 3), jobs_per_s=round(len(values) / seconds, 1),
        p50_ms=round(percentile(values, 50) * 1e3, 3), p99_ms=round(percentile(values, 99) * 1e3, 3),
        **extra,  # type: ignore[arg-type]
    )


class CpuMeter:
    """CPU time per process over a phase, as % of one core: shows where the 2 cores go.

    `others` is every other process on the machine (on a shared 2-core box, other
    people's test runs): it says how noisy the run was. It is summed per process rather
    than taken from the machine-wide counters, which drift by tens of percent in this VM.
    Processes that exit during the phase are missed, so it is a lower bound.
    """

    def __init__(self, processes: dict[str, int], idle: Sequence[int] = ()) -> None:
        """`idle`: our processes that are not measured but must not count as "others" (an idle fleet)."""
        self._procs = {name: psutil.Process(pid) for name, pid in processes.items()}
        self._ours = set(processes.values()) | set(idle)
        self._start: dict[str, float] = {}
        self._others_start: dict[tuple[int, float], float] = {}
        self._t0 = 0.0

    @staticmethod
    def _seconds(proc: psutil.Process) -> float:
        times = proc.cpu_times()
        return times.user + times.system

    def _ours_now(self) -> dict[str, float]:
        out = {}
        for name, proc in self._procs.items():
            with contextlib.suppress(psutil.Error):
                out[name] = self._seconds(proc)
        return out

    def _others_now(self) -> dict[tuple[int, float], float]:
        out = {}
        for proc in psutil.process_iter():
            if proc.pid in self._ours:
                continue
            with contextlib.suppress(psutil.Error):
                out[proc.pid, proc.create_time()] = self._seconds(proc)
        return out

    def start(self) -> None:
        self._start, self._others_start = self._ours_now(), self._others_now()
        self._t0 = time.perf_counter()

    def stop(self) -> dict[str, float]:
        end, others = self._ours_now(), self._others_now()
        elapsed = max(1e-9, time.perf_counter() - self._t0)
        used = {name: end[name] - self._start.get(name, 0.0) for name in end}
        used["others"] = sum(cpu - self._others_start.get(key, 0.0) for key, cpu in others.items())
        return {name: round(100.0 * seconds / elapsed, 1) for name, seconds in used.items()}


# --------------------------------------------------------------------------------------------
# Load generation (shared by both paths)
# --------------------------------------------------------------------------------------------


class Target(Protocol):
    """Something jobs can be submitted to; it calls `tracker.end` when a result comes back."""

    tracker: Tracker | None

    def submit(self, job_id: str) -> None:
        """Hand one job over without blocking on the system under test."""

    def flush(self) -> None:
        """Block until every submitted job has been handed over (the raw path queues locally)."""


def job_ids(tag: str) -> Iterator[str]:
    """Ids that are valid topic levels (the result topic ends in the job id)."""
    return (f"{tag}-{i}" for i in itertools.count())


def run_closed(target: Target, tag: str, jobs: int, window: int, timeout_s: float) -> Tracker:
    """Keep `window` jobs outstanding until `jobs` have been submitted; wait for the last result."""
    tracker = Tracker(jobs, window)
    target.tracker = tracker
    deadline = time.monotonic() + timeout_s
    for job_id in itertools.islice(job_ids(tag), jobs):
        if not tracker.window.acquire(timeout=max(0.0, deadline - time.monotonic())):
            break
        tracker.begin(job_id)
        target.submit(job_id)
    target.flush()
    tracker.done.wait(max(0.0, deadline - time.monotonic()))
    return tracker


def run_paced(target: Target, tag: str, rate: float, seconds: float, timeout_s: float) -> tuple[Tracker, float]:
    """Submit at a fixed rate (open loop); returns the tracker and the p99 generator lag in ms.

    The loop sleeps until each job's scheduled time (no busy wait: on 2 cores a spinning
    generator would steal a core from the system under test). The lag says whether the
    generator kept its schedule; latencies are stamped at the real submit.
    """
    jobs = max(1, int(rate * seconds))
    tracker = Tracker(jobs, window=jobs)
    target.tracker = tracker
    lags: list[float] = []
    t0 = time.perf_counter()
    for i, job_id in enumerate(itertools.islice(job_ids(tag), jobs)):
        due = t0 + i / rate
        now = time.perf_counter()
        if due > now:
            time.sleep(due - now)
            now = time.perf_counter()
        lags.append(now - due)
        tracker.begin(job_id)
        target.submit(job_id)
    target.flush()
    tracker.done.wait(timeout_s)
    lags.sort()
    return tracker, round(percentile(lags, 99) * 1e3, 3)


# --------------------------------------------------------------------------------------------
# The system path: Mosquitto + coordinator + two agents, as real processes
# --------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(check: Callable[[], bool], timeout_s: float, what: str, alive: Callable[[], None] = lambda: None) -> None:
    """Poll `check` (short intervals, never a fixed sleep) until true; `alive` raises if a process died."""
    deadline = time.monotonic() + timeout_s
    while not check():
        alive()
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not ready within {timeout_s:g} s")
        time.sleep(0.02)


def port_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def config_value(config: str, key: str) -> str:
    """The value of a directive in a rendered Mosquitto config (what the broker really runs with)."""
    for line in config.splitlines():
        parts = line.split()
        if parts and parts[0] == key:
            return " ".join(parts[1:])
    return "(not set: Mosquitto default)"


class Processes:
    """Child processes with their logs; every one is stopped at the end, even on errors."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.children: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.Popen[bytes]:
        log = (self.workdir / f"{name}.log").open("wb")
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True, cwd=cwd)
        log.close()
        self.children[name] = proc
        return proc

    def check_alive(self) -> None:
        for name, proc in self.children.items():
            if proc.poll() is not None:
                tail = (self.workdir / f"{name}.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{tail}")

    def stop_all(self) -> None:
        """Stop the edgehive processes first (agents drain, coordinator says offline), the broker last."""
        procs = list(self.children.values())  # the broker was started first
        self._stop(procs[1:])
        self._stop(procs[:1])

    @staticmethod
    def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
        """SIGTERM, a grace period, then SIGKILL for what is still there."""
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def edgehive_command(override: str | None = None) -> str:
    """The `edgehive` script of the interpreter running this benchmark (the project's venv)."""
    if override:
        return override
    beside = Path(sys.executable).with_name("edgehive")
    found = str(beside) if beside.exists() else shutil.which("edgehive")
    if not found:
        raise SystemExit("the `edgehive` command is not installed in this environment")
    return found


def component_env(url: str, prefix: str, state_dir: Path, args: argparse.Namespace, **extra: str) -> dict[str, str]:
    """Settings for one component; the caller's own EDGEHIVE_* are dropped so that they cannot skew a run.

    Stats every 0.5 s so the wait for "both nodes online" is short; a 2 s drain so the
    teardown is quick; the journal (the coordinator's per-job bookkeeping) stays on,
    in the temp folder, because production runs with it.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEHIVE_")}
    env.update(
        EDGEHIVE_MQTT_URL=url, EDGEHIVE_PREFIX=prefix, EDGEHIVE_STATE_DIR=str(state_dir),
        EDGEHIVE_HEARTBEAT_S=str(args.heartbeat_s), EDGEHIVE_LOG_LEVEL="WARNING",
        EDGEHIVE_STATS_INTERVAL_S="0.5", EDGEHIVE_DRAIN_TIMEOUT_S="2",
        EDGEHIVE_WORKERS=str(args.workers), EDGEHIVE_SLOTS=str(args.slots),
    )
    env.update(extra)
    return env


@dataclass
class System:
    """A running fleet on its own broker and prefix."""

    port: int
    prefix: str
    processes: Processes
    tcp_nodelay_broker: str
    agents: list[str] = field(default_factory=lambda: list(AGENT_IDS))

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def pids(self) -> dict[str, int]:
        return {name: proc.pid for name, proc in self.processes.children.items()}


def start_mosquitto(workdir: Path, processes: Processes) -> tuple[int, str]:
    """Mosquitto from the project's config on a free port, answering; returns (port, config text)."""
    port = free_port()
    data_dir = workdir / "mosquitto-data"
    config = render_config(port, data_dir)  # logs to stderr, which lands in mosquitto.log
    # Started as root, Mosquitto drops to its own user: let it write its persistence file.
    data_dir.mkdir()
    workdir.chmod(0o755)
    data_dir.chmod(0o777)
    config_path = workdir / "mosquitto.conf"
    config_path.write_text(config)
    processes.start("mosquitto", [MOSQUITTO, "-c", str(config_path)])
    wait_until(lambda: port_answers(port), 10, "mosquitto", processes.check_alive)
    return port, config


@contextlib.contextmanager
def running_system(workdir: Path, args: argparse.Namespace) -> Iterator[System]:
    """Mosquitto from the project's config, a coordinator and two agents; all stopped on exit."""
    processes = Processes(workdir)
    try:
        port, config = start_mosquitto(workdir, processes)
        prefix = f"bench-{uuid.uuid4().hex[:8]}/v1"
        url = f"mqtt://127.0.0.1:{port}"
        exe = edgehive_command(args.edgehive)
        processes.start("coordinator", [exe, "coordinator"], component_env(url, prefix, workdir / "state", args, EDGEHIVE_NODE_ID="coordinator",
                                                                      EDGEHIVE_JOB_STATES=args.job_states))
        for node in AGENT_IDS:
            processes.start(node, [exe, "agent"], component_env(url, prefix, workdir / "state", args, EDGEHIVE_NODE_ID=node))
        yield System(port, prefix, processes, config_value(config, "set_tcp_nodelay"))
    finally:
        processes.stop_all()


class MqttTarget:
    """The load generator's MQTT side: submits on `jobs/submit`, times results on `results/noop/+`."""

    def __init__(self, system: System) -> None:
        self.tracker: Tracker | None = None
        self.topics = Topics(system.prefix)
        self.stats: CoordinatorStats | None = None
        self.declined = 0
        self.submitted = 0
        self.stage_samples: dict[str, tuple[float, float, dict[str, float]]] = {}
        self.record_stages = False
        self._submit_wall: dict[str, float] = {}
        # inflight_max=0 (no client-side cap): paho rescans every unacknowledged message on each
        # PUBACK when a cap is set, which would make the generator itself a bottleneck.
        self.bus = MqttBus(
            MqttUrl.parse(system.url), self.topics, f"edgehive-bench-{os.getpid()}", source="bench", inflight_max=0,
        )
        results = self.topics.result(NOOP_KIND, "x").rpartition("/")[0] + "/+"  # results/noop/+
        self.bus.subscribe(results, self._on_result, qos=1)
        # An agent that cannot take a job ("full") refuses it here; the coordinator re-queues it
        # and pauses that node until its next heartbeat, which would show up as a stall.
        self.bus.subscribe(self.topics.pattern("declined"), self._on_declined, qos=1)
        self.bus.subscribe(self.topics.coordinator_stats, self._on_stats, lambda t, p: decode(CoordinatorStats, p), qos=0)

    def start(self) -> None:
        self.bus.start(timeout_s=10)

    def client_tcp_nodelay(self) -> bool:
        """Read TCP_NODELAY back from the live socket: the bus sets it in `_on_socket_open`."""
        sock = self.bus._client.socket()  # a read-only look at the real socket
        return isinstance(sock, socket.socket) and bool(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

    def flush(self) -> None:
        """Nothing is queued here: paho sends each submission as it is published."""

    def submit(self, job_id: str) -> None:
        self.submitted += 1
        if self.record_stages:
            self._submit_wall[job_id] = time.time()
        self.bus.publish(self.topics.submit, encode(JobRequest(kind=NOOP_KIND, id=job_id)), qos=1)

    def _on_stats(self, topic: str, stats: CoordinatorStats) -> None:
        self.stats = stats

    def _on_declined(self, topic: str, payload: bytes) -> None:
        self.declined += 1

    def _on_result(self, topic: str, payload: bytes) -> None:
        """Parse only what the timing needs (orjson, no pydantic): the generator must stay light."""
        arrived = time.time()
        result = orjson.loads(payload)
        job_id = result["job_id"]
        tracker = self.tracker
        if tracker is not None:
            tracker.end(job_id, bool(result.get("ok")))
        submitted = self._submit_wall.pop(job_id, None)
        if submitted is not None:
            self.stage_samples[job_id] = (submitted, arrived, result.get("timings", {}))

    def stop(self) -> None:
        self.bus.stop()


STAGES = (
    ("submit→coordinator", "submit", "queued"),
    ("coordinator→dispatch", "queued", "dispatched"),
    ("dispatch→agent", "dispatched", "received"),
    ("agent queue", "received", "started"),
    ("run", "started", "finished"),
    ("result→generator", "finished", "arrived"),
)


def stage_percentiles(samples: dict[str, tuple[float, float, dict[str, float]]], q: float) -> dict[str, float]:
    """A percentile of each hop, from the result's own timings (one host, one wall clock)."""
    columns: dict[str, list[float]] = {name: [] for name, _, _ in STAGES}
    for submitted, arrived, timings in samples.values():
        stamps = {**timings, "submit": submitted, "arrived": arrived}
        for name, a, b in STAGES:
            if a in stamps and b in stamps:
                columns[name].append(stamps[b] - stamps[a])
    return {name: round(percentile(sorted(v), q) * 1e3, 3) for name, v in columns.items() if v}


def fresh_stats(target: MqttTarget, timeout_s: float = 3.0) -> CoordinatorStats | None:
    """The coordinator's counters once they cover every submission (stats come every 0.5 s)."""
    with contextlib.suppress(TimeoutError):
        wait_until(lambda: target.stats is not None and target.stats.done + target.stats.failed >= target.submitted,
                   timeout_s, "final coordinator stats")
    return target.stats


def wait_for_fleet(target: MqttTarget, system: System, timeout_s: float = 30.0) -> None:
    """Measure nothing until the coordinator itself reports both agents online."""
    def ready() -> bool:
        return target.stats is not None and target.stats.nodes_online >= len(AGENT_IDS)
    wait_until(ready, timeout_s, "coordinator with both agents online", system.processes.check_alive)


def bench_system(args: argparse.Namespace, workdir: Path) -> tuple[list[PhaseResult], dict[str, object]]:
    """Both phases through the real broker; returns the rows and what the run ran with."""
    with running_system(workdir, args) as system:
        target = MqttTarget(system)
        target.start()
        try:
            wait_for_fleet(target, system)
            cpu = CpuMeter({**system.pids(), "generator": os.getpid()})
            info = {
                "broker_set_tcp_nodelay": system.tcp_nodelay_broker,
                "client_tcp_nodelay": target.client_tcp_nodelay(),
            }
            run_closed(target, "warm", args.warmup, args.window, args.timeout)
            cpu.start()
            tracker = run_closed(target, "thru", args.jobs, args.window, args.timeout)
            throughput = summarize("throughput", "system", tracker, cpu_pct=cpu.stop())
            rate = args.latency_rate or args.latency_fraction * throughput.jobs_per_s
            target.record_stages = True
            cpu.start()
            tracker, lag = run_paced(target, "lat", rate, args.seconds, args.timeout)
            latency = summarize(
                "latency", "system", tracker, offered_per_s=round(rate, 1),
                generator_lag_p99_ms=lag, cpu_pct=cpu.stop(), stages_p50_ms=stage_percentiles(target.stage_samples, 50),
                stages_p99_ms=stage_percentiles(target.stage_samples, 99),
            )
            stats = fresh_stats(target)
            info["coordinator_counters"] = stats.model_dump(include={"submitted", "done", "failed", "retried", "rejected", "duplicates"}) if stats else {}
            info["declined_by_agents"] = target.declined
        finally:
            target.stop()
        floor_rows, info["floor_client_tcp_nodelay"] = bench_paho_floor(args, system, rate)
        return [throughput, latency, *floor_rows], info


def bench_paho_floor(args: argparse.Namespace, system: System, rate: float) -> tuple[list[PhaseResult], bool]:
    """Plain paho request/reply through the system's own broker, right after the system's phases.

    The fleet stays up but idle (heartbeats and stats only), so the broker, its config and
    the machine are the ones the system just ran on. Both phases as on the system path; the
    latency phase at the system's absolute rate.
    """
    replier = system.processes.start(
        "paho-replier", [sys.executable, str(Path(__file__).with_name("paho_floor.py")), str(system.port), system.prefix],
    )
    payload = encode(JobRequest(kind="noop", id="thru-12345"))  # the size the system's generator sends
    target = PahoRequester(system.port, system.prefix, payload)
    try:
        target.wait_ready(10, system.processes.check_alive)
        measured = {"mosquitto": system.processes.children["mosquitto"].pid, "replier": replier.pid, "requester": os.getpid()}
        cpu = CpuMeter(measured, idle=list(system.pids().values()))
        return floor_phases(target, "paho", cpu, args, rate), target.client_tcp_nodelay()
    finally:
        target.stop()


# --------------------------------------------------------------------------------------------
# The raw floor: the same JobRunner, called directly
# --------------------------------------------------------------------------------------------


class RawTarget:
    """Two JobRunners fed from the generator thread, each bounded by its slots.

    Jobs wait in a local FIFO for a free slot, as they wait in the coordinator's queue on
    the system path, so the closed loop has the same `--window` outstanding on both paths.
    """

    def __init__(self, workers: int, slots: int) -> None:
        self.tracker: Tracker | None = None
        self._pending: deque[str] = deque()
        self._slot_freed = threading.Event()
        self._slots: list[threading.Semaphore] = []
        self._runners: list[JobRunner] = []
        for node in AGENT_IDS:
            slot = threading.Semaphore(slots)
            self._slots.append(slot)
            self._runners.append(JobRunner(builtin_kinds(), node, workers, slots, self._on_result(slot)))
        self._turn = 0

    def _on_result(self, slot: threading.Semaphore) -> Callable[[Result], None]:
        def record(result: Result) -> None:
            slot.release()  # before the tracker wakes the generator, so it finds the slot free
            self._slot_freed.set()
            tracker = self.tracker
            if tracker is not None:
                tracker.end(result.job_id, result.ok)
        return record

    def submit(self, job_id: str) -> None:
        self._pending.append(job_id)
        self._feed(block=False)

    def flush(self) -> None:
        self._feed(block=True)

    def _feed(self, block: bool) -> None:
        """Hand queued jobs to runners with a free slot, round robin, as the agent's handler would."""
        while self._pending:
            index = self._free_runner()
            if index is None:
                if not block:
                    return
                self._slot_freed.wait(0.001)
                self._slot_freed.clear()
                continue
            job_id = self._pending.popleft()
            now = time.time()
            job = Job(id=job_id, kind=NOOP_KIND, source=job_id, attempt=1, boot_id="raw", submitted=now, dispatched=now)
            # The runner frees its slot just after the result callback returns: retry that instant.
            while not self._runners[index].try_accept(job, time.time()):
                time.sleep(0)

    def _free_runner(self) -> int | None:
        for step in range(len(self._runners)):
            index = (self._turn + step) % len(self._runners)
            if self._slots[index].acquire(blocking=False):
                self._turn = index + 1
                return index
        return None

    def shutdown(self) -> None:
        for runner in self._runners:
            runner.wait_idle(5)
            runner.shutdown()


def floor_phases(target: Target, path: str, cpu: CpuMeter, args: argparse.Namespace, rate: float) -> list[PhaseResult]:
    """A floor's two phases: closed-loop throughput after a warm-up, then the latency phase paced
    at the system's absolute rate."""
    run_closed(target, "warm", args.warmup, args.window, args.timeout)
    cpu.start()
    tracker = run_closed(target, "thru", args.jobs, args.window, args.timeout)
    throughput = summarize("throughput", path, tracker, cpu_pct=cpu.stop())
    cpu.start()
    tracker, lag = run_paced(target, "lat", rate, args.seconds, args.timeout)
    latency = summarize("latency", path, tracker, offered_per_s=round(rate, 1), generator_lag_p99_ms=lag, cpu_pct=cpu.stop())
    return [throughput, latency]


def bench_raw(args: argparse.Namespace, rate: float) -> list[PhaseResult]:
    """The floor: both phases, the latency phase at the system's absolute rate."""
    target = RawTarget(args.workers, args.slots)
    cpu = CpuMeter({"generator+runners": os.getpid()})
    try:
        return floor_phases(target, "raw", cpu, args, rate)
    finally:
        target.shutdown()


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def machine() -> dict[str, str]:
    cpu_model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    version = subprocess.run([MOSQUITTO, "-h"], check=False, capture_output=True, text=True).stdout.splitlines()[:1]
    return {
        "nproc": str(os.cpu_count()), "cpu_model": cpu_model, "mosquitto": (version or ["?"])[0],
        "python": platform.python_version(), "paho_mqtt": _version("paho-mqtt"), "pydantic": _version("pydantic"),
    }


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version(dist)
    except PackageNotFoundError:
        return "?"


def verdicts(rows: dict[tuple[str, str], PhaseResult]) -> dict[str, object]:
    """The two targets, and the ratios and differences that say how far each is."""
    sys_t, raw_t, paho_t = rows["throughput", "system"], rows["throughput", "raw"], rows["throughput", "paho"]
    sys_l, raw_l, paho_l = rows["latency", "system"], rows["latency", "raw"], rows["latency", "paho"]
    floor_ratio = round(sys_t.jobs_per_s / paho_t.jobs_per_s, 3) if paho_t.jobs_per_s else 0.0
    added = round(sys_l.p50_ms - raw_l.p50_ms, 3)
    return {
        "floor_ratio": floor_ratio,
        "throughput_ratio": round(sys_t.jobs_per_s / raw_t.jobs_per_s, 3),
        "throughput_added_p50_ms": round(sys_t.p50_ms - raw_t.p50_ms, 3),
        "latency_ratio": round(sys_l.jobs_per_s / raw_l.jobs_per_s, 3),
        "added_p50_ms": added,
        "added_p99_ms": round(sys_l.p99_ms - raw_l.p99_ms, 3),
        "over_paho_p50_ms": round(sys_l.p50_ms - paho_l.p50_ms, 3),
        "over_paho_p99_ms": round(sys_l.p99_ms - paho_l.p99_ms, 3),
        "floor_pass": (floor_ratio >= TARGET_FLOOR_RATIO and sys_t.failed == 0 and sys_t.completed == sys_t.jobs
                       and paho_t.completed == paho_t.jobs),
        "latency_pass": added < TARGET_ADDED_P50_MS and sys_l.completed == sys_l.jobs,
        "cpu_us_per_job": cpu_cost_us(sys_t),
        "paho_cpu_us_per_job": cpu_cost_us(paho_t),
        "ceilings": ceilings(sys_t, os.cpu_count() or 1),
    }


def display_path(path: str) -> str:
    """`.venv/bin/python` rather than an absolute path when run from the repository."""
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


def fmt_row(label: str, r: PhaseResult) -> str:
    lost = r.jobs - r.completed
    extra = f"  failed {r.failed}" if r.failed else ""
    extra += f"  LOST {lost}" if lost else ""
    return f"  {label:<26}{r.jobs_per_s:>10,.0f}{r.p50_ms:>11.3f}{r.p99_ms:>11.3f}{r.completed:>8}{extra}"


def fmt_cpu(row: PhaseResult) -> str:
    return ", ".join(f"{name} {pct:.0f}" for name, pct in row.cpu_pct.items())


def cpu_cost_us(row: PhaseResult) -> dict[str, float]:
    """CPU microseconds per job for each of our processes: robust to a noisy machine, unlike jobs/s."""
    if row.jobs_per_s <= 0:
        return {}
    return {name: round(pct / 100.0 / row.jobs_per_s * 1e6, 1) for name, pct in row.cpu_pct.items() if name != "others"}


def ceilings(row: PhaseResult, cores: int) -> dict[str, int]:
    """What the CPU cost per job allows with the machine to ourselves (an estimate, not a measurement).

    The coordinator handles every job on one thread (paho's), so one core bounds it; the
    whole run (broker, coordinator, agents and this generator) shares all the cores.
    """
    cost = cpu_cost_us(row)
    total = sum(cost.values())
    return {
        "coordinator_one_core": round(1e6 / cost["coordinator"]) if cost.get("coordinator") else 0,
        "all_processes_all_cores": round(cores * 1e6 / total) if total else 0,
    }


def report(rows: dict[tuple[str, str], PhaseResult], verdict: dict[str, object], info: dict[str, object], args: argparse.Namespace) -> str:
    """The table the issue asks for, plus what is needed to read it honestly."""
    sys_t, raw_t, paho_t = rows["throughput", "system"], rows["throughput", "raw"], rows["throughput", "paho"]
    sys_l, raw_l, paho_l = rows["latency", "system"], rows["latency", "raw"], rows["latency", "paho"]
    ok = {True: "PASS", False: "MISS"}
    cost = cpu_cost_us(sys_t)
    paho_cost = cpu_cost_us(paho_t)
    bounds = verdict["ceilings"]
    assert isinstance(bounds, dict)
    return "\n".join([
        f"command: {' '.join([display_path(sys.executable), *sys.argv])}",
        (f"machine: {info['nproc']} cores, {info['cpu_model']}; {info['mosquitto']}; Python {info['python']}, "
         f"paho-mqtt {info['paho_mqtt']}, pydantic {info['pydantic']}"),
        (f"broker: set_tcp_nodelay {info['broker_set_tcp_nodelay']} (broker/mosquitto.conf); clients: TCP_NODELAY "
         f"{'on' if info['client_tcp_nodelay'] else 'OFF'} (edgehive.bus.MqttBus; read back from the generator's socket), "
         f"{'on' if info.get('floor_client_tcp_nodelay') else 'OFF'} (paho floor requester)"),
        (f"fleet: 1 coordinator (job states: {args.job_states}), 2 agents (workers {args.workers}, slots {args.slots} each); "
         "noop jobs; submit and results QoS 1"),
        "paho floor: plain paho requester here, echoing replier process, QoS 1 both ways, same broker, fleet idle",
        "",
        f"  {'':<26}{'jobs/s':>10}{'p50 ms':>11}{'p99 ms':>11}{'jobs':>8}",
        f"throughput: closed loop, {args.window} jobs outstanding",
        fmt_row("system (MQTT)", sys_t),
        fmt_row("paho floor (req/reply)", paho_t),
        fmt_row("runner floor (direct)", raw_t),
        f"  {'system / paho floor':<26}{verdict['floor_ratio']:>10.3f}   (target >= {TARGET_FLOOR_RATIO:.2f})",
        (f"  {'system / runner floor':<26}{verdict['throughput_ratio']:>10.3f}{verdict['throughput_added_p50_ms']:>+11.3f}"
         "   (closed-loop p50 is mostly queueing: about window / rate)"),
        f"latency: open loop at {sys_l.offered_per_s:,.0f} jobs/s (" + (
            "--latency-rate" if args.latency_rate else f"{args.latency_fraction:g} x system throughput") + "), both floors paced the same",
        fmt_row("system (MQTT)", sys_l),
        fmt_row("paho floor (req/reply)", paho_l),
        fmt_row("runner floor (direct)", raw_l),
        f"  {'added over runner floor':<26}{'':>10}{verdict['added_p50_ms']:>+11.3f}{verdict['added_p99_ms']:>+11.3f}   (target p50 < {TARGET_ADDED_P50_MS:g} ms)",
        f"  {'added over paho floor':<26}{'':>10}{verdict['over_paho_p50_ms']:>+11.3f}{verdict['over_paho_p99_ms']:>+11.3f}",
        "",
        (f"target jobs/s >= {TARGET_FLOOR_RATIO:.2f} x paho floor:     {ok[bool(verdict['floor_pass'])]}  "
         f"({sys_t.jobs_per_s:,.0f} / {paho_t.jobs_per_s:,.0f} = {verdict['floor_ratio']:.3f})"),
        (f"target added p50 < {TARGET_ADDED_P50_MS:g} ms at half rate:   {ok[bool(verdict['latency_pass'])]}  "
         f"({verdict['added_p50_ms']:+.3f} ms at {sys_l.offered_per_s:,.0f} jobs/s)"),
        "",
        "CPU, % of one core (others = every other process on the machine):",
        f"  throughput  system: {fmt_cpu(sys_t)}",
        f"              paho:   {fmt_cpu(paho_t)}",
        f"              runner: {fmt_cpu(raw_t)}",
        f"  latency     system: {fmt_cpu(sys_l)}",
        f"              paho:   {fmt_cpu(paho_l)}",
        f"              runner: {fmt_cpu(raw_l)}",
        "CPU per job, throughput phase, us: " + ", ".join(f"{k} {v:.0f}" for k, v in cost.items())
        + f" (sum {sum(cost.values()):.0f}) | paho floor: " + ", ".join(f"{k} {v:.0f}" for k, v in paho_cost.items())
        + f" (sum {sum(paho_cost.values()):.0f}) | runner {sum(cpu_cost_us(raw_t).values()):.0f}",
        (f"  ceiling estimates from that cost (machine to ourselves): coordinator on one core {bounds['coordinator_one_core']:,} jobs/s, "
         f"all processes on {info['nproc']} cores {bounds['all_processes_all_cores']:,} jobs/s"),
        "system latency by hop, median ms (result timings, one wall clock): "
        + ", ".join(f"{k} {v:.3f}" for k, v in sys_l.stages_p50_ms.items()),
        "system latency by hop, p99 ms: " + ", ".join(f"{k} {v:.3f}" for k, v in sys_l.stages_p99_ms.items()),
        (f"generator schedule lag p99: system {sys_l.generator_lag_p99_ms} ms, paho {paho_l.generator_lag_p99_ms} ms, "
         f"runner {raw_l.generator_lag_p99_ms} ms; "
         f"coordinator counters {info.get('coordinator_counters')}; declined by agents {info.get('declined_by_agents')}"),
    ])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--jobs", type=int, default=20000, help="jobs in the throughput phase (each path)")
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of the paced latency phase (each path)")
    parser.add_argument("--window", type=int, default=1000, help="outstanding jobs in the closed loop")
    parser.add_argument("--warmup", type=int, default=500, help="uncounted jobs before measuring (each path)")
    parser.add_argument("--latency-fraction", type=float, default=0.5, help="latency phase rate as a fraction of the system throughput")
    parser.add_argument("--latency-rate", type=float, default=None, help="fixed latency phase rate in jobs/s (overrides the fraction)")
    parser.add_argument("--workers", type=int, default=2, help="EDGEHIVE_WORKERS of each agent (and of each raw runner)")
    parser.add_argument("--slots", type=int, default=64, help="EDGEHIVE_SLOTS of each agent (and capacity of each raw runner)")
    parser.add_argument("--heartbeat-s", type=float, default=1.0, help="EDGEHIVE_HEARTBEAT_S of all components")
    parser.add_argument("--timeout", type=float, default=120.0, help="give up on a phase's missing results after this many seconds")
    parser.add_argument("--job-states", choices=("all", "final"), default="all",
                        help="the coordinator's EDGEHIVE_JOB_STATES: final publishes one state per job, as a request/reply floor has no progress messages")
    parser.add_argument("--edgehive", default=None, metavar="CMD", help="the edgehive command for the components (default: the one beside this Python)")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the figures as JSON here")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder (component logs, broker config)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so the broker and the fleet are stopped on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    workdir = Path(tempfile.mkdtemp(prefix="edgehive-bench-"))
    try:
        system_rows, info = bench_system(args, workdir)
        raw_rows = bench_raw(args, rate=system_rows[1].offered_per_s or 1.0)
    finally:
        if args.keep:
            print(f"logs and config kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    info.update(machine())
    rows = {(r.phase, r.path): r for r in system_rows + raw_rows}
    verdict = verdicts(rows)
    print(report(rows, verdict, info, args))
    if args.json:
        document = {"command": " ".join(sys.argv), "settings": vars(args) | {"json": str(args.json)}, "info": info,
                    "results": [asdict(r) for r in rows.values()], "verdict": verdict}
        args.json.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2, default=str))
    return 0 if verdict["floor_pass"] and verdict["latency_pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
