"""`edgehive.yml`: every setting in one YAML file, in sections, read by the same settings models.

Precedence, highest first: a command-line option, an `EDGEHIVE_*` variable, this file, the
default. The file is a source just below the environment (`file_source`, which
edgehive/envsettings.py asks), so the models validate it exactly as they validate variables,
and a value means in the file what it means in the variable: a scalar is handed over as its
text (`influx_version: 2` is the variable's `2`, `i2c_address: 0x76` stays `0x76`).

Which file: the command line's `--config FILE`, else `EDGEHIVE_CONFIG` (a path), else
`EDGEHIVE_CONFIG_YAML` (the YAML itself, for balena, which mounts no files), else
`./edgehive.yml` when the command line finds one. Library code that builds a settings model
reads only the two variables.

The sections map onto the models' fields (`SECTIONS`); `cameras` and `fusion_groups` are YAML
mappings that reach the coordinator as the JSON its `cameras`/`fusion_groups` settings take,
and a camera's `source`, `fps`, ... reach `edgehive camera --camera <id>`. Every node keeps its
line, so a mistake is reported as `edgehive.yml:12: coordinator.queue_max: ...`.

PyYAML is imported only when a file is used: a service started without one loads nothing more.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from pydantic import BaseModel

from .errors import EdgehiveError

if TYPE_CHECKING:
    from yaml.nodes import MappingNode, Node

CONFIG_ENV = "EDGEHIVE_CONFIG"
CONFIG_YAML_ENV = "EDGEHIVE_CONFIG_YAML"
DEFAULT_FILE = "edgehive.yml"
CONFIG_HELP = (f"YAML config file (default: ${CONFIG_ENV}, else the YAML in ${CONFIG_YAML_ENV}, else ./{DEFAULT_FILE} when present); "
               "options and EDGEHIVE_* variables override it")

# section → {key in the file: settings field}. tests/test_config.py holds this to the models:
# every field of every command's settings is reachable, each in exactly one place.
SECTIONS: dict[str, dict[str, str]] = {
    "mqtt": {"url": "mqtt_url", "prefix": "prefix", "ca_file": "mqtt_ca_file", "cert_file": "mqtt_cert_file",
             "key_file": "mqtt_key_file", "client": "mqtt_client", "max_payload_bytes": "max_payload_bytes"},
    "node": {"id": "node_id", "log_level": "log_level", "log_format": "log_format", "heartbeat_s": "heartbeat_s"},
    "broker": {"users": "broker_users"},
    "coordinator": {"id": "coordinator_id"} | {name: name for name in (
        "dead_after_s", "lease_s", "max_attempts", "queue_max", "finished_max", "stats_interval_s", "state_dir", "default_model",
        "camera_models", "hand_up", "job_states", "max_frame_bytes", "fusion_queue_max", "fusion_window_max_readings", "fusion_grace_s",
        "sensor_max_future_s", "sensor_max_age_s", "ha_discovery_prefix", "ha_max_node_devices", "forget_after_s", "leader_lease_s",
        "standby_readings_s")},
    "agent": {name: name for name in (
        "workers", "slots", "tags", "models_dir", "models", "backend", "onnx_providers", "tensorrt_cache_dir", "inference_threads",
        "snapshot_interval_s", "host_root", "drain_timeout_s", "prefetch_wait_max_s")},
    "sensor": {"id": "sensor", "type": "sensor_type", "rate_hz": "sensor_rate_hz", "noise_std": "sensor_noise_std",
               "bias": "sensor_bias", "drift_per_s": "sensor_drift_per_s", "dropout": "sensor_dropout",
               "stuck_after_s": "sensor_stuck_after_s", "spike_probability": "sensor_spike_probability",
               "spike_magnitude": "sensor_spike_magnitude", "seed": "sensor_seed", "batch": "sensor_batch",
               "duration_s": "sensor_duration_s", "w1_devices_dir": "w1_devices_dir", "i2c_bus": "i2c_bus", "i2c_address": "i2c_address"},
    "sink": {name.removeprefix("sink_"): name for name in (
        "influx_url", "influx_version", "influx_token", "influx_org", "influx_bucket", "influx_database", "influx_retention_policy",
        "influx_username", "influx_password", "influx_gzip", "influx_timeout_s", "telemetry_file", "telemetry_file_max_bytes",
        "spool_dir", "spool_max_bytes", "sink_batch_size", "sink_flush_s", "sink_retry_max_s", "sink_stats_s")},
    "frigate": {name.removeprefix("frigate_"): name for name in (
        "frigate_topic_prefix", "frigate_cameras", "frigate_labels", "frigate_camera_prefix", "frigate_model", "frigate_min_score",
        "frigate_confirm_labels", "frigate_snapshot_wait_s", "frigate_snapshot_max_age_s", "frigate_job_timeout_s",
        "frigate_max_snapshot_bytes", "frigate_queue_max", "frigate_url", "frigate_http_timeout_s", "frigate_sub_label_confirmed",
        "frigate_sub_label_unconfirmed", "frigate_user", "frigate_password", "frigate_cookie_name", "frigate_ca_file",
        "frigate_tls_verify")},
    "up": {name: name for name in ("agents", "embedded_broker", "listen", "status_every_s", "demo_camera", "sink", "demo_sensors")},
}
CAMERAS, FUSION_GROUPS = "cameras", "fusion_groups"
# A camera entry: what `edgehive camera` captures (its settings fields) and what the coordinator
# runs on its frames (CameraConfig, the `cameras` setting).
CAMERA_CAPTURE = ("source", "fps", "jpeg_quality", "width", "height", "loop", "source_retry_max_s", "direct")
CAMERA_DETECTION = ("model", "labels", "min_score", "tiles", "stages")
# camera_models: `{door: face}` is the variable's `door=face`; lists are the variables' comma lists.
_PAIRS = {"camera_models"}


@dataclass(frozen=True)
class Problem:
    """One mistake in the file, where it is and what is expected."""

    line: int
    where: str  # the key's dotted path, e.g. coordinator.queue_max
    message: str

    def render(self, name: str) -> str:
        return f"{name}:{self.line}: {self.where}: {self.message}" if self.where else f"{name}:{self.line}: {self.message}"


@dataclass(frozen=True)
class Located:
    """A value for a settings field, and where in the file it was written."""

    value: Any
    line: int
    where: str


class ConfigFileError(EdgehiveError):
    """The file cannot be read, is not YAML, or names keys no setting has: one line per problem."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


@dataclass
class ConfigFile:
    """A parsed file: field values with their lines, each camera's capture settings, problems."""

    name: str  # the path as given, or the variable that held the YAML
    fields: dict[str, Located] = field(default_factory=dict)
    capture: dict[str, dict[str, Located]] = field(default_factory=dict)  # camera id → CameraSettings fields
    problems: list[Problem] = field(default_factory=list)
    root: Node | None = None

    def line_of(self, path: tuple[str | int, ...]) -> int:
        """The line of the deepest key (or list item) on `path` that the file has."""
        node = self.root
        line = node.start_mark.line + 1 if node is not None else 1
        for part in path:
            found = _child(node, part)
            if found is None:
                break
            line, node = found
        return line

    def check_structure(self) -> None:
        """Raise ConfigFileError when the file has problems that no model would see."""
        if self.problems:
            raise ConfigFileError([p.render(self.name) for p in self.problems])


def _child(node: Node | None, part: str | int) -> tuple[int, Node] | None:
    """A mapping's value under key `part` (with the key's line), or a list's item `part`."""
    from yaml.nodes import MappingNode, SequenceNode

    if isinstance(node, MappingNode):
        for key, value in node.value:
            if key.value == str(part):
                return key.start_mark.line + 1, value
    elif isinstance(node, SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
        item: Node = node.value[part]
        return item.start_mark.line + 1, item
    return None


# -- reading -----------------------------------------------------------------------------------


def suggest(word: str, choices: list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def _entries(node: MappingNode, where: str, problems: list[Problem]) -> list[tuple[str, Node, int]]:
    """A mapping's (key, value node, line), duplicates reported (YAML would keep the last silently)."""
    seen: dict[str, int] = {}
    out = []
    for key_node, value_node in node.value:
        key, line = str(key_node.value), key_node.start_mark.line + 1
        path = f"{where}.{key}" if where else key
        if key in seen:
            problems.append(Problem(line, path, f"given twice (first on line {seen[key]})"))
            continue
        seen[key] = line
        out.append((key, value_node, line))
    return out


def _setting_value(node: Node, path: str, problems: list[Problem], pairs: bool) -> Any:
    """A scalar's own text, as a variable would hold it; a list of scalars joined with commas
    (tags, models, broker users); a mapping `{door: face}` as `door=face` where `pairs`."""
    from yaml.nodes import MappingNode, ScalarNode, SequenceNode

    if isinstance(node, ScalarNode):
        return None if node.tag.endswith(":null") else node.value
    if isinstance(node, SequenceNode) and all(isinstance(item, ScalarNode) for item in node.value):
        return ",".join(item.value for item in node.value)
    if pairs and isinstance(node, MappingNode) and all(isinstance(k, ScalarNode) and isinstance(v, ScalarNode) for k, v in node.value):
        return ",".join(f"{k.value}={v.value}" for k, v in node.value)
    problems.append(Problem(node.start_mark.line + 1, path, "expected a single value" + (", a list of values or a mapping" if pairs else
                                                                                           " or a list of values")))
    return None


def _where_else(key: str, section: str) -> str:
    homes = [name for name, keys in SECTIONS.items() if key in keys and name != section]
    if key in CAMERA_CAPTURE or key in CAMERA_DETECTION:
        homes.append("cameras.<camera id>")
    return f" ({key} belongs in {' or '.join(homes)})" if homes else ""


def parse(text: str, name: str) -> ConfigFile:
    """The file's settings and every problem found in its shape; never raises for its content."""
    import yaml
    from yaml.nodes import MappingNode, ScalarNode

    config = ConfigFile(name)
    problems = config.problems
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        problems.append(Problem(mark.line + 1 if mark else 1, "", f"not valid YAML: {error.problem or error}"))
        return config
    except yaml.YAMLError as error:
        problems.append(Problem(1, "", f"not valid YAML: {error}"))
        return config
    if root is None or (isinstance(root, ScalarNode) and root.tag.endswith(":null")):
        return config
    config.root = root
    if not isinstance(root, MappingNode):
        problems.append(Problem(root.start_mark.line + 1, "", f"expected a mapping of sections ({', '.join(_TOP)})"))
        return config
    for section, node, line in _entries(root, "", problems):
        if section in SECTIONS:
            _read_section(config, section, node)
        elif section == CAMERAS:
            _read_cameras(config, node, line)
        elif section == FUSION_GROUPS:
            _read_groups(config, node, line)
        elif node.tag.endswith(":null"):
            continue
        else:
            problems.append(Problem(line, section, f"unknown section{suggest(section, _TOP)}; the sections are {', '.join(_TOP)}"))
    return config


_TOP = [*SECTIONS, CAMERAS, FUSION_GROUPS]


def _mapping(node: Node, path: str, what: str, problems: list[Problem]) -> MappingNode | None:
    from yaml.nodes import MappingNode

    if isinstance(node, MappingNode):
        return node
    if not node.tag.endswith(":null"):  # an empty section is allowed
        problems.append(Problem(node.start_mark.line + 1, path, f"expected a mapping of {what}"))
    return None


def _read_section(config: ConfigFile, section: str, node: Node) -> None:
    mapping = _mapping(node, section, f"{section} settings ({', '.join(SECTIONS[section])})", config.problems)
    if mapping is None:
        return
    keys = SECTIONS[section]
    for key, value_node, line in _entries(mapping, section, config.problems):
        path = f"{section}.{key}"
        if key not in keys:
            config.problems.append(Problem(line, path, f"unknown key{suggest(key, list(keys))}{_where_else(key, section)}"))
            continue
        value = _setting_value(value_node, path, config.problems, keys[key] in _PAIRS)
        if value is not None:
            config.fields[keys[key]] = Located(value, line, path)


def _read_cameras(config: ConfigFile, node: Node, line: int) -> None:

    mapping = _mapping(node, CAMERAS, "camera ids to their settings", config.problems)
    if mapping is None:
        return
    detection: dict[str, Any] = {}
    known = [*CAMERA_CAPTURE, *CAMERA_DETECTION]
    for camera, entry, _ in _entries(mapping, CAMERAS, config.problems):
        entry_map = _mapping(entry, f"{CAMERAS}.{camera}", f"camera settings ({', '.join(known)})", config.problems)
        if entry_map is None:
            detection[camera] = {}
            continue
        detect: dict[str, Any] = {}
        for key, value_node, key_line in _entries(entry_map, f"{CAMERAS}.{camera}", config.problems):
            path = f"{CAMERAS}.{camera}.{key}"
            if key in CAMERA_CAPTURE:
                value = _setting_value(value_node, path, config.problems, False)
                if value is not None:
                    config.capture.setdefault(camera, {})[key] = Located(value, key_line, path)
            elif key in CAMERA_DETECTION:
                detect[key] = plain(value_node)
            else:
                config.problems.append(Problem(key_line, path, f"unknown key{suggest(key, known)}; a camera takes {', '.join(known)}"))
        detection[camera] = detect
    if detection:
        config.fields["cameras"] = Located(_json(detection), line, CAMERAS)


def _read_groups(config: ConfigFile, node: Node, line: int) -> None:

    mapping = _mapping(node, FUSION_GROUPS, "group names to their settings", config.problems)
    if mapping is not None and mapping.value:
        groups = plain(mapping)
        config.fields["fusion_groups"] = Located(_json(groups), line, FUSION_GROUPS)


def plain(node: Node) -> Any:
    """A node as Python values, keys as written: YAML 1.1 would read the stage key `on` as True."""
    import yaml
    from yaml.nodes import MappingNode, SequenceNode

    if isinstance(node, MappingNode):
        return {str(key.value): plain(value) for key, value in node.value}
    if isinstance(node, SequenceNode):
        return [plain(item) for item in node.value]
    return yaml.SafeLoader("").construct_object(node)


def _json(value: Any) -> str:
    return orjson.dumps(value, default=str).decode()


# -- which file --------------------------------------------------------------------------------

_chosen: dict[str, str] = {}  # "path": set by the command line (--config, or ./edgehive.yml found there)
_cache: dict[tuple[str, str], ConfigFile] = {}


def use(path: str | None) -> None:
    """The command line's choice: `--config FILE`; without it the variables, then ./edgehive.yml."""
    if path is None and not any(_variables()) and Path(DEFAULT_FILE).is_file():
        path = DEFAULT_FILE
    _chosen.pop("path", None)
    if path is not None:
        _chosen["path"] = path


def reset() -> None:
    """Forget the command line's choice: back to the variables alone (tests, embedding code)."""
    _chosen.clear()


def _variables() -> tuple[str | None, str | None]:
    """EDGEHIVE_CONFIG (a path) and EDGEHIVE_CONFIG_YAML (the YAML), each None when unset or empty."""
    return os.environ.get("EDGEHIVE_CONFIG") or None, os.environ.get("EDGEHIVE_CONFIG_YAML") or None


def active() -> ConfigFile | None:
    """The file in use, parsed once per text; None when there is none."""
    path, text = _chosen.get("path"), None
    if path is None:
        path, text = _variables()
    if path:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as error:
            raise ConfigFileError([f"{path}: cannot read the config file: {error.strerror or error}"]) from None
        name = path
    elif text:
        name = CONFIG_YAML_ENV
    else:
        return None
    key = (name, text)
    if key not in _cache:
        _cache.clear()
        _cache[key] = parse(text, name)
    return _cache[key]


def child_env() -> dict[str, str]:
    """What a child process (`edgehive up`'s) needs to read the same file."""
    return {CONFIG_ENV: str(Path(_chosen["path"]).resolve())} if "path" in _chosen else {}


def env_is_set(field_name: str) -> bool:
    """Whether the field's variable is set (names are read case-insensitively, edgehive/envsettings.py)."""
    wanted = f"EDGEHIVE_{field_name}".lower()
    return any(name.lower() == wanted for name in os.environ)


def located(field_name: str) -> str | None:
    """`edgehive.yml:12 (coordinator.queue_max)` when the field's value comes from the file."""
    try:
        config = active()
    except ConfigFileError:
        return None
    if config is None or env_is_set(field_name):
        return None
    spot = config.fields.get(field_name)
    return f"{config.name}:{spot.line} ({spot.where})" if spot else None


# -- the settings source ---------------------------------------------------------------------


def file_values(config: ConfigFile, settings_cls: type[BaseModel], camera: str | None) -> dict[str, Located]:
    """The file's values for one model's fields; `camera` picks the entry whose capture settings
    a camera process takes."""
    fields = settings_cls.model_fields
    values = {name: spot for name, spot in config.fields.items() if name in fields}
    if camera is not None and "source" in fields:
        values.update(config.capture.get(camera, {}))
    return values


def file_source(settings_cls: type[BaseModel], state: dict[str, Any]) -> dict[str, Any]:
    """The config file's values for a settings model, below the environment and above the defaults.
    `state` holds what the options and variables set, which the file cannot change."""
    fields = settings_cls.model_fields
    if set(fields) <= set(state):
        return {}  # options and variables set everything (`config check` validates the file alone this way)
    config = active()
    if config is None:
        return {}
    config.check_structure()
    camera = None
    if "camera" in fields:  # edgehive camera: its id decides its entry
        camera = state.get("camera") or state.get("node_id") or _node_default(config)
    return {name: spot.value for name, spot in file_values(config, settings_cls, camera).items()}


def _node_default(config: ConfigFile) -> str:
    from .settings import default_node_id

    spot = config.fields.get("node_id")
    return str(spot.value) if spot else default_node_id()
