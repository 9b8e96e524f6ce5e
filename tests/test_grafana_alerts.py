"""Every provisioned Grafana alert rule, evaluated as Grafana would, against one real run.

The run (real Mosquitto, Debian's InfluxDB 1.x, edgehive processes started by the CLI) is first
healthy: three agents (one serving the porch camera's face model), a sensor group whose fusion
windows are pinned to one node, and two sinks, one of them writing through a TCP relay. Every
rule is evaluated and must fire for nothing while each has data for the healthy nodes, camera,
group and sinks. Then, at once, five things go wrong: a node's (fake) sysfs reports 85 °C and
the Pi firmware's throttle flags, another node is killed, the relay is cut (that sink's spool
grows), a camera asking for a model no node has starts sending frames (they are dropped), and
the killed node was the one the group's windows are pinned to (they queue up and are refused).
Each rule must then fire for exactly what went wrong, and not for what stayed healthy.
"""

from __future__ import annotations

import signal
import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pytest
from grafana_alerts import Verdict, evaluate, load_rules
from harness import Fleet, MosquittoBroker, Recorder, wait_nodes_online, wait_until
from influx_harness import InfluxDB
from test_telemetry_flows import fake_host, sink_env
from vision_fixtures import models_dir  # noqa: F401  (fixture)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]  # the first test waits for the run: about 3 minutes

RULES = load_rules()
THROTTLE = "sys/devices/platform/soc/soc:firmware/get_throttled"

# rule → (the label it fires on, what goes wrong, what stays healthy and must not fire)
EXPECTED: dict[str, tuple[str, str, set[str]]] = {
    "edgehive-node-offline": ("node", "pi-gone", {"pi-1", "pi-hot"}),
    "edgehive-node-throttled": ("node", "pi-hot", {"pi-1"}),
    "edgehive-node-hot": ("node", "pi-hot", {"pi-1"}),
    "edgehive-camera-frames-dropped": ("key", "attic", {"porch"}),
    "edgehive-sink-spool-growing": ("node", "sink-edge", {"sink-main"}),
    "edgehive-fusion-windows-refused": ("key", "burst", set()),
}


class TcpRelay:
    """A TCP relay to `target_port` on a free port; `cut()` closes it and every connection
    through it, as a pulled cable or a dead route between a sink and its InfluxDB."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=10)
            except OSError:
                return
            with self.lock:
                self.sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        for s in (source, sink):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self) -> None:
        try:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() waiting in the other thread: close() alone would not
        except OSError:
            pass
        self.listener.close()
        with self.lock:
            for s in self.sockets:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()


@dataclass
class AlertRun:
    healthy: dict[str, Verdict] = field(default_factory=dict)
    faulty: dict[str, Verdict] = field(default_factory=dict)


def evaluate_all(influx: InfluxDB) -> dict[str, Verdict]:
    return {uid: evaluate(rule, influx.series) for uid, rule in RULES.items()}


def has_numbers(verdict: Verdict, tag: str, values: set[str]) -> bool:
    """The rule's reduce step holds a number for each of `values` of `tag` (there is data)."""
    return values <= {dict(labels).get(tag) for labels, number in reduced(verdict).items() if number == number}  # NaN: no data


def reduced(verdict: Verdict) -> dict[tuple[tuple[str, str], ...], float]:
    """The numbers the rule's reduce step gave, by label set."""
    [ref] = [step["refId"] for step in RULES[verdict.rule]["data"] if step["model"].get("type") == "reduce"]
    return verdict.numbers[ref]


@pytest.fixture(scope="module")
def alert_run(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Iterator[AlertRun]:
    workdir = tmp_path_factory.mktemp("alert-run")
    broker = MosquittoBroker(workdir / "mosquitto")
    broker.start()
    influx = InfluxDB(workdir / "influxdb")
    influx.start()
    relay = TcpRelay(influx.port)
    fleet = Fleet(broker, f"test-{uuid.uuid4().hex[:8]}/v1", workdir)
    recorder = Recorder(broker.url, fleet.prefix)
    result = AlertRun()
    try:
        fleet.sink("sink-main", **sink_env(workdir / "main", influx.url))
        fleet.sink("sink-edge", **sink_env(workdir / "edge", f"http://127.0.0.1:{relay.port}"))
        groups = {"burst": {"quantity": "temperature", "sensors": ["burst-1"], "window_s": 0.5, "requires": {"node": "pi-gone"}}}
        fleet.coordinator(EDGEHIVE_FUSION_GROUPS=orjson.dumps(groups).decode(), EDGEHIVE_FUSION_QUEUE_MAX="40")
        fleet.agent("pi-1", EDGEHIVE_MODELS_DIR=str(models_dir), EDGEHIVE_MODELS="face", EDGEHIVE_WORKERS="2",
                    EDGEHIVE_HOST_ROOT=str(fake_host(workdir / "host-1")))
        hot_host = fake_host(workdir / "host-hot")
        fleet.agent("pi-hot", EDGEHIVE_HOST_ROOT=str(hot_host))
        fleet.agent("pi-gone", EDGEHIVE_HOST_ROOT=str(fake_host(workdir / "host-gone")))
        wait_nodes_online(recorder, 3, timeout_s=60)
        fleet.camera("porch", EDGEHIVE_SOURCE="demo", EDGEHIVE_FPS="2", EDGEHIVE_MODEL="face")
        fleet.sensor("burst-1", EDGEHIVE_SENSOR_TYPE="temperature", EDGEHIVE_SENSOR_RATE_HZ="20")

        # Healthy: every rule sees data for what runs, and fires for nothing.
        healthy_data = {uid: (tag, {bad} | good if uid not in ("edgehive-camera-frames-dropped",) else good)
                        for uid, (tag, bad, good) in EXPECTED.items()}

        def all_have_data() -> bool:
            result.healthy = evaluate_all(influx)
            return all(has_numbers(result.healthy[uid], tag, values) for uid, (tag, values) in healthy_data.items())

        wait_until(all_have_data, 90, "every rule to have data for the healthy run")

        # Five faults at once.
        for rel, text in (("sys/class/thermal/thermal_zone0/temp", "85000"), (THROTTLE, "0x50005")):
            (hot_host / rel).write_text(text + "\n")
        fleet.kill("pi-gone", signal.SIGKILL)
        relay.cut()
        fleet.camera("attic", EDGEHIVE_SOURCE="demo", EDGEHIVE_FPS="10", EDGEHIVE_MODEL="objects")

        def all_fire() -> bool:
            for uid, verdict in evaluate_all(influx).items():
                tag, bad, _ = EXPECTED[uid]
                if uid not in result.faulty or bad not in result.faulty[uid].fires_for(tag):
                    result.faulty[uid] = verdict
            return all(bad in result.faulty[uid].fires_for(tag) for uid, (tag, bad, _) in EXPECTED.items())

        wait_until(all_fire, 240, "every rule to fire for its fault")
        yield result
    except BaseException:
        for name in fleet.procs:
            print(f"----- {name}.log -----\n{fleet.log(name)[-3000:]}")
        print("healthy:", result.healthy, "\nfaulty:", result.faulty)
        raise
    finally:
        fleet.stop_all()
        recorder.close()
        relay.cut()
        influx.stop()
        broker.stop()


@pytest.mark.parametrize("uid", sorted(EXPECTED))
def test_a_rule_fires_for_nothing_on_a_healthy_run(alert_run: AlertRun, uid: str) -> None:
    verdict = alert_run.healthy[uid]
    assert not verdict.no_data and not verdict.firing, f"{uid} fires on a healthy run: {verdict}"


@pytest.mark.parametrize("uid", sorted(EXPECTED))
def test_a_rule_fires_for_what_went_wrong_and_only_for_it(alert_run: AlertRun, uid: str) -> None:
    tag, bad, good = EXPECTED[uid]
    verdict = alert_run.faulty[uid]
    assert bad in verdict.fires_for(tag), f"{uid} does not fire for {tag}={bad}: {verdict}"
    assert not verdict.fires_for(tag) & good, f"{uid} fires for healthy {verdict.fires_for(tag) & good}: {verdict}"
    assert has_numbers(verdict, tag, {bad}), "it fires on a value, not for lack of data"


def test_each_fault_really_happened(alert_run: AlertRun) -> None:
    """What each rule read is what the faults produce: the numbers behind the firing alerts."""
    def value(uid: str, tag: str, wanted: str) -> float:
        return next(v for labels, v in reduced(alert_run.faulty[uid]).items() if dict(labels).get(tag) == wanted)

    assert value("edgehive-node-hot", "node", "pi-hot") > 80
    assert value("edgehive-node-throttled", "node", "pi-hot") == 1
    assert value("edgehive-node-offline", "node", "pi-gone") == 0 and value("edgehive-node-offline", "node", "pi-1") > 1
    assert value("edgehive-camera-frames-dropped", "key", "attic") > 1
    assert value("edgehive-sink-spool-growing", "node", "sink-edge") == 0
    assert value("edgehive-fusion-windows-refused", "key", "burst") > 0
