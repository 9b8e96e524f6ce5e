"""The MQTT layer against a real Mosquitto: Nagle off, reconnects, bounded QoS 0, validation at the boundary."""

from __future__ import annotations

import socket
import threading

import orjson
import pytest
from harness import MosquittoBroker, Recorder, bus_url, free_port, wait_until
from pydantic import BaseModel

from edgehive.bus import MqttBus, PendingAcks
from edgehive.pahoclient import FastClient, PlainClient, missing_fast_features
from edgehive.schemas import Topics
from edgehive.settings import CommonSettings

pytestmark = pytest.mark.integration


def make_bus(broker: MosquittoBroker, prefix: str, **kwargs: object) -> MqttBus:
    return MqttBus(bus_url(broker.url), Topics(prefix), f"bus-test-{free_port()}", source="bus-test", **kwargs)  # type: ignore[arg-type]


class Reading(BaseModel):
    value: float


def test_the_bus_uses_the_paho_client_the_setting_asks_for(mosquitto: MosquittoBroker, prefix: str) -> None:
    """EDGEHIVE_MQTT_CLIENT=plain: paho as released; fast (the default): edgehive's subclass,
    unless the installed paho lacks what it overrides. tests/test_paho_client.py runs this file
    again with plain, so every test here covers both clients."""
    bus = make_bus(mosquitto, prefix)
    fast = CommonSettings().mqtt_client == "fast" and not missing_fast_features()
    assert type(bus._client) is (FastClient if fast else PlainClient)


def test_tcp_nodelay_is_set_on_the_client_socket(mosquitto: MosquittoBroker, prefix: str) -> None:
    bus = make_bus(mosquitto, prefix)
    bus.start()
    try:
        sock = bus._client.socket()
        assert sock is not None
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        bus.stop()


def test_subscriptions_and_birth_are_restored_after_the_broker_restarts(mosquitto: MosquittoBroker, prefix: str) -> None:
    got: list[bytes] = []
    births: list[int] = []
    bus = make_bus(mosquitto, prefix, reconnect_min_s=0.1, reconnect_max_s=0.5)
    bus.subscribe(f"{prefix}/in", lambda t, p: got.append(p))
    bus.on_connect(lambda: births.append(1))
    bus.start()
    mosquitto.stop()
    wait_until(lambda: not bus.connected.is_set(), 10, "the bus to notice the broker is gone")
    mosquitto.start()
    wait_until(lambda: len(births) == 2, 15, "reconnect and second birth")
    sender = Recorder(mosquitto.url, prefix)

    def delivered() -> bool:
        # Published again on every poll: the restored subscription may reach the broker after the first one.
        sender.publish("in", b"after-restart")
        return b"after-restart" in got

    try:
        wait_until(delivered, 10, "message after reconnect")
    finally:
        sender.close()
        bus.stop()


def test_qos0_outgoing_queue_is_bounded_while_the_broker_stalls(mosquitto: MosquittoBroker, prefix: str) -> None:
    bus = make_bus(mosquitto, prefix, qos0_queue_max=50)
    bus.start()
    mosquitto.pause()  # the broker stops reading; the socket buffers fill up
    try:
        accepted = sum(bus.publish(f"{prefix}/flood", b"x" * 65536, qos=0) for _ in range(2000))
        assert bus.qos0_dropped > 0
        assert accepted + bus.qos0_dropped == 2000
        assert bus.outgoing_backlog() <= 50 + 1  # a packet being written may sit at the head
    finally:
        mosquitto.resume()
        bus.stop()


@pytest.mark.swallows_exceptions
def test_bad_payloads_are_reported_and_handlers_only_see_valid_values(mosquitto: MosquittoBroker, prefix: str) -> None:
    seen: list[Reading] = []
    bus = make_bus(mosquitto, prefix, max_payload_bytes=1024)
    bus.subscribe(f"{prefix}/reading", lambda t, r: seen.append(r), lambda t, p: Reading.model_validate_json(p))
    boom = threading.Event()

    def explode(topic: str, payload: bytes) -> None:
        boom.set()
        raise RuntimeError("bug in a handler")

    bus.subscribe(f"{prefix}/explode", explode)
    bus.start()
    watcher = Recorder(mosquitto.url, prefix)
    try:
        for payload in (b"nope", b'{"value": "warm"}', b"{" * 5000, b'{"value": 21.5}'):
            watcher.publish("reading", payload)
        watcher.publish("explode", b"x")
        wait_until(lambda: len(watcher.json("errors")) >= 4, 10, "four error reports")
        reasons = {e["excerpt"][:10]: e["reason"] for e in watcher.json("errors")}
        assert "Invalid JSON" in reasons["nope"]
        assert "value" in reasons['{"value": ']
        assert "exceeds the 1024-byte limit" in reasons["{" * 10]
        assert any("internal error" in e["reason"] for e in watcher.json("errors"))
        assert boom.is_set()
        wait_until(lambda: seen, 5, "the valid reading")
        assert [r.value for r in seen] == [21.5]
        assert all(e["source"] == "bus-test" and e["topic"].startswith(prefix) for e in watcher.json("errors"))
        assert orjson.loads(orjson.dumps(watcher.json("errors")[0]))["v"] == 1
    finally:
        watcher.close()
        bus.stop()


def test_deferred_acknowledgements_leave_only_when_the_owner_sends_them(mosquitto: MosquittoBroker, prefix: str) -> None:
    """`defer_acks` (the coordinator acknowledges a burst once it is journaled): a message whose
    acknowledgement was held back comes again after a reconnect (Mosquitto keeps the session);
    one that was acknowledged does not."""
    client_id = f"bus-test-{free_port()}"
    got: list[bytes] = []

    def connect() -> tuple[MqttBus, list[PendingAcks]]:
        held: list[PendingAcks] = []
        bus = MqttBus(bus_url(mosquitto.url), Topics(prefix), client_id, source="bus-test",
                      clean_session=False, defer_acks=True)
        bus.subscribe(f"{prefix}/in", lambda t, p: got.append(p), qos=1)
        bus.after_read_burst(lambda: held.append(bus.take_acks()))
        bus.start()
        return bus, held

    sender = Recorder(mosquitto.url, prefix)
    try:
        first, _ = connect()

        def subscribed() -> bool:
            # The session and its subscription are new: a message sent before the broker has the
            # SUBSCRIBE is not for this client. Probe until one arrives (probes are left out below).
            sender.publish("in", b"probe")
            return b"probe" in got

        wait_until(subscribed, 10, "the first subscription in place")
        sender.publish("in", b"one")
        wait_until(lambda: b"one" in got, 10, "the message")
        first.stop()  # never acknowledged
        delivered_before = len(got)
        second, held = connect()
        wait_until(lambda: got.count(b"one") == 2, 10, "the unacknowledged message delivered again")
        # A burst's acknowledgements are taken after the burst is read, so after its callbacks:
        # wait until every QoS 1 delivery to `second` (probes included) has its acknowledgement held.
        wait_until(lambda: sum(len(p.mids) for p in held) >= len(got) - delivered_before, 10,
                   "the held acknowledgements of the deliveries")
        for pending in held:
            second.ack(pending)
        second.stop()
        third, _ = connect()
        sender.publish("in", b"two")
        wait_until(lambda: b"two" in got, 10, "the next message")
        assert [p for p in got if p != b"probe"] == [b"one", b"one", b"two"]
        third.stop()
    finally:
        sender.close()
