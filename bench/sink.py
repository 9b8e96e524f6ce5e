"""Telemetry sink benchmark: points/s from MQTT through `edgehive sink` into InfluxDB 1.x, against
a direct bulk write of the same points, in one run.

    .venv/bin/python bench/sink.py [--mix fleet] [--rate 20000] [--seconds 10] [--json PATH]

What runs: Debian's `mosquitto` from the project's config (`render_config`), Debian's `influxd`
1.6 in a temp folder (the test harness's `InfluxDB`), and `edgehive sink` as a real process with
its default batching (5,000 points or 1 s, gzip). This process is the fleet: it publishes
pre-encoded messages with `edgehive.bus.MqttBus`, each at its real QoS (heartbeats and
readings 0, results and job states 1), every one with its own timestamp so that each point is
distinct and countable.

Mixes (points per message from the sink's own conversion, printed in the report):

* `fleet`: per round, a heartbeat (3 points: the beat and two job kinds' service times), a
  detections result (job + vision + detection: 3), two job states (1 each), four scalar
  readings (1 each): 12 points in 8 messages.
* `sensors`: IMU samples batched 50 to a message (`EDGEHIVE_SENSOR_BATCH`), one point each.

Phases:

1. **Direct**: the same points (converted in this process, untimed), written to a second
   database by `telemetry.writers.InfluxV1Writer` (the sink's own writer) in batches of 5,000,
   gzip, one request at a time: what InfluxDB and one HTTP client take on these cores.
2. **Flood**: every message published as fast as the publisher goes; points/s = points /
   (last point stored − first message published). "Last point stored": the final message's
   point found in InfluxDB (asked every 50 ms once publishing ended; the sink writes in arrival
   order), then every point counted (`SELECT count(...)` per measurement) to check none is missing.
3. **Paced**: `--rate` points/s for `--seconds`, on a fixed schedule; points/s here is the rate
   the publisher achieved (points / publishing seconds). Kept up when every point is stored
   within 2 × the flush interval + 1 s after the last message (the sink adds up to one flush
   interval by design), its spool never held more than two batches, and the publisher really
   offered at least 97 % of the target rate (on 2 shared cores it can fall behind its schedule).

CPU per process (% of one core) is printed for phases 2 and 3; "others" is every other process
on the machine. Target (from the issue): the sink keeps up with 20,000 points/s. The exit
status is 0 when the paced phase kept up, 1 when it did not.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

# bench/ is not a package: dispatch.py is imported as a sibling module; influxd comes from the test harness.
from dispatch import CpuMeter, Processes, edgehive_command, machine, start_mosquitto, wait_until
from influx_harness import InfluxDB

from edgehive.bus import MqttBus
from edgehive.schemas import Topics
from edgehive.schemas.kinds import DETECT_KIND, FUSION_KIND, SLEEP_KIND
from edgehive.settings import MqttUrl
from edgehive.telemetry.points import parsers
from edgehive.telemetry.writers import InfluxV1Writer

TARGET_POINTS_PER_S = 20_000.0
FLUSH_S = 1.0
BATCH = 5000
PROBE = "bench-ready"
# One always-present field per measurement: the sum of their counts is every point stored.
COUNTED = {"heartbeat": "cpu_pct", "heartbeat_kind": "service_ms", "job": "job_id", "vision": "job_id", "detection": "count",
           "job_state": "job_id", "sensor": "value", "imu": "accel_x"}


@dataclass
class Message:
    topic: str
    payload: bytes
    qos: int
    lines: list[str]


@dataclass
class Workload:
    """Messages with their exact points, built once; `shift` makes a fresh copy at new times."""

    mix: str
    messages: list[Message]

    @property
    def points(self) -> int:
        return sum(len(m.lines) for m in self.messages)


def fleet_round(topics: Topics, i: int, ts: float) -> list[tuple[str, dict, int]]:  # type: ignore[type-arg]
    node, camera = f"pi-{i % 10}", f"cam-{i % 4}"
    t = {"captured": ts - 0.05, "queued": ts - 0.04, "dispatched": ts - 0.039, "received": ts - 0.038, "started": ts - 0.037,
         "inferred": ts - 0.02, "finished": ts - 0.019, "published": ts}
    out: list[tuple[str, dict, int]] = [  # type: ignore[type-arg]
        (topics.heartbeat(node), {"v": 1, "node": node, "boot_id": "bench", "seq": i, "ts": ts, "cpu_pct": 40.0 + i % 50, "mem_pct": 35.5,
                                  "temp_c": 55.0, "throttled": False, "in_flight": 1, "queued": 0, "jobs_done": i, "jobs_failed": 0,
                                  "service_s": 0.012, "service_by_kind": {DETECT_KIND: 0.009, FUSION_KIND: 0.002}, "held": [f"f-{i}"]}, 0),
        (topics.result(DETECT_KIND, camera), {"v": 1, "job_id": f"f-{i}", "kind": DETECT_KIND, "node": node, "source": camera, "attempt": 1,
                                                "ok": True, "timings": t, "output": {"model": "face", "width": 640, "height": 480, "inference_ms": 3.2,
                                                "detections": [{"label": "face", "score": 0.91, "box": [10, 20, 110, 140], "box_norm": [0.016, 0.04, 0.17, 0.29]}]}}, 1),
        (topics.job_state(f"j-{i}"), {"v": 1, "job_id": f"j-{i}", "state": "SCHEDULED", "ts": ts, "kind": SLEEP_KIND, "attempt": 1, "node": node}, 1),
        (topics.job_state(f"j-{i}"), {"v": 1, "job_id": f"j-{i}", "state": "DONE", "ts": ts + 0.0000005, "kind": SLEEP_KIND, "attempt": 1, "node": node}, 1),
    ]
    for s in range(4):
        out.append((topics.sensor(f"t{s}", "temperature"), {"v": 1, "value": 21.0 + (i % 7) * 0.1, "unit": "°C", "ts": ts, "seq": i}, 0))
    return out


def sensors_round(topics: Topics, i: int, ts: float) -> list[tuple[str, object, int]]:
    batch = [{"v": 1, "accel": [0.01 * (k % 9), 0.0, 9.81], "gyro": [0.0, 0.001 * k, 0.0], "ts": ts + k * 1e-5, "seq": i * 50 + k} for k in range(50)]
    return [(topics.sensor(f"imu-{i % 4}", "imu"), batch, 0)]


def build(mix: str, topics: Topics, rounds: int, start_ts: float) -> Workload:
    """Messages of `rounds` rounds, 1 ms apart (distinct times), converted by the sink's parsers."""
    parse = {pattern: p for pattern, (_, p) in parsers(topics).items()}
    by_kind = {kind: parse[pattern] for pattern, (kind, _) in parsers(topics).items()}
    make: Callable[[Topics, int, float], list] = fleet_round if mix == "fleet" else sensors_round  # type: ignore[type-arg]
    messages = []
    for i in range(rounds):
        for topic, body, qos in make(topics, i, start_ts + i * 1e-3):
            payload = orjson.dumps(body)
            kind = topics.parse(topic).kind
            messages.append(Message(topic, payload, qos, by_kind[kind](topic, payload)))
    return Workload(mix, messages)


# --------------------------------------------------------------------------------------------


@dataclass
class Phase:
    name: str
    points: int
    messages: int
    seconds: float
    points_per_s: float
    messages_per_s: float
    publish_s: float | None = None
    lag_s: float | None = None
    spool_max_points: int | None = None
    lost: int = 0
    cpu_pct: dict[str, float] = field(default_factory=dict)


def stored(influx: InfluxDB) -> int:
    """Points of the workload in InfluxDB (the readiness probe's readings not counted)."""
    query = "; ".join(f'SELECT count("{f}") FROM "{m}"' + (f" WHERE \"sensor\" != '{PROBE}'" if m == "sensor" else "")
                      for m, f in COUNTED.items())
    try:
        return sum(int(s["values"][0][1]) for s in influx.series(query))
    except AssertionError:  # database not created yet
        return 0


def probes(influx: InfluxDB) -> int:
    try:
        rows = influx.rows(f"SELECT count(\"value\") FROM \"sensor\" WHERE \"sensor\" = '{PROBE}'")
    except AssertionError:
        return 0
    return int(rows[0]["count"]) if rows else 0


def direct(influx: InfluxDB, work: Workload) -> Phase:
    writer = InfluxV1Writer(influx.url, "direct", compress=True)
    influx.database = "direct"
    influx.create_database()
    lines = [text for m in work.messages for text in m.lines]
    bodies = [("\n".join(lines[i:i + BATCH]) + "\n").encode() for i in range(0, len(lines), BATCH)]
    start = time.perf_counter()
    for body in bodies:
        writer.write(body)
    seconds = time.perf_counter() - start
    writer.close()
    assert stored(influx) == len(lines), "the direct write lost points"
    influx.database = "edgehive"
    return Phase("direct bulk write (InfluxV1Writer, 5,000/batch, gzip)", len(lines), len(work.messages), round(seconds, 3),
                 round(len(lines) / seconds), round(len(work.messages) / seconds))


class Publisher:
    """The fleet's side of MQTT, on edgehive's own bus (no QoS 0 drop bound: the backlog is watched)."""

    def __init__(self, url: str, topics: Topics) -> None:
        self.bus = MqttBus(MqttUrl.parse(url), topics, f"bench-sink-{os.getpid()}", source="bench", qos0_queue_max=10**9, inflight_max=0)
        self.bus.start(timeout_s=10)
        # A flood fills paho's queue of unacknowledged QoS 1 messages (100,000): `publish` then
        # refuses and logs an error per message; `send` waits and retries instead, so hush that log.
        logging.getLogger("edgehive.bus").setLevel(logging.CRITICAL)

    def send(self, messages: list[Message], rate_points_s: float | None) -> float:
        """Publish in order; paced to `rate_points_s` when given (what is due is sent in one burst,
        then a sleep of at least 1 ms: a sleep per message would cost the publisher more than
        the publishing); returns the publishing seconds."""
        start = time.perf_counter()
        points = 0
        i = 0
        while i < len(messages):
            due = (time.perf_counter() - start) * rate_points_s if rate_points_s else float("inf")
            while i < len(messages) and points <= due:
                if self.bus.outgoing_backlog() > 20_000:  # let paho's socket catch up; never drop
                    break
                m = messages[i]
                while not self.bus.publish(m.topic, m.payload, qos=m.qos):  # paho's queue of unacknowledged QoS 1 is full
                    time.sleep(0.001)
                points += len(m.lines)
                i += 1
            if i < len(messages):
                time.sleep(max(0.001, start + points / rate_points_s - time.perf_counter()) if rate_points_s else 0.001)
        while self.bus.outgoing_backlog():
            time.sleep(0.001)
        return time.perf_counter() - start


def sink_spool_max(influx: InfluxDB, since_ns: int) -> int:
    rows = influx.rows(f'SELECT max("spool_points") FROM "sink" WHERE time >= {since_ns}')
    return int(rows[0]["max"]) if rows and rows[0]["max"] is not None else 0


def poll(check: Callable[[], bool], timeout_s: float, every_s: float) -> bool:
    """Whether `check` came true within `timeout_s`, asked every `every_s` (light on influxd)."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(every_s)
    return True


def last_point_query(text: str) -> str:
    """InfluxQL that finds exactly the point of one line of our (unescaped-tag) line protocol."""
    head, _fields, ts = text.rsplit(" ", 2)  # the bench's lines have no spaces inside fields
    measurement, *tags = head.split(",")
    where = " AND ".join(f"\"{k}\" = '{v}'" for k, v in (t.split("=", 1) for t in tags))
    return f'SELECT * FROM "{measurement}" WHERE time = {ts}' + (f" AND {where}" if where else "")


def through_sink(name: str, influx: InfluxDB, publisher: Publisher, work: Workload, before: int, meter: CpuMeter,
                 rate: float | None, timeout_s: float) -> Phase:
    expected = before + work.points
    since_ns = time.time_ns()
    meter.start()
    first = time.perf_counter()
    publish_s = publisher.send(work.messages, rate)
    published = time.perf_counter()
    # Cheap while waiting: the last message's last point (the sink writes in arrival order);
    # then the full count, which must agree.
    last = last_point_query(work.messages[-1].lines[-1])
    poll(lambda: bool(influx.series(last)), timeout_s, every_s=0.05)
    done = time.perf_counter()
    if not poll(lambda: stored(influx) >= expected, 10, every_s=0.5):  # the last point came, yet some are missing
        done = time.perf_counter()
    cpu = meter.stop()
    count = stored(influx)
    # Flood: everything counts, from the first message to the last point stored. Paced: the rate
    # offered (and, when the lag stays bounded, absorbed); the lag is reported beside it.
    seconds = done - first if rate is None else publish_s
    return Phase(name, work.points, len(work.messages), round(seconds, 3), round(work.points / seconds), round(len(work.messages) / seconds),
                 publish_s=round(publish_s, 3), lag_s=round(done - published, 3), spool_max_points=sink_spool_max(influx, since_ns),
                 lost=max(0, expected - count), cpu_pct=cpu)


def run(args: argparse.Namespace, workdir: Path) -> tuple[list[Phase], dict[str, object]]:
    processes = Processes(workdir)
    influx = InfluxDB(workdir / "influxdb")
    prefix = f"bench-{uuid.uuid4().hex[:8]}/v1"
    topics = Topics(prefix)
    try:
        port, _config = start_mosquitto(workdir, processes)
        influx.start()
        url = f"mqtt://127.0.0.1:{port}"
        sample = build(args.mix, topics, 1, time.time())
        per_round, points_per_round = len(sample.messages), sample.points
        flood = build(args.mix, topics, max(1, args.points // points_per_round), time.time() - 7200)
        paced = build(args.mix, topics, max(1, int(args.rate * args.seconds) // points_per_round), time.time() - 3600)
        phases = [direct(influx, flood)]

        env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEHIVE_")}
        env.update(EDGEHIVE_MQTT_URL=url, EDGEHIVE_PREFIX=prefix, EDGEHIVE_NODE_ID="bench-sink", EDGEHIVE_INFLUX_URL=influx.url,
                   EDGEHIVE_SPOOL_DIR=str(workdir / "spool"), EDGEHIVE_SINK_STATS_S="0.5", EDGEHIVE_LOG_LEVEL="WARNING")
        sink = processes.start("sink", [edgehive_command(args.edgehive), "sink"], env)
        publisher = Publisher(url, topics)
        probe = topics.sensor(PROBE, "temperature")
        wait_until(lambda: publisher.bus.publish(probe, b"20", qos=1) and probes(influx) > 0, 30, "the sink subscribed", processes.check_alive)
        meter = CpuMeter({"sink": sink.pid, "mosquitto": processes.children["mosquitto"].pid, "influxd": influx.proc.pid, "bench": os.getpid()})  # type: ignore[union-attr]
        before = stored(influx)
        phases.append(through_sink("flood: MQTT → sink → InfluxDB", influx, publisher, flood, before, meter, None, args.timeout))
        before = stored(influx)
        phases.append(through_sink(f"paced at {args.rate:,.0f} points/s", influx, publisher, paced, before, meter, args.rate, args.timeout))
        publisher.bus.stop()
        info: dict[str, object] = {"mix": args.mix, "messages_per_round": per_round, "points_per_round": points_per_round,
                                   "points_per_message": round(points_per_round / per_round, 2)}
        return phases, info
    finally:
        processes.stop_all()  # the sink first (it flushes), the broker last
        influx.stop()


def verdict(paced: Phase) -> bool:
    """Kept up: nothing lost, a bounded lag and spool, at (nearly) the target rate really offered."""
    return (paced.lost == 0 and paced.lag_s is not None and paced.lag_s <= 2 * FLUSH_S + 1.0
            and (paced.spool_max_points or 0) <= 2 * BATCH and paced.points_per_s >= 0.97 * TARGET_POINTS_PER_S)


def report(phases: list[Phase], info: dict[str, object], args: argparse.Namespace, ok: bool) -> str:
    lines = [
        f"command: {' '.join(sys.argv)}",
        (f"machine: {info['nproc']} cores, {info['cpu_model']}; {info['mosquitto']}; influxd 1.6.7 (Debian); Python {info['python']}, "
        f"paho-mqtt {info['paho_mqtt']}, pydantic {info['pydantic']}"),
        (f"mix {info['mix']}: {info['points_per_round']} points in {info['messages_per_round']} messages per round "
        f"({info['points_per_message']} points/message); sink defaults: batch {BATCH}, flush {FLUSH_S:g} s, gzip"),
        "",
        f"{'':52} {'points/s':>10} {'msgs/s':>9} {'points':>9} {'seconds':>8} {'publish s':>9} {'lag s':>6} {'spool max':>9} {'lost':>5}",
    ]
    for p in phases:
        lines.append(f"{p.name:52} {p.points_per_s:>10,} {p.messages_per_s:>9,} {p.points:>9,} {p.seconds:>8.2f} "
                     f"{'' if p.publish_s is None else f'{p.publish_s:.2f}':>9} {'' if p.lag_s is None else f'{p.lag_s:.2f}':>6} "
                     f"{'' if p.spool_max_points is None else p.spool_max_points:>9} {p.lost:>5}")
    base = phases[0].points_per_s
    for p in phases[1:]:
        lines.append(f"  {p.name}: {p.points_per_s / base:.2f} of the direct write; CPU % of one core: "
                     + ", ".join(f"{k} {v:g}" for k, v in p.cpu_pct.items()))
    lines.append("")
    lines.append(f"target: keeps up with {TARGET_POINTS_PER_S:,.0f} points/s: {'PASS' if ok else 'FAIL'} "
                 f"(paced {args.rate:,.0f} points/s for {args.seconds:g} s: lag {phases[-1].lag_s} s, spool max {phases[-1].spool_max_points}, "
                 f"lost {phases[-1].lost})")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--mix", choices=("fleet", "sensors"), default="fleet", help="message mix (see the module docstring)")
    parser.add_argument("--points", type=int, default=200_000, help="points in the flood phase (and the direct write)")
    parser.add_argument("--rate", type=float, default=TARGET_POINTS_PER_S, help="offered points/s in the paced phase")
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of the paced phase")
    parser.add_argument("--timeout", type=float, default=120.0, help="give up waiting for points after this many seconds")
    parser.add_argument("--edgehive", default=None, metavar="CMD", help="the edgehive command for the sink (default: the one beside this Python)")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the figures as JSON here")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder (logs, spool)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    workdir = Path(tempfile.mkdtemp(prefix="edgehive-bench-sink-"))
    workdir.chmod(0o755)
    try:
        phases, info = run(args, workdir)
    finally:
        if args.keep:
            print(f"logs kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    info.update(machine())
    ok = verdict(phases[-1])
    print(report(phases, info, args, ok))
    if args.json:
        document = {"command": " ".join(sys.argv), "settings": vars(args) | {"json": str(args.json)}, "info": info,
                    "phases": [asdict(p) for p in phases], "pass": ok}
        args.json.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2, default=str))
    return 0 if ok else 1


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
