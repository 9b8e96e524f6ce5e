"""Home Assistant configs of ours left on the broker by an earlier run, and which of them to clear.

Discovery configs are retained: a fusion group or camera taken out of the settings would keep
its entities in Home Assistant for ever (Zigbee2MQTT clears a device that left; we do the same).
So the active coordinator, when it becomes active and at every reconnect, reads the retained
configs on the discovery topics it uses (edgehive/haretained.py); the core then clears the stale
ones (`classify` says what each config is for).

Only configs of this fleet are considered: the topic's unique id starts with the fleet id
(`edgehive_{prefix}_`), the config says `origin: edgehive`, belongs to the fleet's device, and
its state topic is under this fleet's own prefix, so another fleet (another EDGEHIVE_PREFIX) and
other integrations on the same broker are never touched. Node devices are not the fleet device:
they leave by their own rule (EDGEHIVE_FORGET_AFTER_S, coordinator/ha_devices.py).
"""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

import orjson

from edgehive.schemas import Topics
from edgehive.schemas.kinds import DETECT_KIND, FUSION_KIND

from .discovery import fleet_id

# The components edgehive's fleet device uses (fusion groups, cameras, the coordinator's own).
COMPONENTS = ("binary_sensor", "camera", "sensor")


class Owned(NamedTuple):
    """A retained config of this fleet's device: what it shows (`group`, `camera` or the
    `coordinator`'s own counters) and the group or camera it belongs to."""

    what: Literal["group", "camera", "coordinator"]
    name: str


def config_patterns(ha_prefix: str) -> list[str]:
    """The discovery topics the fleet device's configs are on."""
    return [f"{ha_prefix}/{component}/+/config" for component in COMPONENTS]


def ours(ha_prefix: str, topics: Topics, topic: str) -> bool:
    """`topic` is a config topic this fleet may have published: cheap, before any parsing."""
    levels = topic.split("/")
    base = ha_prefix.split("/")
    return (len(levels) == len(base) + 3 and levels[:len(base)] == base and levels[-1] == "config"
            and levels[-3] in COMPONENTS and levels[-2].startswith(fleet_id(topics) + "_"))


def classify(topics: Topics, payload: bytes) -> Owned | None:
    """What a retained config of ours is for; None when it is not the fleet device's (a node's,
    another fleet's, anybody else's, an empty or unreadable payload)."""
    try:
        config: Any = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(config, dict):
        return None
    origin, device = config.get("origin"), config.get("device")
    if not isinstance(origin, dict) or origin.get("name") != "edgehive" or not isinstance(device, dict):
        return None
    if device.get("identifiers") != [fleet_id(topics)]:
        return None
    state = config.get("topic") or config.get("state_topic")
    if not isinstance(state, str):
        return None
    for what, example in (("camera", topics.snapshot("x")), ("camera", topics.result(DETECT_KIND, "x")),
                          ("group", topics.result(FUSION_KIND, "x"))):
        base = example[:-1]
        if state.startswith(base) and "/" not in state[len(base):] and state[len(base):]:
            return Owned(what, state[len(base):])  # type: ignore[arg-type]  # what is one of the Literal's
    if state in (topics.coordinator_status, topics.coordinator_stats):
        return Owned("coordinator", "")
    return None
