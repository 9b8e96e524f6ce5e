"""Settings read from `EDGEHIVE_*` environment variables, each also a command-line option.

balena and Docker hand settings to containers as environment variables, so the
environment is the primary source; a command-line option overrides it for one run.
Every field has a default so that a bare `edgehive agent` works on a laptop. The same fields
can also come from a YAML config file, below the environment (edgehive/configfile.py). How a
model gathers its values from those sources is edgehive/envsettings.py.
"""

from __future__ import annotations

import argparse
import os
import socket
from collections.abc import Iterable
from typing import Any, Literal, TypeVar
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .envsettings import ENV_PREFIX, EnvSettings

__all__ = ["ENV_PREFIX", "BrokerSettings", "CommonSettings", "EnvSettings", "MqttUrl", "add_settings_options", "default_node_id",
           "env_name", "load_settings", "option_name", "topic_root"]


def default_node_id() -> str:
    """balena's device UUID when running on balenaOS, else the host name."""
    return os.environ.get("BALENA_DEVICE_UUID") or socket.gethostname()


class MqttUrl(BaseModel):
    """A parsed `mqtt://[user:pass@]host[:port]` or `mqtts://…` URL."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = None
    # TLS (mqtts://): the CA that signed the broker's certificate (default: the system's CAs), and
    # this client's certificate and key for a broker with `require_certificate true`.
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    # The paho client class (edgehive/pahoclient.py): fast where the installed paho allows, or plain.
    client: Literal["fast", "plain"] = "fast"

    @classmethod
    def parse(cls, url: str) -> MqttUrl:
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
            raise ValueError(f"unsupported MQTT URL scheme {parts.scheme!r} in {url!r}: use mqtt:// or mqtts://")
        if not parts.hostname:
            raise ValueError(f"MQTT URL {url!r} has no host")
        tls = parts.scheme in ("mqtts", "ssl")
        return cls(
            host=parts.hostname,
            port=parts.port or (8883 if tls else 1883),
            tls=tls,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )

    def redacted(self) -> str:
        """The URL without its password, for logs and banners."""
        user = f"{self.username}{':***' if self.password else ''}@" if self.username else ""
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{self.host}:{self.port}"


def topic_root(value: str, what: str) -> str:
    """A topic that others are put under (ours, Frigate's): its slashes at either end dropped, and
    refused when empty or holding a wildcard, which would make every subscription under it wrong."""
    value = value.strip("/")
    if not value or any(c in value for c in "#+\x00"):
        raise ValueError(f"{what} must be a non-empty topic without wildcards")
    return value


class CommonSettings(EnvSettings):
    """Settings every edgehive process reads: options over variables over the config file over defaults."""

    mqtt_url: str = Field("mqtt://127.0.0.1:1883", description="Broker URL: mqtt://[user:pass@]host[:port], mqtts:// for TLS")
    prefix: str = Field("edgehive/v1", description="Topic prefix shared by every part of one fleet")
    node_id: str = Field(default_factory=default_node_id, description="This device's id (default: balena device UUID, else host name)")
    log_level: str = Field("WARNING", description="Python logging level: DEBUG, INFO, WARNING, ERROR")
    log_format: str = Field("text", description="Log format: text (for people) or json (for log shippers)")
    max_payload_bytes: int = Field(65536, ge=256, description="Largest JSON control message accepted; larger ones are refused on the errors topic")
    heartbeat_s: float = Field(1.0, gt=0, description="Seconds between agent heartbeats (the coordinator derives liveness from it)")
    mqtt_ca_file: str = Field("", description="With mqtts://: PEM file of the CA that signed the broker's certificate (empty: the system's CAs)")
    mqtt_cert_file: str = Field("", description="With mqtts://: this client's PEM certificate, for a broker that requires client certificates")
    mqtt_key_file: str = Field("", description="With mqtts://: the private key of mqtt_cert_file (empty: the key is in that file)")
    mqtt_client: Literal["fast", "plain"] = Field(
        "fast", description="MQTT client: fast (paho with edgehive's faster reads, writes and acknowledgements; plain paho where "
        "the installed paho-mqtt lacks the internals they replace) or plain (paho as released)")

    @field_validator("mqtt_url")
    @classmethod
    def _valid_url(cls, value: str) -> str:
        MqttUrl.parse(value)
        return value

    @field_validator("prefix")
    @classmethod
    def _valid_prefix(cls, value: str) -> str:
        return topic_root(value, "prefix")

    @property
    def broker(self) -> MqttUrl:
        url = MqttUrl.parse(self.mqtt_url).model_copy(update={"client": self.mqtt_client})
        if not url.tls:
            return url
        return url.model_copy(update={"ca_file": self.mqtt_ca_file or None, "cert_file": self.mqtt_cert_file or None,
                                      "key_file": self.mqtt_key_file or None})


def parse_listen(text: str) -> tuple[str, int]:
    """`host:port` (`EDGEHIVE_LISTEN`, `--listen`); an empty host is every interface."""
    host, colon, port = text.strip().rpartition(":")
    if not colon or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected host:port, e.g. 0.0.0.0:1883 or 127.0.0.1:1883 (got {text[:80]!r})")
    return host.strip("[]") or "0.0.0.0", int(port)


class BrokerSettings(CommonSettings):
    """Settings of `edgehive broker` (the embedded amqtt broker)."""

    broker_users: str = Field("", description="Broker accounts, `user:password[:role[:id+id...]]` comma- or space-separated: "
                              "Mosquitto's password file and ACL in the broker image (broker/prepare.sh), the accounts of "
                              "`edgehive broker` (empty: anonymous); roles coordinator, sink, agent, camera, sensor, client (broker/acl)")


S = TypeVar("S", bound=EnvSettings)


def option_name(field: str) -> str:
    return "--" + field.replace("_", "-")


def env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


def _shown_default(info: Any) -> str:
    """A default as a user would type it: `true`, `2`, `computed`, or `empty` for an empty string
    (the word the descriptions use, `(empty: the system's CAs)`; the help used to end in `default ]`)."""
    if info.default_factory is not None:
        return "computed"
    value = info.default
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    if value == "":
        return "empty"
    return str(value)


def add_settings_options(parser: argparse.ArgumentParser, model: type[EnvSettings], fields: Iterable[str] | None = None) -> None:
    """One command-line option per settings field (only `fields`, when given: a tool lists just
    what it reads); the help names its environment variable. A boolean is a flag pair
    (`--sink` / `--no-sink`) rather than an option taking a value."""
    group = parser.add_argument_group("settings (each also an environment variable)")
    wanted = None if fields is None else set(fields)
    for name, info in model.model_fields.items():
        if wanted is not None and name not in wanted:
            continue
        # argparse expands %-formats in help text; a literal % in a description must be doubled.
        text = f"{info.description} (env {env_name(name)}, default: {_shown_default(info)})".replace("%", "%%")
        if info.annotation is bool:
            group.add_argument(option_name(name), dest=f"setting_{name}", default=None, action=argparse.BooleanOptionalAction, help=text)
        else:
            group.add_argument(option_name(name), dest=f"setting_{name}", default=None, metavar=name.split("_")[-1].upper(), help=text)


def load_settings(model: type[S], args: argparse.Namespace | None = None, **overrides: Any) -> S:
    """Environment first, then command-line options, then explicit overrides."""
    values: dict[str, Any] = {}
    if args is not None:
        for name in model.model_fields:
            value = getattr(args, f"setting_{name}", None)
            if value is not None:
                values[name] = value
    values.update({k: v for k, v in overrides.items() if v is not None})
    return model(**values)
