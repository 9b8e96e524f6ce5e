"""Home Assistant MQTT discovery: each sensor group's fused estimate, and each camera's annotated
snapshot and object count, appear in Home Assistant as entities of the fleet's device (the
coordinator's), with no YAML written by anyone. Nodes and the coordinator's own counters are
coordinator/ha_devices.py's; both build their configs with `entity_config` here, as any other
edgehive part that shows entities in Home Assistant should.

Pi fleets that fuse room sensors usually end in Home Assistant, and its MQTT integration reads
retained configs under `homeassistant/<component>/<object id>/config` (Zigbee2MQTT and Frigate
do the same). The state is the fusion result itself (`results/fusion/{group}`); the templates
pick the estimate, or roll/pitch/yaw for an IMU group, and ignore failed results. Availability
follows the coordinator's retained `coordinator/status`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from edgehive import __version__
from edgehive.schemas import Topics
from edgehive.schemas.homeassistant import Message, entity_config, slug
from edgehive.schemas.kinds import DETECT_KIND, FUSION_KIND
from edgehive.schemas.sensors import UNITS

from .fusion import GroupConfig

# Home Assistant device classes of the quantities it knows.
DEVICE_CLASSES = {"temperature": "temperature", "humidity": "humidity", "pressure": "atmospheric_pressure"}

def fleet_id(topics: Topics) -> str:
    """The fleet device's identifier: the coordinator of this prefix, and the `via_device` of its nodes."""
    return f"edgehive_{slug(topics.prefix)}"


def fleet_device(topics: Topics) -> dict[str, Any]:
    return {"identifiers": [fleet_id(topics)], "name": f"edgehive {topics.prefix}", "manufacturer": "edgehive",
            "model": "edge AI fleet coordinator", "sw_version": __version__}


def camera_messages(ha_prefix: str, topics: Topics, camera: str, labels: Sequence[str] = ()) -> list[Message]:
    """A camera's annotated snapshot (`snapshots/{camera}`, a JPEG), its objects per frame, and,
    for each label its settings keep, how many of that label the last frame held (what a
    Frigate user automates on: "a person in the driveway")."""
    uid = f"edgehive_{slug(topics.prefix)}_{slug(camera)}"
    common = {"availability_topic": topics.coordinator_status, "payload_available": "online", "payload_not_available": "offline"}
    device = fleet_device(topics)
    snapshot = {"topic": topics.snapshot(camera), **common}
    objects = {"state_topic": topics.result(DETECT_KIND, camera), "state_class": "measurement", "unit_of_measurement": "objects",
               "value_template": "{% if value_json.ok %}{{ value_json.output.detections | length }}{% else %}{{ this.state }}{% endif %}",
               "json_attributes_topic": topics.result(DETECT_KIND, camera),
               "json_attributes_template": "{% if value_json.ok %}{{ {'labels': value_json.output.detections | map(attribute='label') | list, "
                                           "'model': value_json.output.model, 'node': value_json.node} | tojson }}{% else %}{}{% endif %}",
               **common}
    messages = [entity_config(ha_prefix, "camera", f"{uid}_snapshot", f"{camera} detections", device, **snapshot),
                entity_config(ha_prefix, "sensor", f"{uid}_objects", f"{camera} objects", device, **objects)]
    for label in labels:
        count = {"state_topic": topics.result(DETECT_KIND, camera), "state_class": "measurement", "unit_of_measurement": "objects",
                 "value_template": "{% if value_json.ok %}{{ value_json.output.detections | selectattr('label', 'equalto', "
                                   + orjson.dumps(label).decode() + ") | list | length }}{% else %}{{ this.state }}{% endif %}",
                 **common}
        messages.append(entity_config(ha_prefix, "sensor", f"{uid}_{slug(label)}", f"{camera} {label}", device, **count))
    return messages


def discovery_messages(ha_prefix: str, topics: Topics, groups: dict[str, GroupConfig]) -> list[Message]:
    """(topic, retained config) for every entity of every group."""
    fleet = slug(topics.prefix)
    device = fleet_device(topics)
    out: list[Message] = []
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
            uid = f"edgehive_{fleet}_{slug(object_id)}"
            out.append(entity_config(ha_prefix, "sensor", uid, title, device, state_topic=state_topic, state_class="measurement",
                                     availability_topic=topics.coordinator_status, payload_available="online",
                                     payload_not_available="offline", **extra))
    return out


def _value(field: str) -> str:
    # A failed window has no output: keep the last state rather than logging a template error.
    return "{% if value_json.ok %}{{ value_json.output." + field + " | round(3) }}{% else %}{{ this.state }}{% endif %}"


_ATTRIBUTES = (
    "{% if value_json.ok %}{{ {'variance': value_json.output.variance, 'used': value_json.output.used, "
    "'rejected': value_json.output.rejected, 'window': value_json.output.window, 'node': value_json.node} | tojson }}"
    "{% else %}{}{% endif %}"
)
