"""The `edgehive` command: one subcommand per component, plus status and submit."""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError
from pydantic_settings import BaseSettings

from . import __version__, configfile, logs
from .errors import EdgehiveError
from .settings import BrokerSettings, CommonSettings, add_settings_options, env_name, load_settings, option_name
from .signals import Stop

if TYPE_CHECKING:
    from .bus import MqttBus


def describe_settings_error(error: ValidationError, model: type[BaseSettings] | None) -> list[str]:
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


def _settings(model: type[S], args: argparse.Namespace) -> S:
    try:
        settings = load_settings(model, args)
    except ValidationError as error:
        raise SettingsInvalid(describe_settings_error(error, model)) from None
    logs.configure(settings.log_level, settings.log_format)
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
    from .broker import EmbeddedBroker
    from .broker.accounts import AccountError, listens_beyond_loopback

    settings = _settings(BrokerSettings, args)
    url = settings.broker
    host = (args.listen.rpartition(":")[0] if args.listen else url.host) or "0.0.0.0"
    port = int(args.listen.rpartition(":")[2]) if args.listen else url.port
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
    with broker:
        auth = f"{len(broker.accounts)} accounts" if broker.accounts else "anonymous"
        print(f"embedded amqtt broker listening on {broker.host}:{broker.port} ({auth})", flush=True)
        stop.wait()
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


def cmd_status(args: argparse.Namespace) -> int:
    from .fleetview import FleetView

    settings = _settings(CommonSettings, args)
    bus = _client(settings, "status")
    view = FleetView(bus, heartbeat_s=settings.heartbeat_s)
    from .bus import BusError

    try:
        bus.start(timeout_s=5.0)
    except BusError as error:  # a message, not a traceback
        print(f"edgehive status: {error}", file=sys.stderr)
        return 2
    time.sleep(args.wait)  # retained messages arrive at once; heartbeats within one period
    bus.stop()
    print(view.render())
    return 0


def _json_arg(text: str, what: str) -> dict[str, Any]:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as error:
        raise SystemExit(f"edgehive submit: {what} is not JSON: {error}") from None
    if not isinstance(value, dict):
        raise SystemExit(f"edgehive submit: {what} must be a JSON object")
    return value


def cmd_submit(args: argparse.Namespace) -> int:
    from .bus import BusError
    from .schemas import JobRequest, JobState
    from .submit import submit_and_wait

    settings = _settings(CommonSettings, args)
    try:
        request = JobRequest.model_validate({  # a dict: `requires` is validated into its model here
            "kind": args.kind, "id": args.id, "params": _json_arg(args.params, "--params"),
            "requires": _json_arg(args.requires, "--requires") if args.requires else None,
            "priority": args.priority, "deadline_s": args.deadline, "source": args.source,
        })
    except ValidationError as error:
        print(f"edgehive submit: invalid job: {error}", file=sys.stderr)
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


def settings_model(command: str) -> type[BaseSettings]:
    """The settings model of a service subcommand, imported only when asked for.

    Each model lives beside its service, and some of those modules import what only that
    service needs (OpenCV for the camera, numpy for the simulated sensors, every part for
    `up`). Importing all of them to run one command made every service hold all of it:
    about 30 MB of RSS each (bench/footprint.py)."""
    module, name = SETTINGS_MODELS[command]
    model: type[BaseSettings] = getattr(importlib.import_module(module, __package__), name)
    return model


SERVICE_COMMANDS = tuple(SETTINGS_MODELS)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole command line. With `only` (the subcommand being run), the other service
    subcommands are listed with their help but their settings models are not imported, so
    their options are not added: argparse never reads them for another subcommand."""

    def model_of(command: str) -> type[BaseSettings] | None:
        return settings_model(command) if only is None or only == command else None

    parser = argparse.ArgumentParser(prog="edgehive", description="MQTT, event-driven edge AI for Raspberry Pi and Jetson fleets")
    parser.add_argument("--version", action="version", version=f"edgehive {__version__}")
    parser.add_argument("--config", metavar="FILE", help=configfile.CONFIG_HELP)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func: Command, model: type[BaseSettings] | None, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS, help=configfile.CONFIG_HELP)
        if model is not None:
            add_settings_options(p, model)
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
    p = add("broker", cmd_broker, BrokerSettings, "Run the embedded amqtt broker alone")
    p.add_argument("--listen", default="", help="host:port to listen on (default: host and port of the MQTT URL)")
    p = add("status", cmd_status, CommonSettings, "Print the fleet's nodes and job counts, from MQTT alone")
    p.add_argument("--wait", type=float, default=1.5, help="Seconds to listen before printing (default 1.5)")
    p = add("submit", cmd_submit, CommonSettings, "Submit a job and wait for its result")
    p.add_argument("kind", help="Job kind, e.g. sleep")
    p.add_argument("--params", default="{}", help="Job parameters as JSON, e.g. '{\"seconds\": 0.5}'")
    p.add_argument("--requires", default="", help="Requirements as JSON, e.g. '{\"tags\": [\"camera\"]}'")
    p.add_argument("--id", default=None, help="Job id (default: assigned)")
    p.add_argument("--source", default=None, help="Last level of the result topic (default: the job id)")
    p.add_argument("--priority", type=int, default=0)
    p.add_argument("--deadline", type=float, default=None, help="Seconds before the job is given up")
    p.add_argument("--timeout", type=float, default=30.0, help="Seconds to wait for the result (default 30)")
    from .healthcheck import add_arguments as healthcheck_arguments

    healthcheck_arguments(add("healthcheck", cmd_healthcheck, CommonSettings, "Exit 0 when this container's service shows signs of work on MQTT (container healthchecks)"))
    return parser


def command_settings() -> dict[str, type[BaseSettings]]:
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
    parser = build_parser(only=argv[0] if argv[:1] and argv[0] in SERVICE_COMMANDS else None)
    args = parser.parse_args(argv)
    try:
        configfile.use(args.config)
        return int(args.func(args))
    except (SettingsInvalid, configfile.ConfigFileError) as error:
        lines = error.lines
    except ValidationError as error:  # settings a command reads itself (up reads its children's)
        lines = describe_settings_error(error, None)
    for line in lines:
        print(f"edgehive {args.command}: {line}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
