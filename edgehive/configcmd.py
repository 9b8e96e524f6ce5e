"""`edgehive config check` and `edgehive config show`: the config file, checked and explained.

`check` validates the file alone (not the environment) against every command's settings
model, so a mistake is found before a service trips on it, and says each one with its line:
`edgehive.yml:12: coordinator.queue_max: Input should be a valid integer (got 'lots')`.
`show` prints what each service would run with and where each value came from: an option,
a variable, the file (with its line) or the default; passwords and tokens are masked.
"""

from __future__ import annotations

import argparse
import re
import sys
from typing import Any

import orjson
from pydantic import TypeAdapter, ValidationError
from pydantic_core import ErrorDetails

from . import configfile
from .configfile import ConfigFile, Problem
from .settings import CommonSettings, EnvSettings, add_settings_options, env_name, load_settings

SHOWN = ("up", "agent", "coordinator", "camera", "sensor", "sink", "frigate", "hub", "broker")
NO_FILE = (f"no config file: give --config FILE, set {configfile.CONFIG_ENV} (a path) or {configfile.CONFIG_YAML_ENV} (the YAML), "
           f"or create ./{configfile.DEFAULT_FILE}")


def add_parser(sub: Any) -> None:
    """`edgehive config check|show`, on the CLI's subcommands."""
    text = "Check the YAML config file, or show the effective settings and where each came from"
    parser = sub.add_parser("config", help=text, description=text + " (README: One config file)")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    check = actions.add_parser("check", help="Print every mistake in the file with its line; exit 1 on any, 0 with one OK line",
                               description="Validate the config file alone against every service's settings. Exit 0: OK; 1: "
                               "mistakes (each printed with its line); 2: no file to check.")
    show = actions.add_parser("show", help="Print each service's effective settings and their origin (option, variable, file, default)",
                              description="Each service's effective settings and where each value came from; passwords and tokens "
                              "are masked. Name a service to see it alone, with that service's options, e.g. "
                              "`edgehive config show coordinator --queue-max 5`.")
    show.add_argument("service", nargs="?", choices=SHOWN, help="one service (default: all)")
    show.add_argument("options", nargs=argparse.REMAINDER, help="that service's settings options")
    for p, func in ((check, cmd_check), (show, cmd_show)):
        p.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS, help=configfile.CONFIG_HELP)
        p.set_defaults(func=func)


# -- check -------------------------------------------------------------------------------------


def _message(item: ErrorDetails, secret: bool) -> str:
    message = str(item.get("msg", "invalid")).removeprefix("Value error, ")
    message = "; ".join(part.strip() for part in message.splitlines() if part.strip() and "errors.pydantic.dev" not in part)
    value = item.get("input")
    shown = repr(value) if isinstance(value, (str, int, float)) and not isinstance(value, bool) else ""
    if shown and len(shown) <= 80 and shown not in message and not secret:
        message += f" (got {shown})"
    return message


def _is_secret(name: str) -> bool:
    return any(word in name for word in ("password", "token", "users", "mqtt_url", "source"))


def _file_only(model: type[EnvSettings], values: dict[str, Any]) -> EnvSettings:
    """The model from the file's values and the defaults, whatever the environment says."""
    full = {name: values[name] if name in values else info.get_default(call_default_factory=True)
            for name, info in model.model_fields.items()}
    return model(**full)


def _model_problems(config: ConfigFile, model: type[EnvSettings], values: dict[str, configfile.Located],
                    skip: set[str]) -> list[Problem]:
    try:
        _file_only(model, {name: spot.value for name, spot in values.items() if name not in skip})
    except ValidationError as error:
        problems = []
        for item in error.errors(include_url=False):
            name = str(item["loc"][0]) if item["loc"] else ""
            spot = values.get(name)
            line, where = (spot.line, spot.where) if spot else (1, name)
            problems.append(Problem(line, where, _message(item, _is_secret(name))))
        return problems
    return []


def _nested_problems(config: ConfigFile, section: str, adapter: TypeAdapter[Any]) -> list[Problem]:
    """Errors inside `cameras` or `fusion_groups`, each at the line of the key it is about."""
    spot = config.fields.get(section)
    if spot is None:
        return []
    try:
        adapter.validate_json(spot.value)
    except ValidationError as error:
        problems = []
        for item in error.errors(include_url=False):
            path = tuple(part for part in item["loc"] if part != "[key]")
            message = _unknown_key(section, path) if item["type"] == "extra_forbidden" else _message(item, False)
            problems.append(Problem(config.line_of((section, *path)), ".".join(str(p) for p in (section, *path)), message))
        return problems
    return []


def _unknown_key(section: str, path: tuple[str | int, ...]) -> str:
    """`unknown key (did you mean sensors?)` for a fusion group's or a pipeline stage's key."""
    from .coordinator.fusion import GroupConfig
    from .schemas.vision import StageConfig

    keys: list[str] = []
    if section == "fusion_groups" and len(path) == 2:
        keys = list(GroupConfig.model_fields)
    elif section == "cameras" and len(path) == 4 and path[1] == "stages":
        keys = list(StageConfig.model_fields)
    close = configfile.suggest(str(path[-1]), keys)
    return f"unknown key{close}" + (f"; expected {', '.join(keys)}" if keys else "")


def problems_of(config: ConfigFile) -> list[Problem]:
    """Every problem: the file's shape, then each service's settings, then cameras and groups."""
    from .cli import command_settings
    from .coordinator.fusion import GROUPS
    from .schemas.vision import CameraConfig
    from .sensors.camera import CameraSettings

    found = list(config.problems)
    nested = {"cameras": _nested_problems(config, "cameras", TypeAdapter(dict[str, CameraConfig])),
              "fusion_groups": _nested_problems(config, "fusion_groups", GROUPS)}
    skip = {name for name, problems in nested.items() if problems}
    for problems in nested.values():
        found += problems
    for model in dict.fromkeys(command_settings().values()):
        found += _model_problems(config, model, configfile.file_values(config, model, None), skip)
    for camera, capture in config.capture.items():
        found += _model_problems(config, CameraSettings, {"camera": configfile.Located(camera, 1, "cameras"), **capture}, skip)
    unique = {(p.line, p.where, p.message): p for p in found}
    return sorted(unique.values(), key=lambda p: (p.line, p.where))


def cmd_check(args: argparse.Namespace) -> int:
    config = configfile.active()
    if config is None:
        print(f"edgehive config check: {NO_FILE}", file=sys.stderr)
        return 2
    problems = problems_of(config)
    for problem in problems:
        print(problem.render(config.name))
    if problems:
        print(f"{config.name}: {len(problems)} mistake{'s' if len(problems) > 1 else ''}", file=sys.stderr)
        return 1
    cameras, groups = (len(orjson.loads(config.fields[name].value)) if name in config.fields else 0 for name in ("cameras", "fusion_groups"))
    print(f"{config.name}: OK ({len(config.fields)} settings, {cameras} cameras, {groups} fusion groups)")
    return 0


# -- show --------------------------------------------------------------------------------------

_URL_PASSWORD = re.compile(r"(\w+://[^:/@\s\"]*:)[^@\s\"]+@")
_USER_PASSWORD = re.compile(r"(^|[\s,])([^:\s,]+):([^:\s,]+)")


def mask(name: str, value: Any) -> str:
    """A value fit to print: passwords in URLs and account lists, tokens and passwords hidden."""
    text = str(value).lower() if isinstance(value, bool) else str(value)
    if not text:
        return '""'
    if "password" in name or "token" in name:
        return "***"
    if name == "broker_users":
        return _USER_PASSWORD.sub(r"\1\2:***", text)
    return _URL_PASSWORD.sub(r"\1***@", text)


def origin(name: str, options: argparse.Namespace | None, from_file: dict[str, configfile.Located], config_name: str) -> str:
    if options is not None and getattr(options, f"setting_{name}", None) is not None:
        return f"option --{name.replace('_', '-')}"
    if configfile.env_is_set(name):
        return f"variable {env_name(name)}"
    spot = from_file.get(name)
    if spot is not None:
        return f"file {config_name}:{spot.line} ({spot.where})"
    return "default"


def _block(title: str, model: type[EnvSettings], fields: list[str], options: argparse.Namespace | None,
           config: ConfigFile | None, camera: str | None = None) -> list[str]:
    overrides = {"camera": camera} if camera else {}
    settings = load_settings(model, options, **overrides)
    from_file = configfile.file_values(config, model, camera or getattr(settings, "camera", None) or None) if config else {}
    if camera and config is not None:
        from_file["camera"] = configfile.Located(camera, config.line_of(("cameras", camera)), f"cameras.{camera}")
    name = config.name if config else ""
    width = max(len(f) for f in fields)
    values = {field: mask(field, getattr(settings, field)) for field in fields}
    column = min(max(len(v) for v in values.values()), 40)
    lines = [title]
    for field in fields:
        lines.append(f"  {field:<{width}}  {values[field]:<{column}}  [{origin(field, options, from_file, name)}]")
    return lines


def cmd_show(args: argparse.Namespace) -> int:
    from .cli import settings_model
    from .settings import BrokerSettings

    models = {name: BrokerSettings if name == "broker" else settings_model(name) for name in ([args.service] if args.service else SHOWN)}
    options = None
    if args.service:
        parser = argparse.ArgumentParser(prog=f"edgehive config show {args.service}")
        parser.add_argument("--config", metavar="FILE", help=configfile.CONFIG_HELP)
        add_settings_options(parser, models[args.service])
        options = parser.parse_args(args.options)
        if options.config:
            configfile.use(options.config)
    config = configfile.active()
    if config is not None:
        config.check_structure()
    common = list(CommonSettings.model_fields)
    out = [f"config file: {config.name}" if config else f"config file: none ({NO_FILE})"]
    if not args.service:
        out += _block("common (every service)", CommonSettings, common, None, config)
    for service, model in models.items():
        fields = list(model.model_fields) if args.service else [f for f in model.model_fields if f not in common]
        if not fields:
            continue
        cameras: list[str | None] = list(config.capture) if service == "camera" and config and not (options and options.setting_camera) else []
        for camera in cameras or [None]:
            title = f"{service} {camera} (edgehive camera --camera {camera})" if camera else service
            out += _block(title, model, fields, options, config, camera)
    print("\n".join(out))
    return 0
