"""Settings: `EDGEHIVE_*` environment variables, command-line options over them, and the broker URL."""

from __future__ import annotations

import argparse
import os
import socket

import pytest
from pydantic import Field, ValidationError

from edgehive.agents.settings import AgentSettings
from edgehive.coordinator.settings import CoordinatorSettings
from edgehive.settings import CommonSettings, MqttUrl, add_settings_options, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's own EDGEHIVE_* or balena variables must not leak into the defaults under test."""
    for key in list(os.environ):
        if key.upper().startswith("EDGEHIVE_") or key == "BALENA_DEVICE_UUID":
            monkeypatch.delenv(key)


def parse_args(model: type[CommonSettings], argv: list[str]) -> argparse.Namespace:
    """The namespace a CLI builds with the project's own option helper."""
    parser = argparse.ArgumentParser(prog="edgehive")
    add_settings_options(parser, model)
    return parser.parse_args(argv)


# -- MqttUrl -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "host", "port", "tls"),
    [
        ("mqtt://broker.local", "broker.local", 1883, False),
        ("mqtt://10.0.0.2:1884", "10.0.0.2", 1884, False),
        ("mqtts://broker.example", "broker.example", 8883, True),
        ("mqtts://broker.example:9883", "broker.example", 9883, True),
        ("tcp://h", "h", 1883, False),
        ("ssl://h", "h", 8883, True),
        ("mqtt://[::1]:1999", "::1", 1999, False),
    ],
)
def test_mqtt_url_parse(url: str, host: str, port: int, tls: bool) -> None:
    """Host, port and TLS come from the URL; the port defaults by scheme (1883 / 8883)."""
    parsed = MqttUrl.parse(url)
    assert (parsed.host, parsed.port, parsed.tls) == (host, port, tls)
    assert parsed.username is None and parsed.password is None


def test_mqtt_url_credentials_are_unescaped() -> None:
    """Passwords with `@` or `:` must be percent-escaped in the URL and arrive unescaped."""
    parsed = MqttUrl.parse("mqtts://al%20ice:p%40ss%3Aw%2Frd@broker:8884")
    assert (parsed.username, parsed.password) == ("al ice", "p@ss:w/rd")
    assert (parsed.host, parsed.port, parsed.tls) == ("broker", 8884, True)


def test_mqtt_url_user_without_password() -> None:
    """`mqtt://user@host` names a user and no password."""
    parsed = MqttUrl.parse("mqtt://sensor@h")
    assert (parsed.username, parsed.password) == ("sensor", None)


@pytest.mark.parametrize("url", ["mqtt://", "mqtt://:1883", "mqtts://user:pw@", "http://broker", "ws://broker:9001",
                                 "broker:1883", "", "mqtt://h:notaport", "mqtt://h:99999"])
def test_mqtt_url_invalid(url: str) -> None:
    """A missing host, an unknown scheme or a bad port is a clear ValueError at start-up."""
    with pytest.raises(ValueError):
        MqttUrl.parse(url)


def test_mqtt_url_redacted_hides_password() -> None:
    """Banners and logs show who connects where, never the password."""
    parsed = MqttUrl.parse("mqtts://alice:s3cr%40t@broker:8883")
    text = parsed.redacted()
    assert "s3cr" not in text and "%40" not in text
    assert text == "mqtts://alice:***@broker:8883"
    assert MqttUrl.parse("mqtt://h").redacted() == "mqtt://h:1883"


# -- CommonSettings ----------------------------------------------------------------------------


def test_defaults_without_balena() -> None:
    """A bare start on a laptop: local broker, default prefix, host name as node id."""
    settings = CommonSettings()
    assert settings.mqtt_url == "mqtt://127.0.0.1:1883"
    assert settings.prefix == "edgehive/v1"
    assert settings.node_id == socket.gethostname()
    assert settings.broker == MqttUrl(host="127.0.0.1", port=1883)


def test_node_id_defaults_to_balena_uuid(monkeypatch: pytest.MonkeyPatch) -> None:
    """On balenaOS the device UUID names the node."""
    monkeypatch.setenv("BALENA_DEVICE_UUID", "5a1c0ffee0ddba11")
    assert CommonSettings().node_id == "5a1c0ffee0ddba11"


def test_explicit_node_id_beats_balena(monkeypatch: pytest.MonkeyPatch) -> None:
    """EDGEHIVE_NODE_ID is the user's explicit choice and wins over the platform's UUID."""
    monkeypatch.setenv("BALENA_DEVICE_UUID", "5a1c0ffee0ddba11")
    monkeypatch.setenv("EDGEHIVE_NODE_ID", "kitchen-pi")
    assert CommonSettings().node_id == "kitchen-pi"


def test_env_vars_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """Containers are configured through EDGEHIVE_* variables."""
    monkeypatch.setenv("EDGEHIVE_MQTT_URL", "mqtts://u:p@broker.example")
    monkeypatch.setenv("EDGEHIVE_PREFIX", "acme/fleet")
    monkeypatch.setenv("EDGEHIVE_NODE_ID", "pi-7")
    monkeypatch.setenv("EDGEHIVE_HEARTBEAT_S", "2.5")
    monkeypatch.setenv("EDGEHIVE_LOG_LEVEL", "DEBUG")
    settings = CommonSettings()
    assert (settings.mqtt_url, settings.prefix, settings.node_id) == ("mqtts://u:p@broker.example", "acme/fleet", "pi-7")
    assert settings.heartbeat_s == 2.5
    assert settings.log_level == "DEBUG"
    assert settings.broker == MqttUrl(host="broker.example", port=8883, tls=True, username="u", password="p")


def test_bad_url_in_env_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """A typo in the broker URL stops the process at start with the field named."""
    monkeypatch.setenv("EDGEHIVE_MQTT_URL", "http://broker")
    with pytest.raises(ValidationError, match="mqtt_url"):
        CommonSettings()


@pytest.mark.parametrize("prefix", ["edgehive/+/v1", "fleet/#", "#", "/", ""])
def test_prefix_with_wildcards_or_empty_is_refused(monkeypatch: pytest.MonkeyPatch, prefix: str) -> None:
    """A wildcard in the prefix would make every published topic invalid."""
    monkeypatch.setenv("EDGEHIVE_PREFIX", prefix)
    with pytest.raises(ValidationError, match="prefix"):
        CommonSettings()


def test_prefix_with_nul_is_refused() -> None:
    """NUL is illegal in MQTT topics; it can only come from code (env vars cannot hold it)."""
    with pytest.raises(ValidationError, match="prefix"):
        CommonSettings(prefix="a\x00b")


@pytest.mark.parametrize(("given", "kept"), [("acme/fleet/", "acme/fleet"), ("/acme/fleet", "acme/fleet"), ("x//", "x")])
def test_prefix_slashes_are_stripped(monkeypatch: pytest.MonkeyPatch, given: str, kept: str) -> None:
    """`acme/fleet/` is what people type; it means `acme/fleet`."""
    monkeypatch.setenv("EDGEHIVE_PREFIX", given)
    assert CommonSettings().prefix == kept


def test_heartbeat_must_be_positive(monkeypatch: pytest.MonkeyPatch) -> None:
    """A zero heartbeat would spin the agent and break liveness arithmetic."""
    monkeypatch.setenv("EDGEHIVE_HEARTBEAT_S", "0")
    with pytest.raises(ValidationError, match="heartbeat_s"):
        CommonSettings()


# -- command line --------------------------------------------------------------------------------


def test_every_field_is_a_documented_option() -> None:
    """Each setting is also a command-line option whose help names its variable."""
    parser = argparse.ArgumentParser(prog="edgehive")
    add_settings_options(parser, CoordinatorSettings)
    text = parser.format_help()
    for name in CoordinatorSettings.model_fields:
        assert "--" + name.replace("_", "-") in text
        assert "EDGEHIVE_" + name.upper() in text


def test_options_override_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """An option overrides the environment for one run; unset options leave the env in charge."""
    monkeypatch.setenv("EDGEHIVE_MQTT_URL", "mqtt://from-env")
    monkeypatch.setenv("EDGEHIVE_NODE_ID", "env-node")
    monkeypatch.setenv("EDGEHIVE_PREFIX", "env/prefix")
    args = parse_args(CommonSettings, ["--mqtt-url", "mqtts://from-cli:8884", "--prefix", "cli/prefix/", "--heartbeat-s", "0.5"])
    settings = load_settings(CommonSettings, args)
    assert settings.mqtt_url == "mqtts://from-cli:8884"
    assert settings.prefix == "cli/prefix"
    assert settings.heartbeat_s == 0.5
    assert settings.node_id == "env-node"


def test_explicit_overrides_beat_options() -> None:
    """Code that forces a value (tests, `edgehive up`) wins over both; None overrides are ignored."""
    args = parse_args(CommonSettings, ["--node-id", "cli-node", "--prefix", "cli/p"])
    settings = load_settings(CommonSettings, args, node_id="forced", prefix=None)
    assert settings.node_id == "forced"
    assert settings.prefix == "cli/p"


def test_no_options_means_env_and_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    """A namespace with nothing set changes nothing."""
    monkeypatch.setenv("EDGEHIVE_PREFIX", "env/prefix")
    settings = load_settings(CommonSettings, parse_args(CommonSettings, []))
    assert settings.prefix == "env/prefix"
    assert settings.mqtt_url == "mqtt://127.0.0.1:1883"


def test_bad_option_is_refused() -> None:
    """Options are validated exactly like env vars."""
    args = parse_args(CommonSettings, ["--prefix", "fleet/#"])
    with pytest.raises(ValidationError, match="prefix"):
        load_settings(CommonSettings, args)


def test_a_variable_is_read_whatever_its_case(monkeypatch: pytest.MonkeyPatch) -> None:
    """Names match without regard to case, as they did under pydantic-settings: `edgehive_prefix` counts."""
    monkeypatch.setenv("edgehive_prefix", "lower/case")
    monkeypatch.setenv("EDGEHIVE_HEARTBEAT_S", "2")
    settings = CommonSettings()
    assert (settings.prefix, settings.heartbeat_s) == ("lower/case", 2.0)


def test_an_empty_variable_is_a_value_not_an_absence(monkeypatch: pytest.MonkeyPatch) -> None:
    """`EDGEHIVE_SLOTS=` is the empty text, which a number refuses; it does not fall back to the default."""
    monkeypatch.setenv("EDGEHIVE_SLOTS", "")
    with pytest.raises(ValidationError, match="slots"):
        AgentSettings()
    monkeypatch.setenv("EDGEHIVE_SLOTS", "lots")
    with pytest.raises(ValidationError, match="slots"):
        AgentSettings()


def test_a_field_a_variable_cannot_hold_is_refused_when_the_model_is_made() -> None:
    """A variable holds text: a list or mapping field would need rules no source here has, so
    settings that carry structure take JSON text (cameras, fusion groups) and the model says so."""
    with pytest.raises(TypeError, match="tags_list"):

        class Wrong(CommonSettings):
            tags_list: list[str] = Field(default_factory=list)


# -- agent and coordinator settings ------------------------------------------------------------


def test_agent_slots_default_to_twice_workers() -> None:
    """slots=0 means 2 × workers: one running, one prefetched per worker."""
    assert AgentSettings(workers=3).effective_slots == 6
    assert AgentSettings(workers=3, slots=5).effective_slots == 5
    assert AgentSettings().workers == (os.cpu_count() or 1)


def test_agent_settings_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Agent-specific variables, including the comma-separated tag list."""
    monkeypatch.setenv("EDGEHIVE_WORKERS", "2")
    monkeypatch.setenv("EDGEHIVE_SLOTS", "7")
    monkeypatch.setenv("EDGEHIVE_TAGS", " camera, outdoor,, ")
    settings = AgentSettings()
    assert (settings.workers, settings.effective_slots) == (2, 7)
    assert settings.tag_list == ["camera", "outdoor"]


@pytest.mark.parametrize(("tags", "expected"), [("", []), (",", []), ("a", ["a"]), ("a,b , c", ["a", "b", "c"])])
def test_agent_tag_list(tags: str, expected: list[str]) -> None:
    """Blank entries and whitespace never become tags."""
    assert AgentSettings(tags=tags).tag_list == expected


def test_agent_workers_bounds() -> None:
    """Zero workers could never run a job."""
    with pytest.raises(ValidationError, match="workers"):
        AgentSettings(workers=0)


def test_coordinator_derived_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    """dead_after = 3 × heartbeat and lease = 2 × heartbeat unless set."""
    default = CoordinatorSettings()
    assert (default.dead_after, default.lease) == (3.0, 2.0)
    monkeypatch.setenv("EDGEHIVE_HEARTBEAT_S", "2")
    scaled = CoordinatorSettings()
    assert (scaled.dead_after, scaled.lease) == (6.0, 4.0)
    monkeypatch.setenv("EDGEHIVE_DEAD_AFTER_S", "10")
    monkeypatch.setenv("EDGEHIVE_LEASE_S", "1.5")
    explicit = CoordinatorSettings()
    assert (explicit.dead_after, explicit.lease) == (10.0, 1.5)


@pytest.mark.parametrize(("groups", "said"), [
    ("[]", "fusion_groups: (top): Input should be an object"),
    ('{"room": {"quantity": "temperature", "window_s": -1}}', "fusion_groups: room.window_s: Input should be greater than 0"),
    ('{"room": {"quantity": "temperature", "window_s": 1, "window_count": 5}}', "fusion_groups: room: give window_s or window_count, not both"),
    ("/no/such/groups.json", "fusion_groups: cannot read /no/such/groups.json: No such file or directory"),
])
def test_bad_fusion_groups_say_where_and_what(groups: str, said: str) -> None:
    """A JSON array is JSON, not a file name; each mistake is named by its place, without
    pydantic's generic type names (`dict[constrained-str,...]`)."""
    with pytest.raises(ValidationError) as caught:
        CoordinatorSettings(fusion_groups=groups)
    text = str(caught.value)
    assert said in text and "validation error for dict[" not in text, text
