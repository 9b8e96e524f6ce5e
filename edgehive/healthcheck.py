"""`edgehive healthcheck KIND`: is this container's service doing its job, as seen on MQTT?

Docker and balenaEngine run the check inside the service's own container, so it sees the same
environment (node id, camera id, credentials) as the service; balenaEngine restarts a container
whose check keeps failing. A process that is merely alive passes nothing here: the check passes
only on evidence of work, each within a few of its own periods:

| kind | passes when |
| --- | --- |
| `agent` | this node's heartbeat arrives on `nodes/{node}/heartbeat` |
| `coordinator` | a `coordinator/stats` message arrives (the active coordinator), or this coordinator's own `coordinator/members/{id}` is published again (a standby) |
| `camera` | a frame from this camera arrives on `frames/{camera}` |
| `sensor` | a reading from this device's sensor (`sensors/{sensor}[-*]/+`) arrives |
| `sink` | the broker takes this container's credentials and InfluxDB answers `/ping` |
| `mqtt` | the broker takes this container's credentials |

Exit status 0 means healthy, 1 unhealthy (with the reason on stderr), as Docker expects.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from .settings import CommonSettings, EnvSettings, load_settings

__all__ = ["KINDS", "Probe", "check", "cmd_healthcheck", "probe_for"]

# Grace on top of the periods: connecting, subscribing and a slow device's scheduling.
GRACE_S = 3.0
PERIODS = 3  # a single late message must not fail the check

KINDS = ("agent", "coordinator", "camera", "sensor", "sink", "mqtt")


@dataclasses.dataclass(frozen=True)
class Probe:
    """What one kind waits for: a message on `topic` accepted by `accept`, within `within_s`."""

    settings: CommonSettings
    what: str
    topic: str | None = None  # None: a successful connection is the whole check
    within_s: float = 0.0
    accept: Callable[[str], bool] = lambda topic: True
    max_bytes: int = 1 << 20
    influx_url: str = ""


def _settings(model: type[EnvSettings], args: argparse.Namespace | None) -> Any:
    """The service's settings from its environment (and any option given to the check)."""
    return load_settings(model, args)


def probe_for(kind: str, args: argparse.Namespace | None = None) -> Probe:
    """The probe for `kind`, read from the same EDGEHIVE_* settings the service itself reads."""
    if kind == "agent":
        from .agents.settings import AgentSettings

        agent = _settings(AgentSettings, args)
        return Probe(agent, f"heartbeat from node {agent.node_id}", f"{agent.prefix}/nodes/{agent.node_id}/heartbeat",
                     PERIODS * agent.heartbeat_s + GRACE_S)
    if kind == "coordinator":
        from .coordinator.settings import CoordinatorSettings

        coordinator = _settings(CoordinatorSettings, args)
        stats, member = f"{coordinator.prefix}/coordinator/stats", f"{coordinator.prefix}/coordinator/members/{coordinator.coordinator_name}"
        members_seen = [0]

        def working(topic: str) -> bool:
            """Stats (active), or our standby status published anew: the first copy may be the retained one of a dead run."""
            if topic == member:
                members_seen[0] += 1
            return topic == stats or members_seen[0] >= 2

        return Probe(coordinator, "coordinator stats or standby status", f"{coordinator.prefix}/coordinator/+/#",
                     PERIODS * coordinator.stats_interval_s + GRACE_S, accept=working)
    if kind == "camera":
        from .sensors.camera import CameraSettings

        camera = _settings(CameraSettings, args)
        return Probe(camera, f"frame from camera {camera.camera}", f"{camera.prefix}/frames/{camera.camera}",
                     PERIODS / camera.fps + GRACE_S, max_bytes=max(camera.max_payload_bytes, 64 << 20))
    if kind == "sensor":
        from .sensors.publisher import SensorSettings

        sensor = _settings(SensorSettings, args)
        base = sensor.sensor

        def ours(topic: str) -> bool:
            level = topic[len(sensor.prefix) + 1:].split("/")[1]
            return level == base or level.startswith(base + "-")

        return Probe(sensor, f"reading from sensor {base}", f"{sensor.prefix}/sensors/+/+",
                     PERIODS / sensor.sensor_rate_hz + GRACE_S, accept=ours)
    if kind == "sink":
        from .telemetry.settings import SinkSettings

        sink = _settings(SinkSettings, args)
        return Probe(sink, "the broker and InfluxDB", influx_url=sink.influx_url)
    if kind == "mqtt":
        common = _settings(CommonSettings, args)
        return Probe(common, "the broker")
    raise ValueError(f"unknown healthcheck kind {kind!r}: one of {', '.join(KINDS)}")


def _influx_answers(url: str, timeout_s: float) -> str | None:
    """None when InfluxDB's /ping answers (1.x, 2.x and 3.x all have it), else the reason."""
    # Imported here: every command's parser imports this module, and the coordinator and the
    # sensors load urllib.request and ssl only when they use them (edgehive/lazymodules.py).
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url.rstrip("/") + "/ping", timeout=timeout_s) as response:
            return None if response.status < 300 else f"InfluxDB /ping answered {response.status}"
    except (urllib.error.URLError, OSError, ValueError) as error:
        return f"InfluxDB at {url} does not answer /ping: {error}"


def check(probe: Probe, connect_timeout_s: float = 10.0) -> str | None:
    """None when healthy, else why not."""
    from .bus import BusError, tool_client

    settings = probe.settings
    seen = threading.Event()
    bus = tool_client(settings.broker, settings.prefix, "healthcheck", reconnect_max_s=1.0)
    if probe.topic is not None:
        bus.subscribe(probe.topic, lambda topic, _payload: seen.set() if probe.accept(topic) else None,
                      qos=0, max_bytes=probe.max_bytes)
    started = time.monotonic()
    try:
        bus.start(timeout_s=connect_timeout_s)
    except BusError as error:
        return str(error)
    try:
        if probe.topic is not None and not seen.wait(max(0.0, probe.within_s - (time.monotonic() - started))):
            return f"no {probe.what} within {probe.within_s:g} s on {settings.broker.redacted()}"
    finally:
        bus.stop()
    if probe.influx_url:
        return _influx_answers(probe.influx_url, connect_timeout_s)
    return None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("kind", choices=KINDS, help=(
        "agent: this node's heartbeat arrives; coordinator: its stats arrive; camera: this camera's frames arrive; "
        "sensor: this device's readings arrive; sink: the broker and InfluxDB answer; mqtt: the broker takes these credentials"))
    parser.add_argument("--timeout", type=float, default=None,
                        help="Seconds to wait for the evidence (default: three of the service's own periods plus a grace)")


def cmd_healthcheck(args: argparse.Namespace) -> int:
    """The `edgehive healthcheck` command: 0 healthy, 1 not (reason on stderr)."""
    try:
        probe = probe_for(args.kind, args)
    except ValueError as error:  # settings that do not validate: unhealthy, and say why
        print(f"edgehive healthcheck {args.kind}: {error}", file=sys.stderr)
        return 1
    if args.timeout is not None:
        probe = dataclasses.replace(probe, within_s=args.timeout)
    problem = check(probe)
    if problem is not None:
        print(f"edgehive healthcheck {args.kind}: unhealthy: {problem}", file=sys.stderr)
        return 1
    return 0
