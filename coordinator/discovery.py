"""Home Assistant MQTT discovery: each sensor group's fused estimate, and each camera's annotated
snapshot and object count, appear in Home Assistant as entities of one `edgehive` device, with
no YAML written by anyone.

Pi fleets that fuse room sensors usually end in Home Assistant, and its MQTT integration reads
retained configs under `homeassistant/<component>/<object id>/config` (Zigbee2MQTT and Frigate
do the same). The state is the fusion result itself (`results/fusion/{group}`); the templates
pick the estimate, or roll/pitch/yaw for an IMU group, and ignore failed results. Availability
follows the coordinator's retained `coordinator/status`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import orjson

from edgehive.schemas import Topics
from edgehive.schemas.kinds import DETECT_KIND, FUSION_KIND
from edgehive.schemas.sensors import UNITS

from .fusion import GroupConfig

# Home Assistant device classes of the quantities it knows.
DEVICE_CLASSES = {"temperature": "temperature", "humidity": "humidity", "pressure": "atmospheric_pressure"}


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9_]+", "_", text.lower()).strip("_")


def _device(topics: Topics) -> dict[str, Any]:
    return {"identifiers": [f"edgehive_{_slug(topics.prefix)}"], "name": f"edgehive {topics.prefix}", "manufacturer": "edgehive", "model": "edge AI fleet"}


def camera_messages(ha_prefix: str, topics: Topics, camera: str, labels: Sequence[str] = ()) -> list[tuple[str, bytes]]:
    """A camera's annotated snapshot (`snapshots/{camera}`, a JPEG), its objects per frame, and,
    for each label its settings keep, how many of that label the last frame held (what a
    Frigate user automates on: "a person in the driveway")."""
    uid = f"edgehive_{_slug(topics.prefix)}_{_slug(camera)}"
    common = {"availability_topic": topics.coordinator_status, "payload_available": "online", "payload_not_available": "offline",
              "device": _device(topics)}
    snapshot = {"name": f"{camera} detections", "unique_id": f"{uid}_snapshot", "object_id": f"{uid}_snapshot",
                "topic": topics.snapshot(camera), **common}
    objects = {"name": f"{camera} objects", "unique_id": f"{uid}_objects", "object_id": f"{uid}_objects",
               "state_topic": topics.result(DETECT_KIND, camera), "state_class": "measurement", "unit_of_measurement": "objects",
               "value_template": "{% if value_json.ok %}{{ value_json.output.detections | length }}{% else %}{{ this.state }}{% endif %}",
               "json_attributes_topic": topics.result(DETECT_KIND, camera),
               "json_attributes_template": "{% if value_json.ok %}{{ {'labels': value_json.output.detections | map(attribute='label') | list, "
                                           "'model': value_json.output.model, 'node': value_json.node} | tojson }}{% else %}{}{% endif %}",
               **common}
    messages = [(f"{ha_prefix}/camera/{uid}_snapshot/config", orjson.dumps(snapshot)), (f"{ha_prefix}/sensor/{uid}_objects/config", orjson.dumps(objects))]
    for label in labels:
        object_id = f"{uid}_{_slug(label)}"
        count = {"name": f"{camera} {label}", "unique_id": object_id, "object_id": object_id,
                 "state_topic": topics.result(DETECT_KIND, camera), "state_class": "measurement", "unit_of_measurement": "objects",
                 "value_template": "{% if value_json.ok %}{{ value_json.output.detections | selectattr('label', 'equalto', "
                                   + orjson.dumps(label).decode() + ") | list | length }}{% else %}{{ this.state }}{% endif %}",
                 **common}
        messages.append((f"{ha_prefix}/sensor/{object_id}/config", orjson.dumps(count)))
    return messages


def discovery_messages(ha_prefix: str, topics: Topics, groups: dict[str, GroupConfig]) -> list[tuple[str, bytes]]:
    """(topic, retained config) for every entity of every group."""
    fleet = _slug(topics.prefix)
    device = _device(topics)
    out: list[tuple[str, bytes]] = []
    for name, group in sorted(groups.items()):
        state_topic = topics.result(FUSION_KIND, name)
        entities: list[tuple[str, str, dict[str, Any]]]
        if group.fusion_method == "imu":
            entities = [(f"{name}_{axis}", f"{name} {axis}", {"unit_of_measurement": "°", "value_template": _value(axis)})
                        for axis in ("roll", "pitch", "yaw")]
        else:
            unit = UNITS.get(group.quantity, (None,))[0]
            extra: dict[str, Any] = {"value_template": _value("estimate"), "json_attributes_topic": state_topic,
                                     "json_attributes_template": _ATTRIBUTES}
            if unit is not None:
                extra["unit_of_measurement"] = unit
            if group.quantity in DEVICE_CLASSES:
                extra["device_class"] = DEVICE_CLASSES[group.quantity]
            entities = [(name, f"{name} {group.quantity}", extra)]
        for object_id, title, extra in entities:
            uid = f"edgehive_{fleet}_{_slug(object_id)}"
            config = {
                "name": title, "unique_id": uid, "object_id": uid, "state_topic": state_topic, "state_class": "measurement",
                "availability_topic": topics.coordinator_status, "payload_available": "online", "payload_not_available": "offline",
                "device": device, **extra,
            }
            out.append((f"{ha_prefix}/sensor/{uid}/config", orjson.dumps(config)))
    return out


def _value(field: str) -> str:
    # A failed window has no output: keep the last state rather than logging a template error.
    return "{% if value_json.ok %}{{ value_json.output." + field + " | round(3) }}{% else %}{{ this.state }}{% endif %}"


_ATTRIBUTES = (
    "{% if value_json.ok %}{{ {'variance': value_json.output.variance, 'used': value_json.output.used, "
    "'rejected': value_json.output.rejected, 'window': value_json.output.window, 'node': value_json.node} | tojson }}"
    "{% else %}{}{% endif %}"
)
