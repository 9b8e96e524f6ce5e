"""Fleet simulator: one process plays N agents over a few MQTT connections, to measure the coordinator at scale.

    .venv/bin/python bench/fleetsim.py [--nodes 1000,5000] [--jobs 2000] [--connections 4] [--sim-procs N] [--sink] [--gc] [--json PATH]

Each simulated node speaks only the documented topics and schemas: a retained birth
(`nodes/{node}/capabilities`, `nodes/{node}/status` online), a heartbeat every second on
`nodes/{node}/heartbeat` (spread evenly over the second), and an immediate `ok` result on
`nodes/{node}/results` for every job it is sent on `nodes/{node}/jobs` (a job or an array).
It lists no held jobs in its heartbeats: it answers before its next one.

For each fleet size, on a fresh Mosquitto (the project's config) and a fresh
`edgehive coordinator` (`EDGEHIVE_HEARTBEAT_S=1`, so a node is dead after 3 s of silence):

1. births: every node online in `coordinator/stats`; the coordinator's RSS before and after
   (memory per known node); how long `edgehive status` takes to list them all;
2. steady: heartbeats alone for `--steady-s` seconds; the coordinator's CPU as % of one core;
3. burst: `--jobs` noop jobs published at once on `jobs/submit` (QoS 1); time until every
   result is on `results/noop/+`, jobs/s, the coordinator's CPU, and whether any live node was
   declared dead meanwhile (the coordinator's own `offline` with reason "heartbeat timeout")
   or the stats stopped;
4. mass death: half the nodes stop heartbeating (and answering) without a will; the time
   until the coordinator publishes its own `offline` verdict for the first and the last of
   them (the liveness bound: 3 s of silence, checked every 0.5 s), and any live node it
   declared dead by mistake.

A two-node row runs first as the reference: the same burst through the same coordinator
code with two (simulated) nodes, so "dispatch across N nodes ÷ across two" is a ratio from
one run. Nothing is judged here; the figures go to BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import multiprocessing
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import paho.mqtt.client as paho
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dispatch import Processes, component_env, edgehive_command, machine, start_mosquitto, wait_until

from edgehive.schemas import Topics


def connect(port: int, client_id: str) -> paho.Client:
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv311)
    client.max_inflight_messages_set(0)  # unlimited: the simulator must not be the bottleneck
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port, keepalive=30)
    client.loop_start()
    return client


@dataclass
class SimNode:
    id: str
    boot_id: str
    seq: int = 0
    done: int = 0
    silent: bool = False


@dataclass
class Simulator:
    """N nodes over `connections` paho clients; each client owns a slice of the nodes."""

    port: int
    prefix: str
    n: int
    connections: int
    slots: int = 4
    topics: Topics = field(init=False)
    nodes: list[SimNode] = field(default_factory=list)
    clients: list[paho.Client] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _sent: list[int] = field(default_factory=list)  # heartbeats published, per connection's thread

    def __post_init__(self) -> None:
        self.topics = Topics(self.prefix)
        run = uuid.uuid4().hex[:6]
        self.nodes = [SimNode(f"sim-{run}-{i:05d}", uuid.uuid4().hex[:12]) for i in range(self.n)]

    def slice(self, c: int) -> list[SimNode]:
        return self.nodes[c::self.connections]

    def start(self) -> None:
        for c in range(self.connections):
            client = connect(self.port, f"fleetsim-{c}-{uuid.uuid4().hex[:6]}")
            mine = {node.id: node for node in self.slice(c)}
            client.on_message = lambda cl, ud, msg, mine=mine: self._on_job(cl, mine, msg)
            topics = [(self.topics.jobs(node_id), 1) for node_id in mine]
            for chunk in range(0, len(topics), 200):
                client.subscribe(topics[chunk:chunk + 200])
            self.clients.append(client)
        time.sleep(0.5)  # the subscriptions are in place before any job can be placed
        self._sent = [0] * len(self.clients)
        for c, client in enumerate(self.clients):
            for node in self.slice(c):
                client.publish(self.topics.capabilities(node.id), self._caps(node), qos=1, retain=True)
                client.publish(self.topics.status(node.id), orjson.dumps({"v": 1, "state": "online", "boot_id": node.boot_id, "ts": time.time()}), qos=1, retain=True)
            thread = threading.Thread(target=self._beat, args=(c, client), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _caps(self, node: SimNode) -> bytes:
        return orjson.dumps({"v": 1, "node": node.id, "boot_id": node.boot_id, "ts": time.time(), "version": "sim", "arch": "x86_64",
                             "board": "fleetsim", "os": "Linux", "python": "3", "cores": 4, "ram_mb": 4096, "kinds": ["noop"],
                             "workers": self.slots, "slots": self.slots})

    def _beat(self, c: int, client: paho.Client) -> None:
        """Every node of the slice once a second, spread evenly."""
        nodes = self.slice(c)
        gap = 1.0 / max(1, len(nodes))
        next_at = time.monotonic()
        for node in itertools.cycle(nodes):
            if self._stop.is_set():
                return
            next_at += gap
            if not node.silent:
                node.seq += 1
                client.publish(self.topics.heartbeat(node.id), orjson.dumps({
                    "v": 1, "node": node.id, "boot_id": node.boot_id, "seq": node.seq, "ts": time.time(), "cpu_pct": 10.0,
                    "mem_pct": 20.0, "in_flight": 0, "queued": 0, "jobs_done": node.done, "jobs_failed": 0,
                    "service_by_kind": {"noop": 0.001}, "held": [], "running": []}), qos=0)
                self._sent[c] += 1
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)

    def _on_job(self, client: paho.Client, mine: dict[str, SimNode], msg: paho.MQTTMessage) -> None:
        node = mine.get(msg.topic.rsplit("/", 2)[-2])
        if node is None or node.silent:
            return
        body = orjson.loads(msg.payload)
        now = time.time()
        for job in body if isinstance(body, list) else [body]:
            node.done += 1
            client.publish(self.topics.node_results(node.id), orjson.dumps({
                "v": 1, "job_id": job["id"], "kind": job["kind"], "node": node.id, "source": job["source"],
                "attempt": job["attempt"], "ok": True, "output": None,
                "timings": {"queued": job["submitted"], "dispatched": job["dispatched"], "started": now, "finished": now}}), qos=1)

    def silence(self, fraction: float) -> list[str]:
        """Stop the heartbeats (and answers) of the first `fraction` of every slice: a death without a will."""
        gone = []
        for c in range(self.connections):
            nodes = self.slice(c)
            for node in nodes[:int(len(nodes) * fraction)]:
                node.silent = True
                gone.append(node.id)
        return gone

    def sent(self) -> int:
        """Heartbeats published so far: whether the simulator kept up with its fleet's 1 Hz."""
        return sum(self._sent)

    def stop(self) -> None:
        self._stop.set()
        for client in self.clients:
            client.loop_stop()
            client.disconnect()


def _simulate(conn: Connection, port: int, prefix: str, n: int, connections: int) -> None:
    """A child process of `SimulatorPool`: one `Simulator`, driven by commands on a pipe."""
    sim = Simulator(port, prefix, n, connections)
    sim.start()
    conn.send(None)
    while True:
        command, arg = conn.recv()
        if command == "silence":
            conn.send(sim.silence(arg))
        elif command == "sent":
            conn.send(sim.sent())
        else:
            sim.stop()
            conn.send(None)
            return


class SimulatorPool:
    """The fleet split over `procs` processes, for more nodes than one interpreter can play (one
    Python process keeps up with about 5,000 heartbeats a second on one core)."""

    def __init__(self, port: int, prefix: str, n: int, connections: int, procs: int) -> None:
        context = multiprocessing.get_context("fork")
        self.pipes: list[Connection] = []
        self.children: list[BaseProcess] = []
        for k in range(procs):
            share = n // procs + (1 if k < n % procs else 0)
            parent, child = context.Pipe()
            proc = context.Process(target=_simulate, args=(child, port, prefix, share, max(1, connections // procs)), daemon=True)
            self.pipes.append(parent)
            self.children.append(proc)

    def _ask(self, command: str, arg: object = None) -> list[Any]:
        for pipe in self.pipes:
            pipe.send((command, arg))
        return [pipe.recv() for pipe in self.pipes]

    def start(self) -> None:
        for proc in self.children:
            proc.start()
        for pipe in self.pipes:
            pipe.recv()

    def silence(self, fraction: float) -> list[str]:
        return [node for gone in self._ask("silence", fraction) for node in gone]

    def sent(self) -> int:
        return sum(self._ask("sent"))

    def stop(self) -> None:
        self._ask("stop")
        for proc in self.children:
            proc.join(10)


class Watcher:
    """Stats, results and the coordinator's verdicts, on one client."""

    def __init__(self, port: int, topics: Topics) -> None:
        self.topics = topics
        self.stats: dict[str, Any] = {}
        self.stats_at: list[float] = []
        self.results = 0
        self.declared_dead: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        self.client = connect(port, f"fleetsim-watch-{uuid.uuid4().hex[:6]}")
        self.client.on_message = self._on_message
        self.client.subscribe([(topics.coordinator_stats, 0), (f"{topics.prefix}/results/noop/+", 1), (topics.pattern("status"), 1)])

    def _on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        now = time.monotonic()
        if msg.topic == self.topics.coordinator_stats:
            self.stats = orjson.loads(msg.payload)
            self.stats_at.append(now)
        elif msg.topic.endswith("/status"):
            body = orjson.loads(msg.payload) if msg.payload.startswith(b"{") else {}
            if body.get("state") == "offline" and body.get("reason") == "heartbeat timeout":
                with self._lock:
                    self.declared_dead.append((now, msg.topic.rsplit("/", 2)[-2]))
        else:
            with self._lock:
                self.results += 1

    def longest_stats_gap(self, since: float) -> float:
        times = [t for t in self.stats_at if t >= since]
        return max((b - a for a, b in itertools.pairwise(times)), default=float("nan"))

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def cpu_s(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return times.user + times.system


# `--gc`: the coordinator run through this wrapper, which times every cycle collection with
# gc.callbacks and writes the totals when the process ends; `default` puts CPython's own
# thresholds back after edgehive/gctune.py set its own, to compare the two in one invocation.
GC_WRAPPER = """
import atexit, gc, json, os, sys, time
from edgehive import gctune
if os.environ["FLEETSIM_GC"] == "default":
    gctune.THRESHOLDS = gc.get_threshold()
spent, count, started = [0.0], [0], [0.0]
def timed(phase, info):
    if phase == "start":
        started[0] = time.process_time()
    else:
        spent[0] += time.process_time() - started[0]
        count[0] += 1
gc.callbacks.append(timed)
atexit.register(lambda: open(os.environ["FLEETSIM_GC_OUT"], "w").write(json.dumps(
    {"gc_s": spent[0], "collections": count[0], "cpu_s": time.process_time(), "objects": len(gc.get_objects())})))
from edgehive.cli import main
sys.exit(main(["coordinator"]))
"""


@contextlib.contextmanager
def coordinator_on_broker(workdir: Path, gc_mode: str | None = None) -> Iterator[tuple[int, str, psutil.Process, Processes]]:
    processes = Processes(workdir)
    try:
        port, _ = start_mosquitto(workdir, processes)
        prefix = f"sim-{uuid.uuid4().hex[:8]}/v1"
        settings = SimpleNamespace(heartbeat_s=1.0, workers=1, slots=1)
        command = [edgehive_command(None), "coordinator"] if gc_mode is None else [sys.executable, "-c", GC_WRAPPER]
        gc_env = {} if gc_mode is None else {"FLEETSIM_GC": gc_mode, "FLEETSIM_GC_OUT": str(workdir / "gc.json")}
        proc = processes.start("coordinator", command, component_env(
            f"mqtt://127.0.0.1:{port}", prefix, workdir / "state", settings,  # type: ignore[arg-type]
            EDGEHIVE_NODE_ID="coordinator", EDGEHIVE_STATS_INTERVAL_S="1", EDGEHIVE_QUEUE_MAX="100000", **gc_env))
        yield port, prefix, psutil.Process(proc.pid), processes
    finally:
        processes.stop_all()


def start_sink(workdir: Path, port: int, prefix: str, processes: Processes) -> tuple[psutil.Process, Path]:
    """`edgehive sink` writing line protocol to a file (no database to be the bottleneck): what the
    sink itself costs per heartbeat."""
    path = workdir / "telemetry.lp"
    settings = SimpleNamespace(heartbeat_s=1.0, workers=1, slots=1)
    proc = processes.start("sink", [edgehive_command(None), "sink"], component_env(
        f"mqtt://127.0.0.1:{port}", prefix, workdir / "sink-state", settings,  # type: ignore[arg-type]
        EDGEHIVE_NODE_ID="sink", EDGEHIVE_TELEMETRY_FILE=str(path), EDGEHIVE_TELEMETRY_FILE_MAX_BYTES=str(1 << 40)))
    return psutil.Process(proc.pid), path


def heartbeat_lines(path: Path) -> int:
    """`heartbeat` points the sink has written so far."""
    try:
        with path.open("rb") as lines:
            return sum(1 for line in lines if line.startswith(b"heartbeat,"))
    except FileNotFoundError:
        return 0


def status_seconds(port: int, prefix: str, n: int) -> float | None:
    """How long `edgehive status` takes to list the fleet (it reads retained births and waits
    for a round of heartbeats and stats, from MQTT alone); None when it failed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEHIVE_")}
    env.update(EDGEHIVE_MQTT_URL=f"mqtt://127.0.0.1:{port}", EDGEHIVE_PREFIX=prefix)
    started = time.monotonic()
    done = subprocess.run([edgehive_command(None), "status"], env=env, capture_output=True, text=True, timeout=120, check=False)
    listed = sum(1 for line in done.stdout.splitlines() if line.startswith("sim-"))
    return round(time.monotonic() - started, 2) if done.returncode == 0 and listed >= n else None


def run_size(n: int, args: argparse.Namespace, gc_mode: str | None = None) -> dict[str, Any]:
    row: dict[str, Any] = {"nodes": n}
    with tempfile.TemporaryDirectory(prefix="edgehive-fleetsim-") as tmp:
        with coordinator_on_broker(Path(tmp), gc_mode) as (port, prefix, coord, processes):
            measure_size(n, args, row, Path(tmp), port, prefix, coord, processes)
        if gc_mode is not None:  # written when the coordinator ended, as the context closed
            gc_out = orjson.loads((Path(tmp) / "gc.json").read_bytes())
            row.update(gc=gc_mode, gc_s=round(gc_out["gc_s"], 3), gc_collections=gc_out["collections"],
                       gc_share_pct=round(100 * gc_out["gc_s"] / gc_out["cpu_s"], 1), heap_objects=gc_out["objects"])
            print(f"  {n:>6} nodes, collector thresholds {gc_mode}: {row['gc_collections']} collections, {row['gc_s']} s "
                  f"of the coordinator's {gc_out['cpu_s']:.2f} s of CPU ({row['gc_share_pct']} %), {row['heap_objects']} objects", flush=True)
    return row


def measure_size(n: int, args: argparse.Namespace, row: dict[str, Any], tmp: Path, port: int, prefix: str,
                 coord: psutil.Process, processes: Processes) -> None:
    topics = Topics(prefix)
    watcher = Watcher(port, topics)
    wait_until(lambda: bool(watcher.stats), 30, "coordinator stats", processes.check_alive)
    rss_before = coord.memory_info().rss
    sink = start_sink(tmp, port, prefix, processes) if args.sink else None
    procs = max(1, min(args.sim_procs, n // 1000 or 1))
    sim: Simulator | SimulatorPool = (Simulator(port, prefix, n, min(args.connections, n)) if procs == 1
                                      else SimulatorPool(port, prefix, n, args.connections, procs))
    started = time.monotonic()
    sim.start()
    wait_until(lambda: watcher.stats.get("nodes_online", 0) >= n, 120, f"{n} nodes online", processes.check_alive)
    row["births_s"] = round(time.monotonic() - started, 2)
    row["status_s"] = status_seconds(port, prefix, n)
    time.sleep(2.0)
    row["rss_per_node_kb"] = round((coord.memory_info().rss - rss_before) / n / 1024, 2)
    # steady heartbeats
    t0, c0, sent0 = time.monotonic(), cpu_s(coord), sim.sent()
    s0, lines0 = (cpu_s(sink[0]), heartbeat_lines(sink[1])) if sink else (0.0, 0)
    if args.profile is not None:  # py-spy costs CPU: a profiled run's figures are not the benchmark's
        args.profile.mkdir(parents=True, exist_ok=True)
        subprocess.run([str(Path(sys.executable).with_name("py-spy")), "record", "-r", "200", "-f", "raw", "--nonblocking", "-d", str(int(args.steady_s)),
                        "-o", str(args.profile / f"coordinator-{n}-steady.txt"), "-p", str(coord.pid)],
                       check=False, capture_output=True)
    else:
        time.sleep(args.steady_s)
    steady = time.monotonic() - t0
    row["steady_cpu_pct"] = round(100 * (cpu_s(coord) - c0) / steady, 1)
    row["steady_heartbeats_per_s"] = round((sim.sent() - sent0) / steady)  # n when the simulator kept up
    if sink:
        row["sink_cpu_pct"] = round(100 * (cpu_s(sink[0]) - s0) / steady, 1)
        row["sink_heartbeats_per_s"] = round((heartbeat_lines(sink[1]) - lines0) / steady)  # n when the sink kept up
        row["sink_rss_mb"] = round(sink[0].memory_info().rss / 2**20, 1)
    # burst
    submitter = connect(port, f"fleetsim-submit-{uuid.uuid4().hex[:6]}")
    before_dead = len(watcher.declared_dead)
    t0, c0 = time.monotonic(), cpu_s(coord)
    for i in range(args.jobs):
        submitter.publish(topics.submit, orjson.dumps({"v": 1, "kind": "noop", "id": f"b{i}-{uuid.uuid4().hex[:6]}"}), qos=1)
    try:
        wait_until(lambda: watcher.results >= args.jobs, args.burst_timeout_s, f"{args.jobs} results", processes.check_alive)
        row["burst_s"] = round(time.monotonic() - t0, 2)
    except TimeoutError:
        row["burst_s"] = None
    elapsed = time.monotonic() - t0
    row["burst_results"] = watcher.results
    row["burst_jobs_per_s"] = round(watcher.results / elapsed, 1)
    row["burst_cpu_pct"] = round(100 * (cpu_s(coord) - c0) / elapsed, 1)
    row["burst_stats_gap_s"] = round(watcher.longest_stats_gap(t0), 2)
    row["live_nodes_declared_dead"] = len(watcher.declared_dead) - before_dead
    time.sleep(1.0)
    row["failed"], row["retried"], row["duplicates"] = (watcher.stats.get(k, 0) for k in ("failed", "retried", "duplicates"))
    submitter.loop_stop()
    # mass death (the two-node reference skips it)
    if n > 2:
        dead_before = len(watcher.declared_dead)
        gone = set(sim.silence(0.5))
        t0 = time.monotonic()
        try:  # timed by the coordinator's own `offline` verdicts (reason "heartbeat timeout"), not its stats
            wait_until(lambda: gone <= {node for _, node in watcher.declared_dead[dead_before:]}, 60,
                       "half the fleet declared dead", processes.check_alive)
            verdicts = [at for at, node in watcher.declared_dead[dead_before:] if node in gone]
            row["mass_death_first_s"] = round(min(verdicts) - t0, 2)
            row["mass_death_noticed_s"] = round(max(verdicts) - t0, 2)
        except TimeoutError:
            row["mass_death_first_s"] = row["mass_death_noticed_s"] = None
        row["wrongly_declared_dead"] = len({node for _, node in watcher.declared_dead[dead_before:]} - gone)
    sim.stop()
    watcher.close()
    print(f"  {n:>6} nodes: births {row['births_s']} s, `edgehive status` {row['status_s']} s, {row['rss_per_node_kb']} KB/node, steady CPU {row['steady_cpu_pct']} % "
          f"({row['steady_heartbeats_per_s']} heartbeats/s sent), "
          + (f"sink CPU {row['sink_cpu_pct']} % ({row['sink_heartbeats_per_s']} heartbeats/s written, {row['sink_rss_mb']} MB), " if "sink_cpu_pct" in row else "")
          + f"burst of {args.jobs}: {row['burst_s']} s ({row['burst_jobs_per_s']} jobs/s, CPU {row['burst_cpu_pct']} %, "
          f"longest stats gap {row['burst_stats_gap_s']} s, live nodes declared dead {row['live_nodes_declared_dead']}, "
          f"failed {row['failed']}, retried {row['retried']}, duplicates {row['duplicates']})"
          + (f", half the fleet silenced: first declared dead after {row['mass_death_first_s']} s, the last after "
             f"{row['mass_death_noticed_s']} s (3 s of silence is the bound), live ones declared dead {row['wrongly_declared_dead']}"
             if n > 2 else ""), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", default="1000,5000", help="fleet sizes, comma-separated (a two-node reference runs first)")
    parser.add_argument("--jobs", type=int, default=2000, help="noop jobs in the burst")
    parser.add_argument("--connections", type=int, default=4, help="MQTT connections the simulated nodes share")
    parser.add_argument("--sim-procs", type=int, default=1,
                        help="processes the simulated fleet is split over (at most one per 1,000 nodes); one keeps up with about 5,000 nodes")
    parser.add_argument("--gc", action="store_true",
                        help="run each size twice, with CPython's default collector thresholds and with edgehive's, and time every collection in the coordinator")
    parser.add_argument("--sink", action="store_true", help="also run `edgehive sink` (to a line-protocol file) and measure it in the steady phase")
    parser.add_argument("--steady-s", type=float, default=10.0, help="seconds of heartbeats alone")
    parser.add_argument("--burst-timeout-s", type=float, default=120.0)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--profile", type=Path, default=None,
                        help="py-spy the coordinator during the steady phase, into this folder (needs `pip install py-spy` in the venv)")
    args = parser.parse_args(argv)
    if args.profile is not None and not Path(sys.executable).with_name("py-spy").exists():
        parser.error("--profile needs py-spy beside this interpreter: .venv/bin/pip install py-spy")
    print(f"fleet simulator on {machine()}; heartbeats every 1 s per node, {args.connections} connections", flush=True)
    if args.gc:  # the collector's cost, by thresholds, from one invocation; no dispatch ratio
        rows = [run_size(int(n), args, mode) for n in args.nodes.split(",") for mode in ("default", "tuned")]
        if args.json:
            args.json.write_bytes(orjson.dumps(rows, option=orjson.OPT_INDENT_2))
        return 0
    rows = [run_size(2, args)] + [run_size(int(n), args) for n in args.nodes.split(",")]
    reference = rows[0]["burst_jobs_per_s"] or float("nan")
    for row in rows[1:]:
        row["dispatch_vs_two_nodes"] = round(row["burst_jobs_per_s"] / reference, 2)
        print(f"  dispatch at {row['nodes']} nodes / at 2 nodes: {row['dispatch_vs_two_nodes']}", flush=True)
    if args.json:
        args.json.write_bytes(orjson.dumps(rows, option=orjson.OPT_INDENT_2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
