"""Home Assistant devices for the fleet, as Zigbee2MQTT shows its bridge and each Zigbee device:
one device per node (online, CPU, memory, temperature, throttled, jobs per second, service time,
jobs in flight) and one for the coordinator (online, nodes online, queue, jobs in flight, jobs per
second, failures).

Home Assistant reads every state straight from what edgehive already publishes: a node's
entities from its own heartbeats (`nodes/{node}/heartbeat`) and retained status
(`nodes/{node}/status`), the coordinator's from `coordinator/stats` and `coordinator/status`.
So the coordinator publishes nothing per heartbeat: only the retained configs, when a node is
first seen (its birth certificate, `nodes/{node}/capabilities`), when its device changes (a new
agent version), when Home Assistant comes online, and an empty retained payload on each of
them when the node leaves the fleet (the registry forgets it, coordinator/registry.py).

A node's entities are available while its retained status says `online`: the agent publishes it
at every connect, the broker publishes its will (`offline`) when it drops, and the coordinator
publishes `offline` when its heartbeats stop for `dead_after`. Heartbeat-fed entities also
expire after `dead_after` without a heartbeat, for when nobody is left to say so.
"""

from __future__ import annotations

import logging
import math
import re
from typing import Any

from edgehive.schemas import Capabilities, Topics
from edgehive.schemas.homeassistant import Message, entity_config

from .discovery import fleet_device, fleet_id

log = logging.getLogger(__name__)

# A status payload is JSON ({"state": "online", ...}) from agents and the coordinator, or a bare
# `online`/`offline` typed into mosquitto_pub: Home Assistant defines value_json only for JSON.
STATUS_TEMPLATE = "{{ value_json.state if value_json is defined else value }}"
DIAGNOSTIC = {"entity_category": "diagnostic"}

# key, name, heartbeat field, the component's own fields
_NODE_SENSORS: tuple[tuple[str, str, str, dict[str, Any]], ...] = (
    ("cpu", "CPU", "cpu_pct", {"unit_of_measurement": "%", "state_class": "measurement", "icon": "mdi:cpu-64-bit", **DIAGNOSTIC}),
    ("memory", "Memory", "mem_pct", {"unit_of_measurement": "%", "state_class": "measurement", "icon": "mdi:memory", **DIAGNOSTIC}),
    ("temperature", "Temperature", "temp_c", {"device_class": "temperature", "unit_of_measurement": "°C", "state_class": "measurement",
                                              **DIAGNOSTIC}),
    ("jobs_per_s", "Jobs per second", "jobs_per_s", {"unit_of_measurement": "jobs/s", "state_class": "measurement", "icon": "mdi:speedometer"}),
    ("service_time", "Service time", "service_s", {"device_class": "duration", "unit_of_measurement": "s", "state_class": "measurement",
                                                   "suggested_display_precision": 3}),
    ("in_flight", "Jobs in flight", "in_flight", {"unit_of_measurement": "jobs", "state_class": "measurement", "icon": "mdi:progress-clock"}),
)

# key, name, coordinator/stats field, the component's own fields
_COORDINATOR_SENSORS: tuple[tuple[str, str, str, dict[str, Any]], ...] = (
    ("nodes_online", "Nodes online", "nodes_online", {"unit_of_measurement": "nodes", "state_class": "measurement", "icon": "mdi:server-network"}),
    ("queue", "Queue", "queued", {"unit_of_measurement": "jobs", "state_class": "measurement", "icon": "mdi:tray-full"}),
    ("in_flight", "Jobs in flight", "in_flight", {"unit_of_measurement": "jobs", "state_class": "measurement", "icon": "mdi:progress-clock"}),
    ("jobs_per_s", "Jobs per second", "jobs_per_s", {"unit_of_measurement": "jobs/s", "state_class": "measurement", "icon": "mdi:speedometer"}),
    # Counted since the coordinator started: total_increasing takes the restart's drop to 0 as a new cycle.
    ("failures", "Failures", "failed", {"unit_of_measurement": "jobs", "state_class": "total_increasing", "icon": "mdi:alert-circle-outline"}),
)


def _field(name: str) -> str:
    # `.get`: a field an older agent does not send renders None (Home Assistant's unknown), not ''.
    return "{{ value_json.get('" + name + "') }}"


def node_key(node: str) -> str:
    """A node id as a discovery topic level allows it (letters, digits, `_`, `-`)."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", node)


def node_messages(ha_prefix: str, topics: Topics, caps: Capabilities, dead_after_s: float) -> list[Message]:
    """Every config of `caps.node`'s device."""
    node = caps.node
    uid = f"{fleet_id(topics)}_node_{node_key(node)}"
    device = {"identifiers": [uid], "name": node, "manufacturer": "edgehive", "model": caps.board or caps.arch,
              "hw_version": caps.arch, "sw_version": caps.version, "via_device": fleet_id(topics)}
    status = topics.status(node)
    beat = topics.heartbeat(node)
    available = {"availability": [{"topic": status, "value_template": STATUS_TEMPLATE}], "availability_mode": "all",
                 "expire_after": max(1, math.ceil(dead_after_s))}
    out = [entity_config(ha_prefix, "binary_sensor", f"{uid}_online", "Online", device, state_topic=status,
                         value_template=STATUS_TEMPLATE, payload_on="online", payload_off="offline", device_class="connectivity",
                         json_attributes_topic=status, json_attributes_template=_STATUS_ATTRIBUTES, **DIAGNOSTIC)]
    out += [entity_config(ha_prefix, "sensor", f"{uid}_{key}", name, device, state_topic=beat, value_template=_field(field),
                          **available, **extra) for key, name, field, extra in _NODE_SENSORS]
    out.append(entity_config(ha_prefix, "binary_sensor", f"{uid}_throttled", "Throttled", device, state_topic=beat,
                             value_template="{{ 'ON' if value_json.get('throttled') else 'OFF' }}", device_class="problem",
                             **available, **DIAGNOSTIC))
    return out


def coordinator_messages(ha_prefix: str, topics: Topics, stats_interval_s: float) -> list[Message]:
    """The coordinator's own device: the fleet device that cameras and fusion groups belong to too."""
    device = fleet_device(topics)
    uid = f"{fleet_id(topics)}_coordinator"
    status, stats = topics.coordinator_status, topics.coordinator_stats
    available = {"availability": [{"topic": status}], "availability_mode": "all",
                 "expire_after": max(10, math.ceil(5 * stats_interval_s))}
    out = [entity_config(ha_prefix, "binary_sensor", f"{uid}_online", "Coordinator online", device, state_topic=status,
                         payload_on="online", payload_off="offline", device_class="connectivity", **DIAGNOSTIC)]
    out += [entity_config(ha_prefix, "sensor", f"{uid}_{key}", name, device, state_topic=stats, value_template=_field(field),
                          **available, **extra) for key, name, field, extra in _COORDINATOR_SENSORS]
    return out


_STATUS_ATTRIBUTES = "{{ {'boot_id': value_json.boot_id, 'reason': value_json.reason} | tojson if value_json is defined else '{}' }}"


def clearing(messages: list[Message]) -> list[Message]:
    """The empty retained payloads that make Home Assistant remove these entities."""
    return [(topic, b"") for topic, _ in messages]


class NodeDevices:
    """The node configs announced, by node: what to publish again when Home Assistant comes
    online, what to remove when a node leaves, and a birth certificate that changes nothing
    in them (every agent reconnect repeats it) publishes nothing."""

    def __init__(self, ha_prefix: str, topics: Topics, dead_after_s: float, max_devices: int = 250) -> None:
        self.ha_prefix, self.topics, self.dead_after_s = ha_prefix, topics, dead_after_s
        self.max_devices = max_devices
        self.announced: dict[str, list[Message]] = {}
        self.left_out = 0  # nodes seen beyond max_devices, which got no device

    def seen(self, caps: Capabilities) -> list[Message]:
        if not self.ha_prefix:
            return []
        if caps.node not in self.announced and len(self.announced) >= self.max_devices:
            # A fleet of thousands as Home Assistant devices would be tens of MB of retained
            # configs, sent again at every HA start; the fleet's own dashboards show it instead.
            self.left_out += 1
            if self.left_out == 1:
                log.warning("Home Assistant: devices for the first %d nodes only (EDGEHIVE_HA_MAX_NODE_DEVICES); node %s and later ones get none",
                            self.max_devices, caps.node)
            return []
        messages = node_messages(self.ha_prefix, self.topics, caps, self.dead_after_s)
        if self.announced.get(caps.node) == messages:
            return []
        stale = {topic for topic, _ in self.announced.get(caps.node, ())} - {topic for topic, _ in messages}
        self.announced[caps.node] = messages
        return [(topic, b"") for topic in sorted(stale)] + messages

    def left(self, node: str) -> list[Message]:
        return clearing(self.announced.pop(node, []))

    def all(self) -> list[Message]:
        return [message for messages in self.announced.values() for message in messages]
