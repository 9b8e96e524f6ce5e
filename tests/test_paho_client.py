"""Which paho client the bus runs on: the fast subclass only where paho has what it overrides.

The fast client replaces private paho methods; a paho release may rename or change them. The
check is by feature (methods, their parameters, the packet record paho queues), so these tests
hand it paho classes changed the way a release could change them. The plain client must carry
the whole bus: the last test runs the bus tests and a flow test again with it.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import MQTTErrorCode

from edgehive.pahoclient import FastClient, PlainClient, choose_client, missing_fast_features

ROOT = Path(__file__).resolve().parent.parent


class _RenamedWrite(paho.Client):
    """A paho whose batch writer has another name."""

    _packet_write = None  # type: ignore[assignment]  # the method is gone in this imagined release


class _ChangedRecv(paho.Client):
    """A paho whose socket read takes other parameters."""

    def _sock_recv(self, size: int, flags: int = 0) -> bytes:  # type: ignore[override]  # the imagined change
        return b""


class _OtherPacketRecord(paho.Client):
    """A paho that queues packets as records with other fields."""

    def _packet_queue(self, command: int, packet: bytes | bytearray, mid: int, qos: int, info: Any = None) -> MQTTErrorCode:
        self._out_packet.append({"cmd": command, "data": packet})  # type: ignore[arg-type]  # the imagined record
        return MQTTErrorCode.MQTT_ERR_SUCCESS


@pytest.mark.parametrize(("paho_class", "lacks"), [
    (_RenamedWrite, "Client._packet_write"),
    (_ChangedRecv, "Client._sock_recv('self', 'bufsize')"),
    (_OtherPacketRecord, "packet record fields"),
])
def test_a_paho_without_what_the_fast_client_overrides_is_detected(paho_class: type[paho.Client], lacks: str) -> None:
    assert lacks in missing_fast_features(paho_class)


def test_the_fast_client_is_used_only_where_paho_allows_and_unless_plain_is_asked_for(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="edgehive.pahoclient")
    assert choose_client("fast", lacks=()) is FastClient
    assert choose_client("plain", lacks=()) is PlainClient
    lacks = ("Client._imagined_for_this_test",)
    assert choose_client("fast", lacks=lacks) is PlainClient
    assert choose_client("fast", lacks=lacks) is PlainClient
    said = [r.getMessage() for r in caplog.records if "_imagined_for_this_test" in r.getMessage()]
    assert len(said) == 1 and "plain paho-mqtt" in said[0], said  # once per process, with the reason


@pytest.mark.integration
@pytest.mark.timeout(900)
def test_the_plain_client_passes_the_bus_tests_and_a_flow() -> None:
    """CI covers both clients: this file's process uses the default (fast), this run plain."""
    env = {**os.environ, "EDGEHIVE_MQTT_CLIENT": "plain"}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_bus.py",
         "tests/test_flows.py::test_mosquitto_pub_job_produces_result_seen_by_mosquitto_sub",
         "tests/test_agent_results.py::test_results_added_from_worker_threads_reach_the_broker_through_the_network_thread"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=880, check=False,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert " passed" in run.stdout and "skipped" not in run.stdout, run.stdout[-2000:]


def _publish_packet(topic: str, payload: bytes, qos: int = 0, mid: int = 0, retain: bool = False) -> bytes:
    body = len(topic).to_bytes(2, "big") + topic.encode() + (mid.to_bytes(2, "big") if qos else b"") + payload
    length, encoded = len(body), bytearray()
    while True:
        byte, length = length & 0x7F, length >> 7
        encoded.append(byte | (0x80 if length else 0))
        if not length:
            break
    return bytes([0x30 | (qos << 1) | int(retain)]) + bytes(encoded) + body


@pytest.mark.parametrize("client_class", [PlainClient, FastClient])
def test_a_plain_socket_that_would_block_raises_as_paho_does(client_class: type[PlainClient]) -> None:
    """Without TLS the fast client reads and writes the socket itself, not through paho's
    methods (whose except clauses name `ssl`, which would load it: edgehive/lazymodules.py).
    What the loop sees must not change: BlockingIOError on an empty or a full socket, the loop
    asked to wait until the socket takes more, ConnectionError once the socket is gone."""
    import socket

    client: Any = client_class(paho.CallbackAPIVersion.VERSION2, client_id="would-block-test", protocol=paho.MQTTv311)
    ours, broker = socket.socketpair()
    ours.setblocking(False)
    client._sock = ours
    registered: list[object] = []
    client.on_socket_register_write = lambda _c, _u, sock: registered.append(sock)
    try:
        with pytest.raises(BlockingIOError):
            client._sock_recv(1)
        chunk = b"x" * 65536
        with pytest.raises(BlockingIOError):
            for _ in range(10_000):  # until the socket's buffers are full
                client._sock_send(chunk)
        assert registered == [ours]
        broker.sendall(b"\xd0\x00")
        assert client._sock_recv(2) == b"\xd0\x00"
        client._sock = None
        with pytest.raises(ConnectionError):
            client._sock_recv(1)
        with pytest.raises(ConnectionError):
            client._sock_send(b"x")
    finally:
        client._sock = None
        ours.close()
        broker.close()


def test_the_fast_read_hands_on_whole_publishes_and_leaves_the_rest_to_paho() -> None:
    """Packets as the broker sends them, several per read, one split across reads, one larger
    than a read, and a PINGRESP between them: every message arrives once, whole, in order, with
    its QoS and retain flag, and each QoS 1 message is acknowledged."""
    import socket

    client: Any = FastClient(paho.CallbackAPIVersion.VERSION2, client_id="fast-read-test", protocol=paho.MQTTv311)
    ours, broker = socket.socketpair()
    ours.setblocking(False)
    client._sock = ours
    got: list[tuple[str, bytes, int, bool]] = []
    client.on_message = lambda _c, _u, m: got.append((m.topic, m.payload, m.qos, m.retain))
    big = bytes(range(256)) * 400  # 100 KiB: more than one read
    sent = [("a/heartbeat", b'{"seq":1}', 0, 0, False), ("a/results", b'{"ok":true}', 1, 7, False),
            ("a/status", b"online", 1, 8, True), ("a/frames", big, 0, 0, False), ("a/heartbeat", b'{"seq":2}', 0, 0, False)]
    stream = b"".join(_publish_packet(t, p, q, m, r) for t, p, q, m, r in sent[:3]) + b"\xd0\x00"  # + PINGRESP
    stream += b"".join(_publish_packet(t, p, q, m, r) for t, p, q, m, r in sent[3:])
    try:
        half = len(stream) // 3
        for chunk in (stream[:half], stream[half:]):  # a packet split across two reads
            broker.sendall(chunk)
            for _ in range(200):
                if client._packet_read() != MQTTErrorCode.MQTT_ERR_SUCCESS and client._rpos >= len(client._rbuf):
                    break
        assert got == [(t, p, q, r) for t, p, q, _, r in sent]
        broker.settimeout(5)
        acks = b"".join(bytes(packet["packet"]) for packet in client._out_packet)  # queued, or already written:
        while len(acks) < 8:
            acks += broker.recv(64)
        assert acks == b"\x40\x02\x00\x07\x40\x02\x00\x08"  # a PUBACK for each QoS 1 message, in order
    finally:
        client._sock = None
        ours.close()
        broker.close()


def test_the_fast_publish_packet_is_paho_s_byte_for_byte() -> None:
    """Every size class of the remaining length, QoS 0/1/2, retain and dup: the packet the fast
    client queues is the one paho would queue."""
    import itertools
    import socket

    queued: dict[str, list[tuple[int, bytes, int, int]]] = {"paho": [], "fast": []}
    clients: dict[str, Any] = {}
    pairs = []
    for name, cls in (("paho", paho.Client), ("fast", FastClient)):
        client: Any = cls(paho.CallbackAPIVersion.VERSION2, client_id=f"publish-{name}", protocol=paho.MQTTv311)
        ours, other = socket.socketpair()
        pairs += [ours, other]
        client._sock = ours
        client._packet_queue = lambda command, packet, mid, qos, info=None, name=name: (
            queued[name].append((command, bytes(packet), mid, qos)) or MQTTErrorCode.MQTT_ERR_SUCCESS)
        clients[name] = client
    try:
        for size, qos, retain, dup, topic_len in itertools.product(
                [0, 1, 120, 123, 124, 125, 126, 127, 128, 16_380, 16_384, 2_097_152], [0, 1, 2], [False, True], [False, True], [1, 300]):
            topic, payload = b"t" * topic_len, b"p" * size
            paho.Client._send_publish(clients["paho"], 513, topic, payload, qos, retain, dup, None, None)
            clients["fast"]._send_publish(513, topic, payload, qos, retain, dup, None, None)
        assert len(queued["fast"]) == 288 and queued["fast"] == queued["paho"]
    finally:
        for client in clients.values():
            client._sock = None
        for sock in pairs:
            sock.close()


def test_the_fast_read_takes_whole_pubacks_and_marks_each_message_published() -> None:
    """Three QoS 1 messages sent; the broker's PUBACKs come in one read, one split across reads:
    each message is published once its own PUBACK is read, and paho no longer keeps it for resending."""
    import socket

    client: Any = FastClient(paho.CallbackAPIVersion.VERSION2, client_id="fast-puback-test", protocol=paho.MQTTv311)
    ours, broker = socket.socketpair()
    ours.setblocking(False)
    client._sock = ours
    try:
        infos = [client.publish(f"a/{n}", b"x", qos=1) for n in range(3)]
        mids = [info.mid for info in infos]
        assert set(client._out_messages) == set(mids)
        acks = b"".join(b"\x40\x02" + mid.to_bytes(2, "big") for mid in mids)
        broker.sendall(acks[:6])  # the first whole, the second split
        for _ in range(10):
            client._packet_read()
        assert [info.is_published() for info in infos] == [True, False, False]
        broker.sendall(acks[6:])
        for _ in range(10):
            client._packet_read()
        assert [info.is_published() for info in infos] == [True, True, True]
        assert client._out_messages == {} and client._inflight_messages == 0
    finally:
        client._sock = None
        ours.close()
        broker.close()


def _read_packet(sock: Any) -> bytes:
    """One whole MQTT packet from a blocking socket: fixed header, remaining length, body."""
    def take(count: int) -> bytes:
        data = b""
        while len(data) < count:
            chunk = sock.recv(count - len(data))
            assert chunk, f"the client closed the connection after {data!r}"
            data += chunk
        return data

    head = take(1)
    length, shift = 0, 0
    while True:
        byte = take(1)
        head += byte
        length |= (byte[0] & 0x7F) << shift
        shift += 7
        if not byte[0] & 0x80:
            return head + take(length)


def _session_on_the_wire(cls: type[paho.Client]) -> dict[str, Any]:
    """What a client of `cls` writes to a broker that records bytes: QoS 0 and 1 messages,
    retained or not, small and large; then the broker drops the connection without
    acknowledging the QoS 1 ones, one more QoS 1 message is published while disconnected, and
    the client reconnects. The loop is driven by hand (no network thread), so the order is fixed."""
    import socket

    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(10)
    port = server.getsockname()[1]
    client: Any = cls(paho.CallbackAPIVersion.VERSION2, client_id="wire-test", protocol=paho.MQTTv311)
    client.max_inflight_messages_set(0)  # as the bus sets it
    client.max_queued_messages_set(4)  # the bus keeps 100,000; 4 is reached below
    conns: list[socket.socket] = []

    def accept() -> socket.socket:
        conn, _ = server.accept()
        conn.settimeout(10)
        conns.append(conn)
        assert _read_packet(conn)[0] == 0x10  # CONNECT
        conn.sendall(b"\x20\x02\x00\x00")  # CONNACK, accepted
        for _ in range(100):
            if client.is_connected():
                break
            client.loop(0.1)
        assert client.is_connected()
        return conn

    try:
        client.connect("127.0.0.1", port, keepalive=60)
        first = accept()
        sent = [("a/state", b'{"s":"done"}', 0, False), ("a/jobs", b'{"id":1}', 1, False),
                ("a/status", b"online", 1, True), ("a/frames", bytes(range(256)) * 80, 1, False),
                ("a/last", b"", 0, True)]
        infos = [client.publish(t, p, qos=q, retain=r) for t, p, q, r in sent]
        before = [_read_packet(first) for _ in sent]
        kept = {mid: (m.state, m.dup) for mid, m in client._out_messages.items()}
        first.close()  # dropped without a PUBACK
        for _ in range(100):
            if not client.is_connected():
                break
            client.loop(0.1)
        assert not client.is_connected()
        offline = client.publish("a/jobs", b'{"id":2}', qos=1)
        refused = client.publish("a/jobs", b'{"id":3}', qos=1)  # a fifth unacknowledged message: over the queue limit
        assert client.reconnect() == MQTTErrorCode.MQTT_ERR_SUCCESS
        second = accept()
        after = [_read_packet(second) for _ in range(4)]  # the three unacknowledged ones, and the offline one
        second.sendall(b"".join(b"\x40\x02" + mid.to_bytes(2, "big") for mid in [*kept, offline.mid]))  # PUBACKs
        for _ in range(100):
            if not client._out_messages:
                break
            client.loop(0.1)
        return {"before": before, "after": after, "kept": kept, "mids": [i.mid for i in [*infos, offline]],
                "rcs": [i.rc for i in [*infos, offline, refused]], "published": [i.is_published() for i in infos],
                "left": dict(client._out_messages), "inflight": client._inflight_messages}
    finally:
        client._sock_close()
        for conn in conns:
            conn.close()
        server.close()


def test_the_fast_client_writes_paho_s_bytes_and_resends_qos1_after_a_reconnect() -> None:
    """The fast client (its packet builder, batched writes and PUBACK read) against paho's own
    client, through `publish` on a real TCP connection: the same packets byte for byte (QoS 0
    and 1, retain, a three-byte remaining length), the same message ids, kept state and refusal
    over the queue limit; after the broker drops the connection the unacknowledged QoS 1
    messages, and one published while disconnected, are sent again (DUP set on the re-sent ones)
    and then released by their PUBACKs."""
    ours, theirs = _session_on_the_wire(FastClient), _session_on_the_wire(paho.Client)
    assert ours == theirs
    big = bytes(range(256)) * 80
    assert ours["before"] == [_publish_packet("a/state", b'{"s":"done"}', 0), _publish_packet("a/jobs", b'{"id":1}', 1, 2),
                              _publish_packet("a/status", b"online", 1, 3, retain=True), _publish_packet("a/frames", big, 1, 4),
                              _publish_packet("a/last", b"", 0, retain=True)]
    dup = [bytes([p[0] | 0x08]) + p[1:] for p in ours["before"][1:4]]
    assert ours["after"] == [*dup, _publish_packet("a/jobs", b'{"id":2}', 1, 6)]
    assert ours["mids"] == [1, 2, 3, 4, 5, 6]  # QoS 0 messages take an id too, as in paho
    assert ours["rcs"] == [MQTTErrorCode.MQTT_ERR_SUCCESS] * 5 + [MQTTErrorCode.MQTT_ERR_NO_CONN, MQTTErrorCode.MQTT_ERR_QUEUE_SIZE]
    assert ours["published"] == [True] * 5 and ours["left"] == {} and ours["inflight"] == 0  # the offline one too: none left
