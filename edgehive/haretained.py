"""Reading our own retained Home Assistant discovery configs back from the broker, so that an
edgehive service can clear those of things no longer configured (Zigbee2MQTT clears a device
that left; retained configs would otherwise keep dead entities in Home Assistant for ever).

How long to read: until a probe the reader publishes itself comes back. A broker hands out the
retained copies of a subscription before it handles the subscriptions and publishes the same
client sent after it; but a broker may handle a publish before a subscription sent ahead of it
(amqtt does), so a probe delivered before our subscription to the probe topic is lost. That
subscription is sent last and the probe is published again at every tick (`again`) until one
comes back: the first one back proves every subscription handled and its retained copies sent.
No fixed wait; a read cut by a disconnect is started again at the next connect.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from edgehive.bus import MqttBus

log = logging.getLogger(__name__)


class RetainedConfigs:
    """Reads retained discovery configs once: subscribes to `patterns` and, last, to a probe
    topic of its own, publishes the probe, and when the probe comes back hands every non-empty
    config whose topic `keep` accepts to `done` and unsubscribes."""

    def __init__(self, bus: MqttBus, patterns: list[str], keep: Callable[[str], bool], probe_topic: str,
                 done: Callable[[dict[str, bytes]], None]) -> None:
        self.bus, self.patterns, self.keep, self.probe_topic, self.done = bus, patterns, keep, probe_topic, done
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
        """(At every tick) the probe once more while none came back (see the module's docstring)."""
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
        if self.reading and payload and self.keep(topic):
            self.found[topic] = payload

    def _on_probe(self, topic: str, payload: bytes) -> None:
        if not self.reading or payload != self._probe:
            return  # an earlier round's, cut short
        found = self.found
        self.stop()
        log.info("Home Assistant: %d retained configs of ours read from the broker", len(found))
        self.done(found)
