"""The sink end to end: real Mosquitto, real edgehive processes, a real InfluxDB 1.x (Debian's
influxd) and a real v2 write API (VictoriaMetrics), each started by the test on free ports.

One short run of the whole system (coordinator, an agent with the face model, the demo camera,
the demo sensors plus a thermometer that gets stuck, fused in two groups, jobs that succeed and
fail, garbage on every topic) feeds two checks: the points a user expects are in InfluxDB, and
every panel of every dashboard, its InfluxQL filled in as Grafana would, returns data.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from grafana_macros import DASHBOARDS, default_range_ms, interval_ms, load, panels, substitute, variable_selection
from harness import Fleet, MosquittoBroker, Recorder, wait_nodes_online, wait_until
from influx_harness import InfluxDB, VictoriaMetrics, influxdb, victoria  # noqa: F401  (fixtures)
from vision_fixtures import models_dir  # noqa: F401  (fixture)

from edgehive.bus import MqttBus
from edgehive.schemas import Topics, envelope
from edgehive.schemas.sensors import SensorReading
from edgehive.settings import MqttUrl, env_name
from edgehive.telemetry.points import reading_lines, stamp
from edgehive.telemetry.settings import SinkSettings
from edgehive.telemetry.sink import Sink
from edgehive.telemetry.spool import Spool
from edgehive.telemetry.writers import InfluxV1Writer, InfluxV2Writer, WriteError

pytestmark = pytest.mark.integration

SLEEP_JOBS = 12


def sink_env(workdir: Path, influx_url: str = "", **extra: str) -> dict[str, str]:
    """A sink that flushes, retries and reports often, with its spool and file in `workdir`."""
    return {"EDGEHIVE_INFLUX_URL": influx_url, "EDGEHIVE_SPOOL_DIR": str(workdir / "spool"), "EDGEHIVE_TELEMETRY_FILE": str(workdir / "telemetry.lp"),
            "EDGEHIVE_SINK_FLUSH_S": "0.2", "EDGEHIVE_SINK_RETRY_MAX_S": "1", "EDGEHIVE_SINK_STATS_S": "0.5", **extra}


def count(influx: InfluxDB, query: str) -> int:
    """The `count` of an InfluxQL count query; 0 while the database or measurement does not exist yet."""
    try:
        rows = influx.rows(query)
    except AssertionError:
        return 0
    return int(rows[0]["count"]) if rows else 0


def wait_subscribed(recorder: Recorder, stored: Callable[[], object]) -> None:
    """Publish a reading of sensor `ready` until `stored()` sees one: from then on the sink gets everything."""
    wait_until(lambda: recorder.publish("sensors/ready/temperature", b"20") or stored(), 30, "the sink subscribed")


def in_influx(influx: InfluxDB) -> Callable[[], int]:
    return lambda: count(influx, "SELECT count(\"value\") FROM \"sensor\" WHERE \"sensor\" = 'ready'")


def fake_host(root: Path) -> Path:
    """A device tree for the agent's health reader: a thermal zone at 48.5 °C, a GPU at 25 %, no throttling."""
    for rel, text in (("sys/class/thermal/thermal_zone0/temp", "48500"), ("sys/devices/gpu.0/load", "250"),
                      ("sys/devices/platform/soc/soc:firmware/get_throttled", "0x0")):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")
    return root


# -- one real run, shared by the checks below -------------------------------------------------


@dataclass
class Run:
    influx: InfluxDB
    recorder: Recorder
    fleet: Fleet
    sleep_ids: list[str]


def start_run(workdir: Path, fleet: Fleet, recorder: Recorder, influx: InfluxDB, models: Path) -> Run:
    fleet.sink(**sink_env(workdir, influx.url))
    # The sink's own points say it writes, not that it is subscribed: a rejected message it
    # reports on `errors`, and stores, says both. Only then start what the checks count.
    wait_until(lambda: recorder.publish("sensors/t9/temperature", b"\x00 not json")
               or count(influx, "SELECT count(\"reason\") FROM \"error\" WHERE \"source\" = 'sink:sink'"), 30, "the sink subscribed")
    groups = {"room": {"quantity": "temperature", "sensors": ["demo-t1", "demo-t2", "demo-t3", "stuck-1"], "window_s": 1.0},
              "motion": {"quantity": "imu", "sensors": ["demo-imu"], "window_s": 1.0}}
    fleet.coordinator(EDGEHIVE_CAMERA_MODELS="porch=face", EDGEHIVE_FUSION_GROUPS=orjson.dumps(groups).decode())
    fleet.agent("pi-1", EDGEHIVE_MODELS_DIR=str(models), EDGEHIVE_MODELS="face", EDGEHIVE_WORKERS="2",
                EDGEHIVE_HOST_ROOT=str(fake_host(workdir / "host")))
    wait_nodes_online(recorder, 1, timeout_s=60)
    fleet.camera("porch", EDGEHIVE_SOURCE="demo", EDGEHIVE_FPS="4", EDGEHIVE_MODEL="face")
    fleet.sensor("demo", EDGEHIVE_SENSOR_TYPE="demo", EDGEHIVE_SENSOR_RATE_HZ="20")
    fleet.sensor("stuck-1", EDGEHIVE_SENSOR_TYPE="temperature", EDGEHIVE_SENSOR_RATE_HZ="10", EDGEHIVE_SENSOR_STUCK_AFTER_S="0.5")

    sleep_ids = [f"tel-{i}" for i in range(SLEEP_JOBS)]
    for job in sleep_ids:  # more than the agent's slots at once: a queue forms at the coordinator
        recorder.publish("jobs/submit", orjson.dumps({"v": 1, "kind": "sleep", "id": job, "params": {"seconds": 0.3}}))
    recorder.publish("jobs/submit", orjson.dumps({"v": 1, "kind": "no-such-kind", "id": "tel-impossible"}))
    recorder.publish("frames/porch", envelope.JPEG_SOI + b"\xe0" + bytes(range(256)) * 20)  # a corrupt JPEG: a failed result
    for suffix in ("nodes/junk/heartbeat", "results/sleep/junk", "jobs/junk/state", "coordinator/stats", "sensors/t9/temperature", "errors"):
        recorder.publish(suffix, b"\x00 not json")

    def fusion(group: str) -> list[dict]:  # type: ignore[type-arg]
        return [r for r in recorder.json(f"results/fusion/{group}") if r.get("ok")]

    wait_until(lambda: all(any(s["state"] == "DONE" for s in recorder.states(j)) for j in sleep_ids), 60, "every sleep job DONE")
    wait_until(lambda: any(s["state"] == "FAILED" for s in recorder.states("tel-impossible")), 30, "the impossible job FAILED")
    wait_until(lambda: len([r for r in recorder.json("results/detections/porch") if r["ok"]]) >= 4
               and any(not r["ok"] for r in recorder.json("results/detections/porch")), 60, "detections and one failed frame")
    wait_until(lambda: any(r["output"]["rejected"] for r in fusion("room")) and len(fusion("room")) >= 3 and len(fusion("motion")) >= 2,
               60, "fused windows, one with the stuck sensor rejected")
    for name in ("porch", "demo", "stuck-1"):  # the producers stop; the fleet and the sink keep running
        fleet.kill(name, signal.SIGTERM)
    # Counters are charted as differences between intervals: let the run span a few of them.
    step = max(interval_ms(0, default_range_ms(load(p))) for p in DASHBOARDS) * 1_000_000
    for measurement, name in (("coordinator", "nodes_online"), ("sink", "points_written"), ("heartbeat", "jobs_done")):
        wait_until(lambda m=measurement, f=name: span_ns(influx, m, f) >= 3 * step, 30, f"{measurement} points over three intervals")
    return Run(influx, recorder, fleet, sleep_ids)


def span_ns(influx: InfluxDB, measurement: str, field: str) -> int:
    """Time between the first and the last point of a field (0 while there is none)."""
    try:
        first = influx.rows(f'SELECT first("{field}") FROM "{measurement}"')
        last = influx.rows(f'SELECT last("{field}") FROM "{measurement}"')
    except AssertionError:
        return 0
    return int(last[0]["time"] - first[0]["time"]) if first and last else 0


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Iterator[Run]:
    workdir = tmp_path_factory.mktemp("telemetry-run")
    broker = MosquittoBroker(workdir / "mosquitto")
    broker.start()
    influx = InfluxDB(workdir / "influxdb")
    influx.start()
    fleet = Fleet(broker, f"test-{uuid.uuid4().hex[:8]}/v1", workdir)
    recorder = Recorder(broker.url, fleet.prefix)
    try:
        yield start_run(workdir, fleet, recorder, influx, models_dir)
    except BaseException:
        for name in fleet.procs:
            print(f"----- {name}.log -----\n{fleet.log(name)[-3000:]}")
        raise
    finally:
        fleet.stop_all()
        recorder.close()
        influx.stop()
        broker.stop()


def stored_rows(influx: InfluxDB, query: str, key: Callable[[dict[str, Any]], Hashable], expected: Iterable[Hashable], what: str,
                timeout_s: float = 30.0) -> list[dict[str, Any]]:
    """The rows of `query`, once `key(row)` of the rows covers every key in `expected`.

    The recorder and the sink get each message at the same moment, but the sink stores it a
    flush later, and later still on a loaded machine. The run's producers stop just before the
    checks, so the last of their messages (the fusion window their stop closed, a frame or a
    reading in flight) can have reached the recorder and not yet InfluxDB: a check first waits
    for the keys the recorder saw, then compares what is stored, which no wait can change."""
    wanted = set(expected)
    rows: list[dict[str, Any]] = []

    def complete() -> bool:
        nonlocal rows
        rows = influx.rows(query)
        return wanted <= {key(r) for r in rows}

    wait_until(complete, timeout_s, f"{what} in InfluxDB")
    return rows


def test_the_points_a_user_expects_are_in_influxdb(run: Run) -> None:
    influx, rec = run.influx, run.recorder
    # Every job state the coordinator published for the sleep jobs is a point at its own time, and
    # nothing else (a job handed back by a full node is REQUESTED twice: two points).
    published = {(s["job_id"], s["state"], stamp(s["ts"], s["job_id"])) for j in run.sleep_ids for s in rec.states(j)}
    assert {state for _, state, _ in published} >= {"REQUESTED", "SCHEDULED", "DONE"}
    states = stored_rows(influx, "SELECT \"job_id\", \"state\" FROM \"job_state\" WHERE \"kind\" = 'sleep'",
                         lambda r: (r["job_id"], r["state"], r["time"]), published, "every job state")
    assert sorted((r["job_id"], r["state"], r["time"]) for r in states) == sorted(published)
    [failed] = stored_rows(influx, "SELECT * FROM \"job_state\" WHERE \"state\" = 'FAILED'", lambda r: r["job_id"], {"tel-impossible"},
                           "the impossible job's FAILED state")
    assert failed["kind"] == "no-such-kind" and failed["reason"]

    # Every sleep result: one `job` point with its id as a field, its real run time and latency.
    jobs = stored_rows(influx, "SELECT * FROM \"job\" WHERE \"kind\" = 'sleep'", lambda r: r["job_id"], run.sleep_ids, "every sleep job")
    assert sorted(r["job_id"] for r in jobs) == sorted(run.sleep_ids)
    assert all(r["status"] == "ok" and r["node"] == "pi-1" and r["run_ms"] >= 300 and r["e2e_ms"] >= r["run_ms"] and r["wait_ms"] >= 0 for r in jobs)

    # Heartbeats of the node, each at its own ts, with the readings of its (fake) sysfs.
    seen = {stamp(b["ts"]) for b in rec.json("nodes/pi-1/heartbeat")}
    beats = stored_rows(influx, "SELECT * FROM \"heartbeat\" WHERE \"node\" = 'pi-1'", lambda r: r["time"], seen,
                        "every heartbeat the recorder saw, at its own ts,")
    assert len(beats) >= 5 and {b["temp_c"] for b in beats} == {48.5} and {b["gpu_pct"] for b in beats} == {25.0}
    assert all(0 <= b["cpu_pct"] <= 100 and b["throttled"] == 0 for b in beats)
    assert influx.rows("SELECT \"service_ms\" FROM \"heartbeat_kind\" WHERE \"kind\" = 'sleep'")

    # Vision: each successful frame is a `vision` point; the demo photos have faces; the corrupt frame failed.
    porch = rec.json("results/detections/porch")
    frames, bad_frames = {r["job_id"] for r in porch if r["ok"]}, {r["job_id"] for r in porch if not r["ok"]}
    vision = stored_rows(influx, 'SELECT * FROM "vision"', lambda r: r["job_id"], frames, "every frame's vision point")
    assert all(r["camera"] == "porch" and r["model"] == "face" and r["node"] == "pi-1" and r["inference_ms"] > 0 for r in vision)
    assert influx.rows("SELECT sum(\"count\") FROM \"detection\" WHERE \"label\" = 'face'")[0]["sum"] >= 1
    failed_frames = stored_rows(influx, "SELECT \"job_id\" FROM \"job\" WHERE \"kind\" = 'detections' AND \"status\" = 'failed' AND \"source\" = 'porch'",
                                lambda r: r["job_id"], bad_frames, "the failed frame's job point")
    assert len(bad_frames) == 1 and {r["job_id"] for r in failed_frames} == bad_frames

    # Fusion: every estimate is stored with its value; the stuck thermometer's rejection too.
    room = [r["output"] for r in rec.json("results/fusion/room") if r["ok"]]
    estimates = {o["window"]: o["estimate"] for o in room}
    fused = stored_rows(influx, "SELECT \"window\", \"estimate\" FROM \"fusion\" WHERE \"group\" = 'room'", lambda r: r["window"], estimates,
                        "every room window")
    assert estimates.items() <= {r["window"]: r["estimate"] for r in fused}.items()
    rejections = {(x["sensor"], x["reason"]) for o in room for x in o["rejected"]}
    assert ("stuck-1", "stuck") in rejections
    stored_rows(influx, 'SELECT * FROM "fusion_rejected"', lambda r: (r["sensor"], r["reason"]), rejections, "every rejection")
    motion = {r["output"]["window"]: (r["output"]["roll"], r["output"]["pitch"], r["output"]["yaw"]) for r in rec.json("results/fusion/motion") if r["ok"]}
    orientations = stored_rows(influx, "SELECT \"window\", \"roll\", \"pitch\", \"yaw\" FROM \"orientation\" WHERE \"group\" = 'motion'",
                               lambda r: r["window"], motion, "every motion window")
    assert motion and motion.items() <= {r["window"]: (r["roll"], r["pitch"], r["yaw"]) for r in orientations}.items()

    # Raw readings: the ones the recorder saw are points at their own time with their value.
    readings = {(stamp(r["ts"]), r["value"]) for r in rec.json("sensors/demo-t1/temperature")}
    stored = stored_rows(influx, "SELECT \"value\" FROM \"sensor\" WHERE \"sensor\" = 'demo-t1'", lambda r: r["time"],
                         {t for t, _ in readings}, "every demo-t1 reading, at its own ts,")
    assert readings and readings <= {(r["time"], r["value"]) for r in stored}

    # The coordinator's counters, per camera and per group too: what it published is stored.
    stats = [s for s in rec.json("coordinator/stats") if "nodes_online" in s]  # not the test's garbage
    online = {stamp(s["ts"]): s["nodes_online"] for s in stats}
    counters = stored_rows(influx, 'SELECT "nodes_online" FROM "coordinator"', lambda r: r["time"], online, "every coordinator/stats")
    assert online.items() <= {r["time"]: r["nodes_online"] for r in counters}.items() and 1 in online.values()
    frames_in = max(s["frames_in"].get("porch", 0) for s in stats)
    assert frames_in >= 4
    assert influx.rows("SELECT max(\"frames_in\") FROM \"coordinator_keyed\" WHERE \"key\" = 'porch'")[0]["max"] >= frames_in  # more may have come in since

    # Garbage on every topic was reported, by the sink among others, and never stopped it.
    stored_rows(influx, 'SELECT "reason", "source" FROM "error"', lambda r: r["source"], {"sink:sink", "coordinator"}, "error reports of both")
    assert run.fleet.alive("sink") and "Traceback" not in run.fleet.log("sink")

    # No job id is ever a tag value.
    tag_values = {value for s in influx.series("SHOW TAG VALUES WITH KEY =~ /.*/") for _, value in s["values"]}
    assert not tag_values & (set(run.sleep_ids) | frames | bad_frames | {"tel-impossible"})


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_every_panel_of_every_dashboard_returns_data(run: Run, path: Path) -> None:
    """Each target's query, on the dashboard's default time range with its template variables at
    their first-load selection, returns at least one series."""
    board = load(path)
    to_ms = int(time.time() * 1000)
    from_ms = to_ms - default_range_ms(board)

    def values(query: str) -> list[str]:
        return [value for s in run.influx.series(query) for _, value in s["values"]]

    selection, variables = variable_selection(board, values)
    step = interval_ms(from_ms, to_ms)
    empty = []
    for panel in panels(board):
        for target in panel["targets"]:
            query = substitute(target["query"], selection, variables, from_ms, to_ms, step)
            if not run.influx.series(query):
                empty.append(f"{panel['title']!r} {target['refId']}: {query}")
    assert not empty, "panels without data:\n" + "\n".join(empty)


def test_the_dashboard_pictures_fill_every_panel_from_the_run(run: Run) -> None:
    """docs/pictures.py, pointed at the run's InfluxDB, draws each panel's series or value."""
    from test_pictures import drawn_panels, load_pictures

    pictures = load_pictures()
    query = pictures.influx_query(run.influx.url, run.influx.database)
    for path in DASHBOARDS:
        board = load(path)
        data = pictures.panel_data(board, query)
        assert all(data.lines[p["id"]] for p in panels(board)), f"{path.name}: panels without data"
        svg = pictures.dashboard_svg(board, data)
        assert "no data" not in svg and "layout only" not in svg
        assert len(drawn_panels(svg)) == svg.count("class='data'") == len(list(panels(board)))


# -- nothing lost, nothing twice --------------------------------------------------------------


@dataclass
class ReadingPublisher:
    """Publishes readings of one sensor at a steady rate (QoS 1) and remembers each one."""

    recorder: Recorder
    sensor: str
    rate_hz: float = 50.0
    sent: list[tuple[int, float, float]] = field(default_factory=list)  # (seq, ts, value)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        start = time.monotonic()
        while not self._stop.wait(max(0.0, start + len(self.sent) / self.rate_hz - time.monotonic())):
            seq = len(self.sent)
            ts, value = time.time(), round(20.0 + (seq % 100) * 0.01, 2)
            self.recorder.publish(f"sensors/{self.sensor}/temperature", orjson.dumps({"v": 1, "value": value, "unit": "°C", "ts": ts, "seq": seq}))
            self.sent.append((seq, ts, value))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def expected(self) -> list[tuple[int, int, float]]:
        return sorted((stamp(ts), seq, value) for seq, ts, value in self.sent)


def stored_readings(influx: InfluxDB, sensor: str) -> list[tuple[int, int, float]]:
    return sorted((r["time"], r["seq"], r["value"]) for r in influx.rows(f"SELECT \"value\", \"seq\" FROM \"sensor\" WHERE \"sensor\" = '{sensor}'"))


@pytest.fixture
def readings(recorder: Recorder) -> Iterator[Callable[..., ReadingPublisher]]:
    """Start reading publishers on the test's recorder; every one is stopped at the end."""
    started: list[ReadingPublisher] = []

    def start(sensor: str, rate_hz: float = 50.0) -> ReadingPublisher:
        started.append(ReadingPublisher(recorder, sensor, rate_hz))
        return started[-1]

    yield start
    for publisher in started:
        publisher.stop()


mosquitto_only = pytest.mark.parametrize("broker", ["mosquitto"], indirect=True)  # the sink's guarantees do not depend on the broker


@mosquitto_only
def test_influxdb_killed_for_20_s_loses_no_point_and_duplicates_none(fleet: Fleet, recorder: Recorder, readings: Callable[..., ReadingPublisher],
                                                                      influxdb: InfluxDB, tmp_path: Path) -> None:
    fleet.sink(**sink_env(tmp_path, influxdb.url))
    wait_subscribed(recorder, in_influx(influxdb))
    publisher = readings("probe")
    wait_until(lambda: len(publisher.sent) >= 50, 30, "readings flowing")
    influxdb.kill()
    first_in_outage = len(publisher.sent)
    threading.Event().wait(20.0)  # the outage itself: readings keep coming for 20 s while InfluxDB is gone
    in_outage = len(publisher.sent) - first_in_outage
    influxdb.start()
    probe = "SELECT count(\"value\") FROM \"sensor\" WHERE \"sensor\" = 'probe'"
    wait_until(lambda: count(influxdb, probe) > first_in_outage + in_outage, 60, "the spool replayed")
    publisher.stop()
    expected = publisher.expected()
    wait_until(lambda: count(influxdb, probe) >= len(expected), 60, "every reading stored")
    assert in_outage >= 500
    assert stored_readings(influxdb, "probe") == expected, "every reading exactly once, at its own time, with its value"
    [sink] = influxdb.rows('SELECT max("write_failures") AS "failures", max("spool_points") AS "spooled", max("spool_dropped_points") AS "dropped" FROM "sink"')
    assert sink["failures"] > 0 and sink["spooled"] > 0 and sink["dropped"] == 0
    wait_until(lambda: not list((tmp_path / "spool").glob("*.lp")), 20, "the spool on disk emptied")
    log = fleet.log("sink")
    assert "points wait in the spool" in log and "is back after" in log and "Traceback" not in log


@mosquitto_only
def test_a_sink_stopped_while_influxdb_is_down_hands_its_spool_and_its_mqtt_queue_to_the_next_one(
        fleet: Fleet, recorder: Recorder, readings: Callable[..., ReadingPublisher], influxdb: InfluxDB, tmp_path: Path) -> None:
    """Spooled points survive a SIGTERM (moved to disk) and QoS 1 messages published while no sink
    runs are queued by Mosquitto for the sink's persistent session."""
    env = sink_env(tmp_path, influxdb.url)
    fleet.sink(**env)
    wait_subscribed(recorder, in_influx(influxdb))
    influxdb.kill()
    publisher = readings("probe", rate_hz=100)
    wait_until(lambda: len(publisher.sent) >= 100, 10, "100 readings")
    publisher.stop()
    wait_until(lambda: "points wait in the spool" in fleet.log("sink"), 10, "the sink failing to write")
    fleet.kill("sink", signal.SIGTERM)
    assert list((tmp_path / "spool").glob("*.lp")), "the stopped sink left its points on disk"
    while_down = readings("probe-2", rate_hz=100)
    wait_until(lambda: len(while_down.sent) >= 50, 10, "50 readings with no sink running")
    while_down.stop()
    influxdb.start()
    fleet.sink(**env)
    expected = publisher.expected() + while_down.expected()
    wait_until(lambda: count(influxdb, "SELECT count(\"value\") FROM \"sensor\" WHERE \"sensor\" =~ /^probe/") >= len(expected), 30,
               "every reading stored")
    assert stored_readings(influxdb, "probe") == publisher.expected()
    assert stored_readings(influxdb, "probe-2") == while_down.expected()


@mosquitto_only
def test_at_the_spool_bound_the_oldest_points_are_dropped_counted_and_reported(broker: MosquittoBroker, recorder: Recorder, prefix: str,
                                                                                tmp_path: Path) -> None:
    server = InfluxDB(tmp_path / "influxdb")  # not started yet: its port refuses connections
    bus = MqttBus(MqttUrl.parse(broker.url), Topics(prefix), f"sink-bound-{uuid.uuid4().hex[:6]}", source="sink:bound")
    spool = Spool(tmp_path / "spool", max_bytes=1 << 20, memory_max_bytes=256 << 10)
    sink = Sink(bus, InfluxV1Writer(server.url, "edgehive"), spool, node="bound", batch_size=1000, flush_s=0.1, retry_max_s=0.5, stats_s=3600)
    bus.start()
    sink.start()
    try:
        total = 20_000  # about 1.7 MB of line protocol against a 1 MiB bound
        for start in range(0, total, 1000):
            sink.add([reading_lines("s1", "temperature", SensorReading(value=i, unit="°C", ts=1_795_000_000 + i / 1000, seq=i), 0)[0]
                      for i in range(start, start + 1000)])
        dropped = spool.dropped_points
        assert dropped > 0 and dropped % 1000 == 0 and spool.bytes <= 1 << 20
        assert f"spool_dropped_points={dropped}i" in sink.stats_lines()[0]
        wait_until(lambda: any(e["source"] == "sink:bound" and "spool full" in e["reason"] for e in recorder.json("errors")), 10,
                   "the drop reported on errors")
        server.start()
        wait_until(lambda: len(spool) == 0, 30, "the spool sent")
        seqs = sorted(r["seq"] for r in server.rows('SELECT "seq" FROM "sensor"'))
        assert seqs == list(range(dropped, total)), "the oldest points were dropped, every newer one arrived"
    finally:
        sink.stop()
        bus.stop()
        server.stop()


# -- the other write paths --------------------------------------------------------------------


@mosquitto_only
def test_the_v2_write_api_path_stores_points_in_victoria_metrics(fleet: Fleet, recorder: Recorder, victoria: VictoriaMetrics,
                                                                 tmp_path: Path) -> None:
    fleet.sink(**sink_env(tmp_path, victoria.url, EDGEHIVE_INFLUX_TOKEN="edgehive-test-token", EDGEHIVE_INFLUX_ORG="edgehive",
                          EDGEHIVE_INFLUX_BUCKET="edgehive"))  # version auto: a token means the v2 API
    t0 = time.time() - 5
    beats = [{"v": 1, "node": "vm-1", "boot_id": "b1", "seq": i, "ts": t0 + i * 0.05, "cpu_pct": float(i), "mem_pct": 50.0,
              "in_flight": 0, "queued": 0, "jobs_done": i, "jobs_failed": 0} for i in range(20)]

    def samples() -> list[tuple[int, float]]:
        [series] = victoria.export('heartbeat_cpu_pct{node="vm-1"}') or [{"timestamps": [], "values": []}]
        return sorted(zip(series["timestamps"], series["values"]))

    # Publish the first beat until it is there: from then on the sink is subscribed. Replays of
    # that beat are the same point (same series and time), so there are still 20 in the end.
    wait_until(lambda: recorder.publish("nodes/vm-1/heartbeat", orjson.dumps(beats[0])) or samples(), 30, "the first heartbeat")
    for beat in beats[1:]:
        recorder.publish("nodes/vm-1/heartbeat", orjson.dumps(beat))
    wait_until(lambda: len(samples()) == 20, 30, "20 heartbeats in VictoriaMetrics")
    assert samples() == [(stamp(b["ts"]) // 1_000_000, b["cpu_pct"]) for b in beats]  # stored in ms
    assert "Traceback" not in fleet.log("sink")


@mosquitto_only
def test_without_influxdb_the_sink_writes_line_protocol_that_influxdb_imports(fleet: Fleet, recorder: Recorder, readings: Callable[..., ReadingPublisher],
                                                                              influxdb: InfluxDB, tmp_path: Path) -> None:
    file = tmp_path / "telemetry.lp"
    fleet.sink(**sink_env(tmp_path))  # no URL: the file
    wait_subscribed(recorder, lambda: file.exists() and b"sensor=ready" in file.read_bytes())
    publisher = readings("t1", rate_hz=100)
    wait_until(lambda: len(publisher.sent) >= 30, 10, "30 readings")
    publisher.stop()
    wait_until(lambda: file.read_bytes().count(b"sensor,quantity=temperature,sensor=t1,") == len(publisher.sent), 20, "every reading in the file")
    influxdb.create_database()
    request = urllib.request.Request(f"{influxdb.url}/write?db=edgehive", data=file.read_bytes(), method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 204
    assert stored_readings(influxdb, "t1") == publisher.expected()


@mosquitto_only
def test_the_sink_refuses_physically_impossible_readings_on_errors_and_writes_no_point(fleet: Fleet, recorder: Recorder, prefix: str,
                                                                                      tmp_path: Path) -> None:
    file = tmp_path / "telemetry.lp"
    fleet.sink(**sink_env(tmp_path))  # no URL: the file, which shows every point the sink wrote
    wait_subscribed(recorder, lambda: file.exists() and b"sensor=ready" in file.read_bytes())
    impossible = [("cold", "temperature", "-300", "value -300 °C is impossible for temperature (absolute zero is -273.15 °C)"),
                  ("wet", "humidity", "150", "value 150 % is impossible for humidity (relative humidity is 0 to 100 %)"),
                  ("dry", "humidity", '{"v":1,"value":-5,"unit":"%"}', "value -5 % is impossible for humidity (relative humidity is 0 to 100 %)"),
                  ("vacuum", "pressure", "-1", "value -1 hPa is impossible for pressure (a pressure is above 0 hPa)"),
                  ("batch", "temperature", '[{"v":1,"value":21},{"v":1,"value":-274}]',
                   "reading 1 of the batch: value -274 °C is impossible for temperature (absolute zero is -273.15 °C)")]
    port = str(fleet.broker.port)
    for sensor, quantity, payload, _ in impossible:
        subprocess.run(["mosquitto_pub", "-p", port, "-q", "1", "-t", f"{prefix}/sensors/{sensor}/{quantity}", "-m", payload], check=True)
    for sensor, quantity, payload in (("edge-t", "temperature", "-273.15"), ("edge-h", "humidity", "0"), ("edge-h", "humidity", "100")):
        subprocess.run(["mosquitto_pub", "-p", port, "-q", "1", "-t", f"{prefix}/sensors/{sensor}/{quantity}", "-m", payload], check=True)

    def reasons() -> dict[str, str]:
        return {e["topic"]: e["reason"] for e in recorder.json("errors") if e["source"].startswith("sink")}

    wait_until(lambda: len(reasons()) >= len(impossible), 20, "the sink's error per impossible reading")
    for sensor, quantity, _, why in impossible:
        assert why in reasons()[f"{prefix}/sensors/{sensor}/{quantity}"]
    wait_until(lambda: file.read_bytes().count(b"sensor=edge-") == 3, 20, "the boundary readings written")
    written = file.read_text()
    assert "sensor=edge-t,unit=°C value=-273.15 " in written and "sensor=edge-h,unit=% value=0 " in written
    assert not any(f"sensor={sensor}," in written for sensor, *_ in impossible)  # not even the batch's good first reading
    assert "Traceback" not in fleet.log("sink")


def test_write_errors_say_whether_trying_the_same_batch_again_can_help(influxdb: InfluxDB, tmp_path: Path) -> None:
    writer = InfluxV1Writer(influxdb.url, "fresh", compress=True)
    writer.write(b"m x=1i 1795000000000000000\n")  # the database is created before the first write
    influxdb.query('DROP DATABASE "fresh"', method="POST")
    with pytest.raises(WriteError) as missing:
        writer.write(b"m x=1i 1795000000000000000\n")
    assert missing.value.retryable, "a database dropped meanwhile is created again, and the batch retried"
    writer.write(b"m x=1i 1795000000000000000\n")
    with pytest.raises(WriteError) as conflict:  # a field type conflict: InfluxDB would refuse it forever
        writer.write(b'm x="text" 1795000000000000001\nm y=2 1795000000000000002\n')
    assert not conflict.value.retryable and conflict.value.dropped == 1
    writer.close()
    gone = InfluxDB(tmp_path / "never-started")
    for dead in (InfluxV1Writer(gone.url, "edgehive", timeout_s=2), InfluxV2Writer(gone.url, "token", "org", "bucket", timeout_s=2)):
        with pytest.raises(WriteError) as unreachable:
            dead.write(b"m x=1i 1795000000000000000\n")
        assert unreachable.value.retryable
        dead.close()


def test_edgehive_sink_lists_every_setting_and_refuses_a_bad_one_with_a_message() -> None:
    cli = [sys.executable, "-m", "edgehive.cli", "sink"]
    helped = subprocess.run([*cli, "--help"], capture_output=True, text=True, timeout=60, check=False)
    assert helped.returncode == 0
    assert all(env_name(name) in helped.stdout for name in SinkSettings.model_fields)
    refused = subprocess.run([*cli, "--influx-version", "7"], capture_output=True, text=True, timeout=60, check=False)
    assert refused.returncode == 2 and "edgehive sink: EDGEHIVE_INFLUX_VERSION / --influx-version: " in refused.stderr and "Traceback" not in refused.stderr
    not_a_url = subprocess.run([*cli, "--influx-url", "influxdb:8086"], capture_output=True, text=True, timeout=60, check=False)
    assert not_a_url.returncode == 2 and "EDGEHIVE_INFLUX_URL / --influx-url: must be an http:// or https:// URL" in not_a_url.stderr, not_a_url.stderr
