"""Home Assistant configs of ours left on the broker by an earlier run, and which of them to clear.

Discovery configs are retained: a fusion group or camera taken out of the settings would keep
its entities in Home Assistant for ever (Zigbee2MQTT clears a device that left; we do the same).
So the active coordinator, when it becomes active and at every reconnect, reads the retained
configs on the discovery topics it uses (`RetainedConfigs`), for as long as it takes a probe it
publishes itself to come back (the broker hands out the retained copies of a subscription
before it handles the subscriptions and publishes the same client sent after it; the probe is
published again at every tick until one comes back); the core then clears the stale ones
(`classify` says what each config is for).

Only configs of this fleet are considered: the topic's unique id starts with the fleet id
(`edgehive_{prefix}_`), the config says `origin: edgehive`, belongs to the fleet's device, and
its state topic is under this fleet's own prefix, so another fleet (another EDGEHIVE_PREFIX) and
other integrations on the same broker are never touched. Node devices are not the fleet device:
they leave by their own rule (EDGEHIVE_FORGET_AFTER_S, coordinator/ha_devices.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import orjson

from edgehive.bus import MqttBus
from edgehive.schemas import Topics
from edgehive.schemas.kinds import DETECT_KIND, FUSION_KIND

from .discovery import fleet_id

log = logging.getLogger(__name__)

# The components edgehive's fleet device uses (fusion groups, cameras, the coordinator's own).
COMPONENTS = ("binary_sensor", "camera", "sensor")


class Owned(NamedTuple):
    """A retained config of this fleet's device: what it shows (`group`, `camera` or the
    `coordinator`'s own counters) and the group or camera it belongs to."""

    what: Literal["group", "camera", "coordinator"]
    name: str


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


class RetainedConfigs:
    """Reads this fleet's retained discovery configs once: subscribes to the discovery topics
    of `COMPONENTS` and to a probe topic of its own, publishes the probe, and when the probe
    comes back hands every config of ours it read to `done` and unsubscribes."""

    def __init__(self, bus: MqttBus, ha_prefix: str, topics: Topics, probe_topic: str,
                 done: Callable[[dict[str, bytes]], None]) -> None:
        self.bus, self.ha_prefix, self.topics, self.probe_topic, self.done = bus, ha_prefix, topics, probe_topic, done
        self.patterns = [f"{ha_prefix}/{component}/+/config" for component in COMPONENTS]
        self.found: dict[str, bytes] = {}
        self.reading = False
        self._probe = b""
        self._round = 0

    def start(self) -> None:
        """(Again) from the start: call while connected; a read cut by a disconnect is started again."""
        self.stop()
        self.reading = True
        self._round += 1
        self._probe = f"sweep {self._round}".encode()
        for pattern in self.patterns:
            self.bus.subscribe(pattern, self._on_config, max_bytes=1 << 20)
        self.bus.subscribe(self.probe_topic, self._on_probe)
        self.bus.publish(self.probe_topic, self._probe, qos=1)

    def again(self) -> None:
        """(At every tick) the probe once more while it has not come back: a broker may handle a
        publish before a subscription sent ahead of it (amqtt does), and a probe it delivered
        before our subscription to the probe topic is lost. That subscription is sent last, so
        the first probe back proves every config subscription handled, retained copies sent."""
        if self.reading:
            self.bus.publish(self.probe_topic, self._probe, qos=1)

    def stop(self) -> None:
        if not self.reading:
            return
        self.reading = False
        for pattern in (*self.patterns, self.probe_topic):
            self.bus.unsubscribe(pattern)
        self.found = {}

    def _on_config(self, topic: str, payload: bytes) -> None:
        if self.reading and payload and ours(self.ha_prefix, self.topics, topic):
            self.found[topic] = payload

    def _on_probe(self, topic: str, payload: bytes) -> None:
        if not self.reading or payload != self._probe:
            return  # an earlier round's, cut short
        found = self.found
        self.stop()
        log.info("Home Assistant: %d retained configs of this fleet's device read from the broker", len(found))
        self.done(found)
