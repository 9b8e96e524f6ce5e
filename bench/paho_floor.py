"""The MQTT floor for bench/dispatch.py: plain paho request/reply through the same Mosquitto.

A requester (in the benchmark process) publishes each request on `{prefix}/floor/req/{id}`
and a replier (its own process, as an agent is) publishes the same bytes back on
`{prefix}/floor/reply/{id}`; both at QoS 1, as edgehive's submit and result messages are.
Nothing else happens on the way: no coordinator, no JSON parsing, no journal. So the rate of
this loop is what two plain paho clients get from this broker on this machine, measured in
the same run as the system; edgehive's ratio to it is the headline of the dispatch benchmark.

Both clients are stock `paho.mqtt.client.Client` (not edgehive's bus), set as edgehive
sets its own: TCP_NODELAY on the socket when it opens (`edgehive.bus.MqttBus._on_socket_open`;
without it each QoS 1 round trip waits on Nagle's algorithm), no client-side inflight cap
(with a cap, paho rescans every unacknowledged message on each PUBACK), MQTT 3.1.1, clean
session. The request payload is a `JobRequest` as the system's generator sends, so the
bytes on the wire are of the same size.

The replier runs as `python bench/paho_floor.py PORT PREFIX` and echoes until SIGTERM.
"""

from __future__ import annotations

import signal
import socket
import sys
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

if TYPE_CHECKING:
    from dispatch import Tracker


def _nodelay(client: paho.Client, userdata: Any, sock: Any) -> None:
    """TCP_NODELAY on the client's side, as edgehive's bus sets it (the broker sets its own)."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def plain_client(role: str) -> paho.Client:
    """A stock paho client, set as edgehive sets its clients (see the module docstring)."""
    client = paho.Client(
        CallbackAPIVersion.VERSION2, client_id=f"bench-floor-{role}-{uuid.uuid4().hex[:8]}",
        clean_session=True, protocol=paho.MQTTv311,
    )
    client.max_inflight_messages_set(0)
    client.max_queued_messages_set(0)
    client.on_socket_open = _nodelay
    return client


def topics(prefix: str) -> tuple[str, str]:
    """(request topic base, reply topic base); a job id is appended as the last level."""
    return f"{prefix}/floor/req/", f"{prefix}/floor/reply/"


# --------------------------------------------------------------------------------------------
# The replier: its own process
# --------------------------------------------------------------------------------------------


def replier_main(port: int, prefix: str) -> None:
    """Echo every request on the matching reply topic, at QoS 1, until SIGTERM."""
    request_base, reply_base = topics(prefix)
    cut = len(request_base)
    client = plain_client("replier")

    def echo(client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        client.publish(reply_base + msg.topic[cut:], msg.payload, qos=1)

    def subscribe(client: paho.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        client.subscribe(request_base + "+", qos=1)

    client.on_message = echo
    client.on_connect = subscribe
    signal.signal(signal.SIGTERM, lambda *_: client.disconnect())
    client.connect("127.0.0.1", port, keepalive=30)
    client.loop_forever()


# --------------------------------------------------------------------------------------------
# The requester: a Target for dispatch.py's closed and paced loops
# --------------------------------------------------------------------------------------------


class PahoRequester:
    """Publishes requests and times their replies; `tracker` is set by the loop that runs it.

    Publishing happens on the generator's thread and replies arrive on paho's network thread
    (`loop_start`), as on the system path.
    """

    def __init__(self, port: int, prefix: str, payload: bytes) -> None:
        self.tracker: Tracker | None = None  # set by dispatch.py's loops
        self._payload = payload
        self._request_base, reply_base = topics(prefix)
        self._cut = len(reply_base)
        self._connected = threading.Event()
        self._probe_seen = threading.Event()
        self.client = plain_client("requester")
        self.client.on_message = self._on_reply

        def subscribe(client: paho.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
            client.subscribe(reply_base + "+", qos=1)
            self._connected.set()

        self.client.on_connect = subscribe
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()

    def wait_ready(self, timeout_s: float, alive: Any = lambda: None) -> None:
        """Probe until one request comes back: both subscriptions are then in place."""
        deadline = time.monotonic() + timeout_s
        if not self._connected.wait(timeout_s):
            raise TimeoutError("paho floor requester did not connect")
        while not self._probe_seen.is_set():
            alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"paho floor replier did not answer within {timeout_s:g} s")
            self.client.publish(self._request_base + "probe", self._payload, qos=1)
            self._probe_seen.wait(0.2)

    def client_tcp_nodelay(self) -> bool:
        sock = self.client.socket()
        return isinstance(sock, socket.socket) and bool(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

    def submit(self, job_id: str) -> None:
        self.client.publish(self._request_base + job_id, self._payload, qos=1)

    def flush(self) -> None:
        """Nothing is queued here: paho's network thread sends each request."""

    def _on_reply(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        job_id = msg.topic[self._cut:]
        if job_id == "probe":
            self._probe_seen.set()
            return
        tracker = self.tracker
        if tracker is not None:
            tracker.end(job_id, True)

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


if __name__ == "__main__":
    replier_main(int(sys.argv[1]), sys.argv[2])
