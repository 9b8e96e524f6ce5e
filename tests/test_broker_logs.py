"""The embedded broker says, in one line each, that a client left QoS 1 messages unacknowledged,
and prints no traceback for it: a frozen agent (`kill -STOP`) used to fill `edgehive broker`'s
and `edgehive up`'s terminal with amqtt's tracebacks of its own PUBACK timeouts."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from harness import Recorder, free_port, port_answers, wait_until

pytestmark = pytest.mark.integration

CLI = [sys.executable, "-m", "edgehive.cli"]


def _utf8(text: str) -> bytes:
    raw = text.encode()
    return len(raw).to_bytes(2, "big") + raw


def _mute_subscriber(port: int, topic: str) -> socket.socket:
    """A raw MQTT 3.1.1 client that subscribes at QoS 1 and then never acknowledges anything,
    as a frozen process would (its socket stays open; nothing reads or answers)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    connect = _utf8("MQTT") + bytes([4, 0x02, 0, 60]) + _utf8("mute")
    sock.sendall(bytes([0x10, len(connect)]) + connect)
    assert sock.recv(4)[:1] == b"\x20"  # CONNACK
    subscribe = (1).to_bytes(2, "big") + _utf8(topic) + bytes([1])
    sock.sendall(bytes([0x82, len(subscribe)]) + subscribe)
    assert sock.recv(5)[:1] == b"\x90"  # SUBACK
    return sock


def test_unacknowledged_deliveries_are_warned_about_without_tracebacks(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "broker.log"
    with log.open("wb") as out:
        broker = subprocess.Popen([*CLI, "broker", "--listen", f"127.0.0.1:{port}"], stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: port_answers(port), 30, "the broker listening")
        mute = _mute_subscriber(port, "edgehive/v1/jobs/submit")
        recorder = Recorder(f"mqtt://127.0.0.1:{port}", "edgehive/v1")
        try:
            for _ in range(3):
                recorder.publish("jobs/submit", b'{"v":1,"kind":"noop"}', qos=1)
            wait_until(lambda: log.read_text().count("Timeout waiting for PUBACK") >= 3, 30, "the broker to give up on the three deliveries")
            # The broker reports a failed delivery when it next delivers something; one more
            # message, answered by its own PUBACK to us, shows that it got that far.
            recorder.publish("jobs/submit", b'{"v":1,"kind":"noop"}', qos=1)
            wait_until(lambda: log.read_text().count("Timeout waiting for PUBACK") >= 4, 30, "the fourth delivery given up")
        finally:
            recorder.close()
            mute.close()
    finally:
        broker.send_signal(signal.SIGINT)
        broker.wait(30)
    text = log.read_text()
    assert "Traceback" not in text and "Task failed" not in text, text
