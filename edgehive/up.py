"""`edgehive up`: the whole system on one machine, for a first run and for demos.

The embedded broker runs in this process; the coordinator and each agent run as child
processes, as they would on separate devices, so killing one shows what the fleet does.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import orjson
from pydantic import Field, field_validator

from . import configfile
from .agents.settings import AgentSettings
from .bus import MqttBus
from .coordinator.settings import CoordinatorSettings
from .fleetview import FleetView
from .livetable import LiveTable
from .schemas import Topics
from .schemas.kinds import DETECT_KIND, FUSION_KIND, SLEEP_KIND
from .sensors.publisher import demo_groups
from .settings import CommonSettings, MqttUrl, parse_listen
from .signals import SLICE_S, Stop
from .telemetry.settings import SinkSettings

if TYPE_CHECKING:
    from .broker import EmbeddedBroker

log = logging.getLogger(__name__)


class UpSettings(CommonSettings):
    agents: int = Field(1, ge=0, le=64, description="Local agents to start with `edgehive up`")
    embedded_broker: bool = Field(True, description="Run the embedded amqtt broker (false: use the broker at mqtt_url)")
    listen: str = Field("", description="host:port for the embedded broker (default: host and port of mqtt_url)")
    status_every_s: float = Field(2.0, ge=0, description="Seconds between live status tables in `edgehive up` (0: none)")
    demo_camera: str = Field("demo", description="Source of the camera `edgehive up` starts (demo: the bundled photos; empty: no camera)")
    sink: bool = Field(True, description="Start the telemetry sink (InfluxDB at EDGEHIVE_INFLUX_URL, else a line-protocol file)")
    demo_sensors: bool = Field(True, description="Start the demo sensors (three thermometers and an IMU) and fuse them in groups room and motion")

    @field_validator("listen")
    @classmethod
    def _valid_listen(cls, value: str) -> str:
        if value:
            parse_listen(value)  # its ValueError names what was expected
        return value


def _listen_address(settings: UpSettings) -> tuple[str, int]:
    url = settings.broker
    if not settings.listen:
        return url.host, url.port
    return parse_listen(settings.listen)


# What a child may need beyond its drain: the last words' publish wait (bus.stop, 5 s) and exit.
STOP_MARGIN_S = 10.0


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]


def _child(name: str, args: list[str], env: dict[str, str]) -> Child:
    """A component in its own session: a Ctrl-C at the terminal reaches `up` alone, which then
    stops the children in order, each exactly once (a second signal would force them)."""
    return Child(name, subprocess.Popen([sys.executable, "-m", "edgehive.cli", *args], env=env, start_new_session=True))


def _stop_children(children: list[Child], stop: Stop, bound_s: float) -> bool:
    """SIGTERM to every child, agents before the coordinator (so it sees them drain), then wait
    at most `bound_s`; a second Ctrl-C or SIGTERM, or the bound, kills what is left. True when
    every child stopped by itself."""
    for child in reversed(children):
        if child.proc.poll() is None:
            child.proc.send_signal(signal.SIGTERM)
    running = [c for c in children if c.proc.poll() is None]
    if running:
        print(f"stopping: waiting up to {bound_s:g} s for {', '.join(c.name for c in running)} to finish "
              "(Ctrl-C again to stop at once)", file=sys.stderr, flush=True)
    forced_by = len(stop.signals)
    deadline = time.monotonic() + bound_s
    while running and time.monotonic() < deadline and len(stop.signals) <= forced_by:
        time.sleep(SLICE_S)
        running = [c for c in running if c.proc.poll() is None]
    for child in running:
        child.proc.kill()
        child.proc.wait()
    if running:
        why = "a second signal" if len(stop.signals) > forced_by else f"{bound_s:g} s"
        print(f"stopped {', '.join(c.name for c in running)} by force after {why}", file=sys.stderr, flush=True)
    return not running


def run_up(settings: UpSettings) -> int:
    stop = Stop().install(force_on_second=False)  # first thing: a Ctrl-C while starting still stops cleanly
    # Settings `up` reads on its children's behalf, read before any child starts: a bad one
    # (EDGEHIVE_SLOTS=lots) is then one line and nothing running, where reading it at the stop
    # used to end `up` with the children left running and the broker gone.
    drain_bound_s = AgentSettings().drain_timeout_s + STOP_MARGIN_S
    sink = SinkSettings() if settings.sink else None
    CoordinatorSettings()  # only checked here (EDGEHIVE_CAMERAS, fusion groups); the child reads its own
    broker: EmbeddedBroker | None = None
    url = settings.broker
    if settings.embedded_broker:
        # Imported only to run it: amqtt brings asyncio, about 2 MB that `up` beside Mosquitto need not hold.
        from . import broker as embedded
        from .broker.accounts import listens_beyond_loopback

        host, port = _listen_address(settings)
        if listens_beyond_loopback(host):
            print(f"WARNING: the embedded broker listens on {host}:{port} without credentials: any machine that reaches it may "
                  "read and write every topic. `edgehive up` is for one machine; to serve others run `edgehive broker` with "
                  "EDGEHIVE_BROKER_USERS, or Mosquitto (broker/README.md).", file=sys.stderr, flush=True)
        try:
            broker = embedded.EmbeddedBroker(host, port).start()
        except embedded.BrokerStartError as error:
            print(f"edgehive up: {error}", file=sys.stderr)
            return 1
        connect_host = "127.0.0.1" if host in ("0.0.0.0", "") else host
        url = MqttUrl(host=connect_host, port=broker.port)
    env = dict(os.environ, **configfile.child_env(), EDGEHIVE_MQTT_URL=f"mqtt://{url.host}:{url.port}", EDGEHIVE_PREFIX=settings.prefix,
               EDGEHIVE_HEARTBEAT_S=str(settings.heartbeat_s), EDGEHIVE_LOG_LEVEL=settings.log_level)
    if url.username:
        env["EDGEHIVE_MQTT_URL"] = settings.mqtt_url
    coordinator_env = dict(env)
    if settings.demo_sensors and not os.environ.get("EDGEHIVE_FUSION_GROUPS") and not configfile.located("fusion_groups"):
        coordinator_env["EDGEHIVE_FUSION_GROUPS"] = orjson.dumps(demo_groups("demo")).decode()
    children = [_child("coordinator", ["coordinator"], coordinator_env)]
    for i in range(settings.agents):
        node = settings.node_id if settings.agents == 1 else f"{settings.node_id}-{i + 1}"
        children.append(_child(f"agent {node}", ["agent"], dict(env, EDGEHIVE_NODE_ID=node)))
    if settings.demo_camera:
        children.append(_child("camera demo", ["camera"], dict(env, EDGEHIVE_NODE_ID="demo", EDGEHIVE_SOURCE=settings.demo_camera,
                                                EDGEHIVE_FPS=os.environ.get("EDGEHIVE_FPS", "2"))))

    if settings.demo_sensors:
        children.append(_child("sensors demo", ["sensor"], dict(env, EDGEHIVE_SENSOR="demo", EDGEHIVE_SENSOR_TYPE="demo",
                                                EDGEHIVE_SENSOR_RATE_HZ=os.environ.get("EDGEHIVE_SENSOR_RATE_HZ", "20"))))

    if settings.sink:
        children.append(_child("sink", ["sink"], dict(env, EDGEHIVE_NODE_ID=f"{settings.node_id}-sink")))

    topics = Topics(settings.prefix)
    print(f"edgehive is up: broker {url.redacted()} ({'embedded amqtt' if broker else 'external'}), "
          f"{settings.agents} agent(s), prefix {settings.prefix}")
    print(f"  watch:  mosquitto_sub -h {url.host} -p {url.port} -t '{settings.prefix}/#' "
          f"-T '{settings.prefix}/frames/+' -T '{settings.prefix}/snapshots/+' -T '{settings.prefix}/nodes/+/snapshots/+' "
          f"-T '{settings.prefix}/nodes/+/jobs' -v")
    print(f"  submit: mosquitto_pub -h {url.host} -p {url.port} -t '{topics.submit}' "
          f"-m '{{\"v\":1,\"kind\":\"{SLEEP_KIND}\",\"params\":{{\"seconds\":0.05}}}}'")
    if settings.demo_camera:
        print(f"  camera: 'demo' ({settings.demo_camera}) → mosquitto_sub -h {url.host} -p {url.port} -t '{settings.prefix}/results/{DETECT_KIND}/#' -v")
    if settings.demo_sensors:
        print(f"  fusion: sensors demo-t1..t3, demo-imu → mosquitto_sub -h {url.host} -p {url.port} -t '{settings.prefix}/results/{FUSION_KIND}/#' -v")
        print(f"  reading: mosquitto_pub -h {url.host} -p {url.port} -t '{settings.prefix}/sensors/demo-t1/temperature' -m 21.5")
    if sink is not None:  # what the sink child reads from the same environment
        where = f"InfluxDB at {sink.influx_url}" if sink.influx_url else f"line protocol in {sink.telemetry_file}"
        print(f"  telemetry: sink → {where} (docs/TELEMETRY.md; Grafana dashboards in grafana/)")
    print("  status: edgehive status   (Ctrl-C stops everything)", flush=True)

    view_bus = MqttBus(url, topics, f"edgehive-up-{os.getpid()}", source="up")
    view = FleetView(view_bus, heartbeat_s=settings.heartbeat_s)
    view_bus.start(timeout_s=None)
    clean = False
    died: Child | None = None
    table = LiveTable(sys.stdout)
    try:
        next_table = time.monotonic() + settings.status_every_s
        while not stop.wait(SLICE_S):
            exited = [c for c in children if c.proc.poll() is not None]
            if exited:
                died = exited[0]
                print(f"{died.name} exited (code {died.proc.returncode}); stopping", file=sys.stderr)
                break
            if settings.status_every_s and time.monotonic() >= next_table:
                next_table = time.monotonic() + settings.status_every_s
                table.show(view.render())
    finally:
        clean = _stop_children(children, stop, drain_bound_s)
        view_bus.stop()
        if broker is not None:
            broker.stop()
    if died is not None:  # a part of the system ended on its own: not a success, whatever the rest did
        return 1
    if clean:
        return 0
    return 128 + stop.signals[-1] if stop.signals else 1  # like a shell: 130 after a forcing Ctrl-C
