"""Coordinator settings (`EDGEHIVE_*`)."""

from __future__ import annotations

import re
import socket
from typing import Literal

from pydantic import Field, ValidationError, field_validator

from edgehive.schemas.base import IDENT_PATTERN
from edgehive.settings import CommonSettings

from .cameras import CameraConfigError, CameraPolicy, parse_cameras
from .fusion import GroupConfig, parse_groups, validate_groups


class CoordinatorSettings(CommonSettings):
    dead_after_s: float = Field(0.0, ge=0, description="Heartbeat silence after which a node is dead (0: 3 × heartbeat_s)")
    lease_s: float = Field(0.0, ge=0, description="How long a dispatched job may go unconfirmed by the node's heartbeats before it is re-queued (0: 2 × heartbeat_s)")
    max_attempts: int = Field(3, ge=1, le=100, description="Runs of one job before it is FAILED")
    queue_max: int = Field(10000, ge=1, description="Jobs waiting for a node; beyond it a submission is FAILED and reported on errors")
    finished_max: int = Field(10000, ge=100, le=10_000_000, description="Finished jobs whose final state is kept (about 250 bytes each) to answer a resubmitted id and ignore a late result; the oldest go first")
    stats_interval_s: float = Field(2.0, gt=0, description="Seconds between coordinator/stats messages")
    state_dir: str = Field(".edgehive", description="Folder for the job journal that survives a coordinator restart ('' to disable)")
    default_model: str = Field("objects", description="Model run on frames of cameras that name none (objects: people, vehicles, animals and more)")
    camera_models: str = Field("", description="Per-camera models, e.g. 'door=face,yard=person' (shorthand; EDGEHIVE_CAMERAS says more)")
    cameras: str = Field("", description="Per-camera detection: JSON {camera: {model, labels, min_score, tiles, stages}} ('*' for every camera) or a path to a JSON file")
    hand_up: bool = Field(False, description="At a site bridged to a hub: a job no node here can run goes up to the hub (hub/submit) "
                          "instead of FAILING, and its states and result come back down (README: Sites bridged to a hub)")
    job_states: Literal["all", "final"] = Field(
        "all", description="Job states published on jobs/{id}/state: all (REQUESTED, SCHEDULED, RUNNING, then DONE or FAILED) or "
        "final (only DONE or FAILED: one message per job, a job refused at the door included; cheaper per job, for submitters "
        "that wait only for the outcome)")
    max_frame_bytes: int = Field(8 * 1024 * 1024, ge=1024, description="Largest frame accepted; larger ones are refused on the errors topic")
    fusion_groups: str = Field("", description="Sensor groups to fuse: JSON {group: {quantity, sensors, window_s | window_count, method, config}} or a path to a JSON file")
    fusion_queue_max: int = Field(1000, ge=1, description="Closed fusion windows waiting across all groups; beyond it a window is refused on errors and counted")
    fusion_window_max_readings: int = Field(10000, ge=1, description="Readings one window holds; more are refused on errors and counted")
    fusion_grace_s: float = Field(0.25, ge=0, description="How long a time window stays open past its end for late readings")
    sensor_max_future_s: float = Field(5.0, ge=0, description="Readings stamped further ahead of the coordinator's clock are refused (clock skew)")
    ha_discovery_prefix: str = Field("homeassistant", description="Home Assistant MQTT discovery prefix: each node and the coordinator appear as "
                                     "devices, fused estimates and cameras as entities; configs are published again when Home Assistant "
                                     "sends 'online' on {prefix}/status ('' to disable)")
    ha_max_node_devices: int = Field(250, ge=0, description="Home Assistant devices for at most this many nodes (the first ones seen); a bigger "
                                     "fleet's other nodes get none, said once in the log (each device is 8 retained configs, ~6 KB; 0: no node devices)")
    forget_after_s: float = Field(7 * 86400.0, ge=0, description="A node dead this long (no heartbeat, not online) leaves the fleet: the coordinator "
                                  "forgets it, clears its retained capabilities and status, and removes its Home Assistant device (0: never); "
                                  "a camera not named in cameras that sent no frame this long since the coordinator started loses its "
                                  "Home Assistant entities")
    sensor_max_age_s: float = Field(300.0, gt=0, description="Readings stamped longer ago are refused as stale")
    coordinator_id: str = Field("", description="This coordinator's id, unique among the coordinators of the fleet: in its leadership claim, "
                                "its status on coordinator/members/{id} and its MQTT client id ('': the node id, i.e. the balena device UUID, else the host name)")
    leader_lease_s: float = Field(0.0, ge=0, description="How long the active coordinator's claim on coordinator/leader holds without a renewal; "
                                  "a standby takes over once it lapses (0: 2 × heartbeat_s)")
    standby_readings_s: float = Field(120.0, gt=0, le=3600, description="A standby keeps sensor readings this long, to rebuild at takeover "
                                      "the fusion window the active coordinator had open")

    @field_validator("coordinator_id")
    @classmethod
    def _valid_id(cls, value: str) -> str:
        if value and not re.fullmatch(IDENT_PATTERN, value):
            raise ValueError("coordinator_id: use letters, digits, '_', '.', ':', '-' (at most 64)")
        return value

    @property
    def coordinator_name(self) -> str:
        """The id in use: EDGEHIVE_COORDINATOR_ID, else the node id (stable across restarts, so the
        broker keeps this coordinator's persistent session), made into a valid id."""
        if self.coordinator_id:
            return self.coordinator_id
        name = re.sub(r"[^A-Za-z0-9_.:-]", "-", self.node_id or socket.gethostname()).lstrip("_.:-")[:64]
        return name or "coordinator"

    @property
    def leader_lease(self) -> float:
        return self.leader_lease_s or 2 * self.heartbeat_s

    @property
    def camera_model_map(self) -> dict[str, str]:
        pairs = (item.split("=", 1) for item in self.camera_models.split(",") if "=" in item)
        return {camera.strip(): model.strip() for camera, model in pairs}

    @field_validator("cameras")
    @classmethod
    def _valid_cameras(cls, value: str) -> str:
        try:
            parse_cameras(value)
        except CameraConfigError as error:
            raise ValueError(f"cameras: {error}") from None
        return value

    @property
    def camera_policy(self) -> CameraPolicy:
        return CameraPolicy(parse_cameras(self.cameras), self.camera_model_map, self.default_model)

    @field_validator("fusion_groups")
    @classmethod
    def _valid_groups(cls, value: str) -> str:
        try:
            validate_groups(parse_groups(value).values())
        except OSError as error:
            raise ValueError(f"fusion_groups: cannot read {value.strip()[:200]}: {error.strerror or error}") from None
        except ValidationError as error:  # pydantic's own text names its generic types: say where and what instead
            problems = ["{}: {}".format(".".join(str(p) for p in item["loc"] if p != "[key]") or "(top)", item["msg"].removeprefix("Value error, "))
                        for item in error.errors(include_url=False)[:3]]
            raise ValueError(f"fusion_groups: {'; '.join(problems)}") from None
        return value

    @property
    def fusion_group_map(self) -> dict[str, GroupConfig]:
        return parse_groups(self.fusion_groups)

    @property
    def dead_after(self) -> float:
        return self.dead_after_s or 3 * self.heartbeat_s

    @property
    def lease(self) -> float:
        return self.lease_s or 2 * self.heartbeat_s
