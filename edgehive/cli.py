"""The `edgehive` command: one subcommand per component, plus status and submit."""

from __future__ import annotations

# First, before anything builds a pydantic model: edgehive loads no pydantic plugins, and skipping
# pydantic's search for them saves each service the modules it imports (edgehive/pydanticplugins.py).
from . import pydanticplugins  # noqa: F401

# isort: split
import argparse
import importlib
import os
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError

from . import __version__, configfile, heap, lazymodules, logs
from .errors import EdgehiveError
from .settings import BrokerSettings, CommonSettings, EnvSettings, add_settings_options, env_name, load_settings, option_name
from .signals import Stop

if TYPE_CHECKING:
    from .bus import MqttBus


def describe_settings_error(error: ValidationError, model: type[EnvSettings] | None) -> list[str]:
    """One line per bad setting, naming both ways to set it and what is expected:
    `EDGEHIVE_SLOTS / --slots: Input should be a valid integer, … (got 'lots')`. pydantic's own
    text (a dump with links to its docs) tells a user nothing they can act on."""
    lines = []
    for item in error.errors(include_url=False):
        loc = tuple(str(p) for p in item.get("loc", ()))
        if model is not None and loc and loc[0] in model.model_fields:
            where = f"{env_name(loc[0])} / {option_name(loc[0])}" + (f" ({'.'.join(loc[1:])})" if loc[1:] else "")
            where = configfile.located(loc[0]) or where  # the value came from the config file: its line
        else:
            where = ".".join(loc) or "settings"
        message = str(item.get("msg", "invalid")).removeprefix("Value error, ")
        # A nested model's message (fusion groups) may carry pydantic's links and newlines.
        message = "; ".join(part.strip() for part in message.splitlines() if part.strip() and "errors.pydantic.dev" not in part)
        value = item.get("input")
        shown = repr(value) if isinstance(value, (str, int, float)) else ""
        if shown and len(shown) <= 80 and shown not in message and loc[:1] != ("mqtt_url",):  # a URL may hold a password
            message += f" (got {shown})"
        lines.append(f"{where}: {message}")
    return lines


class SettingsInvalid(EdgehiveError):
    """Settings that failed validation, already described one line each."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


S = TypeVar("S", bound=CommonSettings)


def uses_tls(settings: CommonSettings) -> bool:
    """Whether these settings may make this process connect over TLS: an `mqtts://` broker, or a
    TLS file set (which matters only with mqtts://, but says TLS is meant)."""
    return settings.broker.tls or bool(settings.mqtt_ca_file or settings.mqtt_cert_file or settings.mqtt_key_file)


def _settings(model: type[S], args: argparse.Namespace) -> S:
    try:
        settings = load_settings(model, args)
    except ValidationError as error:
        raise SettingsInvalid(describe_settings_error(error, model)) from None
    logs.configure(settings.log_level, settings.log_format)
    if uses_tls(settings):
        lazymodules.load("ssl")  # a command that deferred ssl (edgehive/lazymodules.py) will need it: loaded while starting, as before
    # Each command imports its service before it reads its settings: what starting freed goes back now.
    heap.release_startup_garbage()
    return settings


def cmd_agent(args: argparse.Namespace) -> int:
    from .agents.agent import Agent
    from .agents.settings import AgentSettings

    Agent(_settings(AgentSettings, args)).run_forever()
    return 0


def cmd_coordinator(args: argparse.Namespace) -> int:
    from .coordinator.service import Coordinator
    from .coordinator.settings import CoordinatorSettings

    Coordinator(_settings(CoordinatorSettings, args)).run_forever()
    return 0


def cmd_hub(args: argparse.Namespace) -> int:
    from .coordinator.hub import HubRouter, HubSettings

    HubRouter(_settings(HubSettings, args)).run_forever()
    return 0


def cmd_broker(args: argparse.Namespace) -> int:
    from .broker import BrokerStartError, EmbeddedBroker
    from .broker.accounts import AccountError, listens_beyond_loopback
    from .settings import parse_listen

    settings = _settings(BrokerSettings, args)
    url = settings.broker
    try:
        host, port = parse_listen(args.listen) if args.listen else (url.host or "0.0.0.0", url.port)
    except ValueError as error:
        print(f"edgehive broker: --listen: {error}", file=sys.stderr)
        return 2
    stop = Stop().install()
    try:
        broker = EmbeddedBroker(host, port, users=settings.broker_users, prefix=settings.prefix)
    except AccountError as error:
        print(f"edgehive broker: {error}", file=sys.stderr)
        return 2
    if not broker.accounts and listens_beyond_loopback(host):
        print(f"WARNING: the embedded broker listens on {host}:{port} without credentials: any machine that reaches it may "
              "read and write every topic. Set EDGEHIVE_BROKER_USERS (user:password[:role]) or listen on 127.0.0.1; "
              "production fleets run Mosquitto (broker/README.md).", file=sys.stderr, flush=True)
    try:
        broker.start()
    except BrokerStartError as error:
        print(f"edgehive broker: {error}", file=sys.stderr)
        return 1
    try:
        auth = f"{len(broker.accounts)} accounts" if broker.accounts else "anonymous"
        print(f"embedded amqtt broker listening on {broker.host}:{broker.port} ({auth})", flush=True)
        stop.wait()
    finally:
        broker.stop()
    return 0


def cmd_camera(args: argparse.Namespace) -> int:
    from .sensors.camera import CameraSettings, run_camera

    return run_camera(_settings(CameraSettings, args))


def cmd_sensor(args: argparse.Namespace) -> int:
    from .sensors.publisher import SensorSettings, run_sensor

    return run_sensor(_settings(SensorSettings, args))


def cmd_sink(args: argparse.Namespace) -> int:
    from .telemetry.settings import SinkSettings
    from .telemetry.sink import run_sink

    return run_sink(_settings(SinkSettings, args))


def cmd_up(args: argparse.Namespace) -> int:
    from .up import UpSettings, run_up

    return run_up(_settings(UpSettings, args))


def cmd_frigate(args: argparse.Namespace) -> int:
    from .frigate.service import run_frigate
    from .frigate.settings import FrigateSettings

    return run_frigate(_settings(FrigateSettings, args))


def _client(settings: CommonSettings, role: str) -> MqttBus:
    from .bus import tool_client

    return tool_client(settings.broker, settings.prefix, role)


STATUS_STATS_WAIT_S = 5.0  # longest extra wait for an online coordinator's stats


def cmd_status(args: argparse.Namespace) -> int:
    from .fleetview import FleetView

    settings = _settings(CommonSettings, args)
    bus = _client(settings, "status")
    # A heartbeat is never retained: one that arrives while we listen comes from a live node,
    # whatever the fleet's heartbeat period (which this tool need not be told).
    view = FleetView(bus, heartbeat_s=max(args.wait, 0.1))
    from .bus import BusError

    try:
        bus.start(timeout_s=5.0)
    except BusError as error:  # a message, not a traceback
        print(f"edgehive status: {error}", file=sys.stderr)
        return 2
    time.sleep(args.wait)  # retained messages arrive at once; heartbeats within one period
    # The coordinator's stats are neither retained nor asked for: they come every stats
    # interval (2 s by default), which the default wait is shorter than. While an online
    # coordinator's first stats are missing, listen a little longer rather than print no jobs.
    deadline = time.monotonic() + STATUS_STATS_WAIT_S
    while view.coordinator == "online" and view.stats is None and time.monotonic() < deadline:
        time.sleep(0.05)
    bus.stop()
    if args.json:
        from .fleetjson import fleet_json

        sys.stdout.buffer.write(orjson.dumps(fleet_json(view), option=orjson.OPT_INDENT_2) + b"\n")
    else:
        print(view.render())
    return 0


class _BadArgument(EdgehiveError, ValueError):
    """An option of `edgehive submit` that cannot become a job (exit 2: an invalid job)."""


def _json_arg(text: str, what: str) -> dict[str, Any]:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as error:
        raise _BadArgument(f"{what} is not JSON: {error}") from None
    if not isinstance(value, dict):
        raise _BadArgument(f"{what} must be a JSON object")
    return value


def cmd_submit(args: argparse.Namespace) -> int:
    from .bus import BusError, describe_validation_error
    from .schemas import JobRequest, JobState
    from .submit import submit_and_wait

    settings = _settings(CommonSettings, args)
    try:
        request = JobRequest.model_validate({  # a dict: `requires` is validated into its model here
            "kind": args.kind, "id": args.id, "params": _json_arg(args.params, "--params"),
            "requires": _json_arg(args.requires, "--requires") if args.requires else None,
            "priority": args.priority, "deadline_s": args.deadline, "source": args.source,
        })
    except _BadArgument as error:
        print(f"edgehive submit: {error}", file=sys.stderr)
        return 2
    except ValidationError as error:
        print(f"edgehive submit: invalid job: {describe_validation_error(error)}", file=sys.stderr)
        return 2
    bus = _client(settings, "submit")
    try:
        code, last = submit_and_wait(bus, request, args.timeout)
    except BusError as error:
        print(f"edgehive submit: {error}", file=sys.stderr)
        return 2
    finally:
        bus.stop()
    if isinstance(last, BaseModel):
        print(last.model_dump_json(exclude_none=True))
        if code == 0 and isinstance(last, JobState):
            print("edgehive submit: DONE; its result was published while this client was disconnected (results are not retained)", file=sys.stderr)
    else:
        print(f"edgehive submit: no result within {args.timeout:g} s", file=sys.stderr)
    return code


def cmd_healthcheck(args: argparse.Namespace) -> int:
    from .healthcheck import cmd_healthcheck as healthcheck

    return healthcheck(args)


Command = Callable[[argparse.Namespace], int]


# The settings a short-lived client (status, submit) reads: where the broker is and how to log.
# The rest of CommonSettings (heartbeat period, node id, payload limit) belongs to services.
CLIENT_FIELDS = ("mqtt_url", "prefix", "mqtt_ca_file", "mqtt_cert_file", "mqtt_key_file", "mqtt_client", "log_level", "log_format")
BROKER_FIELDS = ("mqtt_url", "prefix", "broker_users", "log_level", "log_format")

# Each command's examples, shown at the end of its --help.
EXAMPLES: dict[str, str] = {
    "up": """examples:
  edgehive up                              broker, coordinator, one agent, demo camera, sensors and sink
  edgehive up --agents 3 --no-sink         three local agents, no telemetry sink
  edgehive up --demo-camera '' --no-demo-sensors   the fleet alone, nothing feeding it
  EDGEHIVE_INFLUX_URL=http://localhost:8086 edgehive up   telemetry to InfluxDB""",
    "agent": """examples:
  edgehive agent --mqtt-url mqtt://broker.local --node-id pi-1
  EDGEHIVE_MODELS=objects,face edgehive agent    load two of the fetched models""",
    "coordinator": """examples:
  edgehive coordinator --mqtt-url mqtt://broker.local""",
    "camera": """examples:
  edgehive camera --source rtsp://cam.local/stream --camera yard
  edgehive camera --source /dev/video0 --camera door --fps 5
  edgehive camera --source demo --camera demo              the bundled photos""",
    "sink": """examples:
  edgehive sink                                    line protocol into a file (no InfluxDB set)
  EDGEHIVE_INFLUX_URL=http://localhost:8086 EDGEHIVE_INFLUX_TOKEN=... edgehive sink""",
    "sensor": """examples:
  edgehive sensor --sensor t1 --sensor-type temperature   a simulated thermometer
  edgehive sensor --sensor demo --sensor-type demo         the demo thermometers and IMU""",
    "hub": """examples:
  edgehive hub --mqtt-url mqtt://hub.local""",
    "broker": """examples:
  edgehive broker --listen 127.0.0.1:1883
  EDGEHIVE_BROKER_USERS='alice:secret:client pi-1:pw:agent' edgehive broker --listen 0.0.0.0:1883""",
    "status": """examples:
  edgehive status
  edgehive status --wait 3 --mqtt-url mqtt://broker.local
  edgehive status --json | jq '.nodes[] | select(.state != "online") | .node'""",
    "submit": """examples:
  edgehive submit sleep --params '{"seconds": 0.5}'
  edgehive submit noop --params '{"echo": "hi"}' --priority 5 --deadline 10
  edgehive submit sleep --requires '{"tags": ["camera"]}' --timeout 60

exit status:
  0  the job is DONE (its result is printed as JSON)
  1  the job FAILED, or was refused (its last state is printed as JSON)
  2  no result within --timeout, no connection to the broker, or an invalid job""",
    "frigate": """examples:
  edgehive frigate --mqtt-url mqtt://frigate-broker.local          judge every camera's events
  edgehive frigate --frigate-cameras front_door --frigate-labels person,car""",
    "healthcheck": """examples:
  edgehive healthcheck agent      in the agent's container: exit 0 when its heartbeat arrives
  edgehive healthcheck mqtt       the broker takes this container's credentials""",
}

# Each service command's settings model: (module under edgehive, class name).
SETTINGS_MODELS: dict[str, tuple[str, str]] = {
    "up": (".up", "UpSettings"),
    "agent": (".agents.settings", "AgentSettings"),
    "coordinator": (".coordinator.settings", "CoordinatorSettings"),
    "camera": (".sensors.camera", "CameraSettings"),
    "sink": (".telemetry.settings", "SinkSettings"),
    "sensor": (".sensors.publisher", "SensorSettings"),
    "hub": (".coordinator.hub", "HubSettings"),
    "frigate": (".frigate.settings", "FrigateSettings"),
}


def settings_model(command: str) -> type[EnvSettings]:
    """The settings model of a service subcommand, imported only when asked for.

    Each model lives beside its service, and some of those modules import what only that
    service needs (OpenCV for the camera, numpy for the simulated sensors, every part for
    `up`). Importing all of them to run one command made every service hold all of it:
    about 30 MB of RSS each (bench/footprint.py)."""
    module, name = SETTINGS_MODELS[command]
    model: type[EnvSettings] = getattr(importlib.import_module(module, __package__), name)
    return model


SERVICE_COMMANDS = tuple(SETTINGS_MODELS)
# Services that talk MQTT and nothing else over the network (the agent reads its models from disk:
# `edgehive models` fetches them), held to a memory target (bench/footprint.py): they load what
# paho imports for TLS and proxies (`ssl`, `urllib.request`) only when their settings say TLS
# (`_settings`) or when something uses it (edgehive/lazymodules.py). The sink (an https InfluxDB),
# the Frigate bridge (an https Frigate), the camera (http:// sources) and `up` (the embedded
# broker's asyncio) are not among them.
LEAN_COMMANDS = ("coordinator", "sensor", "agent")
DEFERRED_MODULES = ("ssl", "urllib.request")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole command line. With `only` (the subcommand being run), the other service
    subcommands are listed with their help but their settings models are not imported, so
    their options are not added: argparse never reads them for another subcommand."""

    def model_of(command: str) -> type[EnvSettings] | None:
        return settings_model(command) if only is None or only == command else None

    parser = argparse.ArgumentParser(prog="edgehive", description="MQTT, event-driven edge AI for Raspberry Pi and Jetson fleets")
    parser.add_argument("--version", action="version", version=f"edgehive {__version__}")
    parser.add_argument("--config", metavar="FILE", help=configfile.CONFIG_HELP)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func: Command, model: type[EnvSettings] | None, help_text: str, fields: tuple[str, ...] | None = None) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text, epilog=EXAMPLES.get(name),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS, help=configfile.CONFIG_HELP)
        if model is not None:
            add_settings_options(p, model, fields)
        p.set_defaults(func=func, settings_model=model)
        return p

    add("up", cmd_up, model_of("up"), "Run the embedded broker, the coordinator and local agents, with a live status")
    add("agent", cmd_agent, model_of("agent"), "Run the device agent")
    add("coordinator", cmd_coordinator, model_of("coordinator"), "Run the coordinator")
    add("camera", cmd_camera, model_of("camera"), "Publish a camera's frames (device, video file, image folder, RTSP/HTTP, demo, synthetic) as JPEG")
    add("sink", cmd_sink, model_of("sink"), "Write heartbeats, results, job states, sensor readings and coordinator stats to InfluxDB (or a line-protocol file)")
    add("sensor", cmd_sensor, model_of("sensor"), "Publish sensor readings (simulated temperature/humidity/pressure/IMU, a BME280, or the demo set)")
    add("hub", cmd_hub, model_of("hub"), "Route jobs submitted at a hub broker to the sites bridged to it, and relay their states and results")
    add("frigate", cmd_frigate, model_of("frigate"), "Give Frigate's events a second opinion: run each new event's snapshot through the fleet, "
        "publish the verdict on results/frigate/{camera} and to Home Assistant, optionally set the event's sub label")
    # `edgehive models ...` is handed whole to the model store's own parser (see main()).
    from .configcmd import add_parser as add_config_parser

    add_config_parser(sub)
    sub.add_parser("models", help="Fetch and verify the models of the manifest (edgehive models --help)", add_help=False)
    p = add("broker", cmd_broker, BrokerSettings, "Run the embedded amqtt broker alone", BROKER_FIELDS)
    p.add_argument("--listen", default="", help="host:port to listen on (default: host and port of the MQTT URL)")
    p = add("status", cmd_status, CommonSettings, "Print the fleet's nodes and job counts, from MQTT alone", CLIENT_FIELDS)
    p.add_argument("--wait", type=float, default=1.5, help="Seconds to listen before printing; a node whose heartbeat arrives meanwhile is online (default: 1.5)")
    p.add_argument("--json", action="store_true", help="Print one JSON object (nodes, jobs, frames, fusion; shape in the README) instead of the table")
    p = add("submit", cmd_submit, CommonSettings, "Submit a job and wait for its result", CLIENT_FIELDS)
    p.add_argument("kind", help="Job kind, e.g. sleep, noop, detections")
    p.add_argument("--params", default="{}", help="Job parameters as JSON, e.g. '{\"seconds\": 0.5}' (default: {})")
    p.add_argument("--requires", default="", help="Requirements as JSON, e.g. '{\"tags\": [\"camera\"]}' (default: any node that runs the kind)")
    p.add_argument("--id", default=None, help="Job id (default: assigned)")
    p.add_argument("--source", default=None, help="Last level of the result topic (default: the job id)")
    p.add_argument("--priority", type=int, default=0,
                   help="-100 to 100; higher runs first: the coordinator places queued jobs by priority, then in arrival order (default: 0)")
    p.add_argument("--deadline", type=float, default=None, help="Seconds before the job is given up (default: none)")
    p.add_argument("--timeout", type=float, default=30.0, help="Seconds to wait for the result (default: 30)")
    from .healthcheck import add_arguments as healthcheck_arguments

    healthcheck_arguments(add("healthcheck", cmd_healthcheck, CommonSettings, "Exit 0 when this container's service shows signs of work on MQTT (container healthchecks)"))
    return parser


def command_settings() -> dict[str, type[EnvSettings]]:
    """Each subcommand's settings model: the docs tables and the deploy checks walk this, so a
    new command's settings cannot go undocumented."""
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    found = {name: p.get_default("settings_model") for name, p in sub.choices.items()}
    return {name: model for name, model in found.items() if model is not None}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["models"]:
        from .agents.modelstore import main as modelstore_main

        return modelstore_main(argv[1:])
    if argv[:1] and argv[0] in LEAN_COMMANDS:
        lazymodules.defer(*DEFERRED_MODULES)  # before paho is imported, which the sensor's settings module already does
    parser = build_parser(only=argv[0] if argv[:1] and argv[0] in SERVICE_COMMANDS else None)
    args = parser.parse_args(argv)
    try:
        configfile.use(args.config)
        return int(args.func(args))
    except (SettingsInvalid, configfile.ConfigFileError) as error:
        lines = error.lines
    except ValidationError as error:  # settings a command reads itself (up reads its children's)
        owner = next((m for m in command_settings().values() if m.__name__ == error.title), None)
        lines = describe_settings_error(error, owner)
    except BrokenPipeError:
        # The reader went away (`edgehive config show | head`): what it wanted it has. Point stdout
        # at /dev/null so that the interpreter's own flush at exit does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except EdgehiveError as error:  # raised on purpose and not handled by the command (a broker port taken): one line
        print(f"edgehive {args.command}: {error}", file=sys.stderr)
        return 1
    for line in lines:
        print(f"edgehive {args.command}: {line}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
