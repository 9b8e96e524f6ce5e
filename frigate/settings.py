"""Settings of `edgehive frigate` (`EDGEHIVE_FRIGATE_*`), the bridge that gives Frigate events a second opinion."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import orjson
from pydantic import Field, field_validator, model_validator

from edgehive.schemas.base import IDENT_PATTERN
from edgehive.settings import CommonSettings, topic_root

# Frigate labels the `objects` model names differently: these of its labels confirm them.
DEFAULT_CONFIRM_LABELS = '{"car": ["car", "vehicle"], "truck": ["vehicle", "car"], "bus": ["vehicle"], "motorcycle": ["vehicle"]}'


def _names(text: str) -> list[str]:
    return [item.strip() for item in re.split(r"[,\s]+", text) if item.strip()]


def parse_confirm_labels(text: str) -> dict[str, list[str]]:
    """`{"car": ["car", "vehicle"]}`: the edgehive labels that confirm a Frigate label (lower case)."""
    try:
        value = orjson.loads(text or "{}")
    except orjson.JSONDecodeError as error:
        raise ValueError(f"not JSON: {error}") from None
    if not isinstance(value, dict) or not all(isinstance(v, list) and all(isinstance(x, str) for x in v) for v in value.values()):
        raise ValueError('expected a JSON object of label lists, e.g. {"car": ["car", "vehicle"]}')
    return {str(k).strip().lower(): [x.strip().lower() for x in v] for k, v in value.items()}


class FrigateSettings(CommonSettings):
    """Where Frigate publishes, what the fleet runs on its snapshots, and what counts as confirmed."""

    frigate_topic_prefix: str = Field("frigate", description="Frigate's MQTT topic_prefix: events on {prefix}/events, snapshots on {prefix}/{camera}/{label}/snapshot")
    frigate_cameras: str = Field("", description="Frigate cameras to judge, comma-separated (empty: every camera); events of others are ignored, reported once each on errors, "
                                 "and the bridge clears the Home Assistant entities of cameras no longer listed")
    frigate_labels: str = Field("", description="Frigate labels to judge, comma-separated, e.g. person,car (empty: every label)")
    frigate_camera_prefix: str = Field("frigate.", description="Each Frigate camera's snapshots go to the fleet as edgehive camera {prefix}{camera} (frames/frigate.front_door): its EDGEHIVE_CAMERAS entry at the coordinator sets the model and pipeline")
    frigate_model: str = Field("", description="Model run on the snapshots, named in each frame (empty: the coordinator's EDGEHIVE_CAMERAS entry for the camera, else its default model); a pipeline's stages always come from EDGEHIVE_CAMERAS")
    frigate_min_score: float = Field(0.5, ge=0.0, le=1.0, description="Lowest edgehive score that confirms Frigate's label")
    frigate_confirm_labels: str = Field(DEFAULT_CONFIRM_LABELS, description="JSON {frigate label: [edgehive labels that confirm it]}; a label not named is confirmed by itself")
    frigate_snapshot_wait_s: float = Field(10.0, gt=0, le=600, description="How long an event waits for its snapshot before its verdict is ok:false")
    frigate_snapshot_max_age_s: float = Field(30.0, ge=0, le=3600, description="A snapshot received at most this long before the event counts as the event's (retained ones count from when they arrived)")
    frigate_job_timeout_s: float = Field(30.0, gt=0, le=3600, description="How long the fleet may take over one snapshot before the verdict is ok:false")
    frigate_max_snapshot_bytes: int = Field(8 * 1024 * 1024, ge=1024, description="Largest snapshot JPEG accepted; larger ones are refused on the errors topic")
    frigate_queue_max: int = Field(32, ge=1, le=10000, description="Events of one camera waiting for the fleet (one snapshot per camera is in flight at a time); beyond it an event's verdict is ok:false")
    frigate_url: str = Field("", description="Frigate's HTTP API, e.g. http://frigate:5000 (the unauthenticated port) or https://frigate:8971 (the authenticated one, with EDGEHIVE_FRIGATE_USER and EDGEHIVE_FRIGATE_PASSWORD): each verdict sets the event's sub label there (empty: off)")
    frigate_http_timeout_s: float = Field(5.0, gt=0, le=120, description="Timeout of each call to Frigate's HTTP API")
    frigate_user: str = Field("", description="Frigate user the bridge logs in as (POST /api/login) before setting sub labels, for the authenticated port 8971 (empty: no login, for port 5000)")
    frigate_password: str = Field("", description="Password of EDGEHIVE_FRIGATE_USER")
    frigate_cookie_name: str = Field("frigate_token", min_length=1, max_length=200, description="The cookie holding the token Frigate's login sets: Frigate's auth.cookie_name")
    frigate_ca_file: str = Field("", description="With an https:// EDGEHIVE_FRIGATE_URL: PEM file of the certificate, or of the CA that signed it, that Frigate's API serves (empty: the system's CAs)")
    frigate_tls_verify: bool = Field(True, description="With an https:// EDGEHIVE_FRIGATE_URL: check Frigate's certificate and host name; false accepts any certificate, Frigate's self-signed default included (not safe on a network you do not trust)")
    frigate_sub_label_confirmed: str = Field("confirmed", max_length=100, description="Sub label set on a confirmed event, with edgehive's score (empty: none)")
    frigate_sub_label_unconfirmed: str = Field("unconfirmed", max_length=100, description="Sub label set on an event edgehive did not confirm (empty: none)")
    ha_discovery_prefix: str = Field("homeassistant", description="Home Assistant MQTT discovery prefix: fused estimates and cameras appear as entities ('' to disable)")

    @field_validator("frigate_topic_prefix")
    @classmethod
    def _valid_topic_prefix(cls, value: str) -> str:
        return topic_root(value, "the topic prefix")

    @field_validator("frigate_camera_prefix")
    @classmethod
    def _valid_camera_prefix(cls, value: str) -> str:
        if value and not re.fullmatch(IDENT_PATTERN, value + "x"):
            raise ValueError("must be the start of an edgehive camera id: letters, digits, '_', '.', ':', '-'")
        return value

    @field_validator("frigate_cameras")
    @classmethod
    def _valid_cameras(cls, value: str) -> str:
        for camera in _names(value):
            if not re.fullmatch(IDENT_PATTERN, camera):
                raise ValueError(f"{camera[:64]!r} cannot be a camera name: letters, digits, '_', '.', ':', '-' (at most 64)")
        return value

    @field_validator("frigate_confirm_labels")
    @classmethod
    def _valid_confirm_labels(cls, value: str) -> str:
        parse_confirm_labels(value)
        return value

    @field_validator("frigate_url")
    @classmethod
    def _valid_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if value and (urlsplit(value).scheme not in ("http", "https") or not urlsplit(value).hostname):
            raise ValueError("must be an http:// or https:// URL, e.g. http://frigate:5000")
        return value

    @field_validator("frigate_cookie_name")
    @classmethod
    def _valid_cookie_name(cls, value: str) -> str:
        if not re.fullmatch(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+", value):
            raise ValueError("must be a cookie name: letters, digits and !#$%&'*+-.^_`|~, no spaces")
        return value

    @model_validator(mode="after")
    def _login_complete(self) -> FrigateSettings:
        if bool(self.frigate_user) != bool(self.frigate_password):
            given, missing = ("EDGEHIVE_FRIGATE_USER", "EDGEHIVE_FRIGATE_PASSWORD") if self.frigate_user else \
                ("EDGEHIVE_FRIGATE_PASSWORD", "EDGEHIVE_FRIGATE_USER")
            raise ValueError(f"{given} is set but {missing} is empty: Frigate's login needs both (set neither for port 5000)")
        if self.frigate_ca_file and not self.frigate_tls_verify:
            raise ValueError("EDGEHIVE_FRIGATE_CA_FILE is set but EDGEHIVE_FRIGATE_TLS_VERIFY is false: "
                             "trust Frigate's certificate with the file, or check no certificate, not both")
        return self

    @property
    def camera_list(self) -> list[str]:
        return _names(self.frigate_cameras)

    @property
    def label_list(self) -> list[str]:
        return [label.lower() for label in _names(self.frigate_labels)]

    @property
    def confirm_label_map(self) -> dict[str, list[str]]:
        return parse_confirm_labels(self.frigate_confirm_labels)
