"""The one MQTT layer: the only module that imports paho-mqtt.

It owns what every part needs and nobody should write twice: a will and a retained
birth message, capped exponential reconnect backoff, subscriptions restored after a
reconnect, `TCP_NODELAY` (paho never sets it; without it a QoS 1 round trip stalls
~40 ms on Nagle + delayed ACK), a bounded QoS 0 outgoing queue (paho's is unbounded),
and validation at the boundary: a handler only ever sees a parsed, valid value, and
every rejected payload is reported on the `errors` topic and in the log.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from pydantic import ValidationError

from .schemas import ErrorReport, Topics, encode
from .schemas.messages import excerpt
from .schemas.topics import TopicError
from .settings import MqttUrl

log = logging.getLogger(__name__)

T = TypeVar("T")
Parser = Callable[[str, bytes], T]
Handler = Callable[[str, T], None]


class Rejected(ValueError):
    """Raised by a parser for input that is well-formed but not acceptable."""


class BusError(RuntimeError):
    """The broker could not be reached or refused us."""


@dataclass(frozen=True)
class Outgoing:
    """A message to publish at a lifecycle point (birth on connect, will, last word)."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = False


@dataclass
class _Subscription(Generic[T]):
    pattern: str
    qos: int
    parse: Parser[T]
    handler: Handler[T]
    max_bytes: int


def raw_bytes(topic: str, payload: bytes) -> bytes:
    """The identity parser, for handlers that take bytes."""
    return payload


def describe_validation_error(error: ValidationError) -> str:
    """`field.sub: message; …` without pydantic's URLs, short enough for an error report."""
    parts = []
    for item in error.errors(include_url=False)[:4]:
        loc = ".".join(str(p) for p in item.get("loc", ())) or "payload"
        parts.append(f"{loc}: {item.get('msg', 'invalid')}")
    more = error.error_count() - len(parts)
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")


class _RateLimit:
    """A token bucket so that a flood of garbage cannot become a flood of error reports."""

    def __init__(self, per_s: float, burst: float) -> None:
        self.per_s, self.burst = per_s, burst
        self.tokens, self.stamp = burst, time.monotonic()
        self.suppressed = 0

    def allow(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.per_s)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        self.suppressed += 1
        return False


class MqttBus:
    """A connected MQTT client for one edgehive process."""

    def __init__(
        self,
        url: MqttUrl,
        topics: Topics,
        client_id: str,
        *,
        source: str,
        will: Outgoing | None = None,
        clean_session: bool = True,
        max_payload_bytes: int = 65536,
        qos0_queue_max: int = 10_000,
        inflight_max: int = 1000,
        keepalive_s: int = 30,
        reconnect_min_s: float = 0.5,
        reconnect_max_s: float = 30.0,
    ) -> None:
        self.url = url
        self.topics = topics
        self.source = source
        self.max_payload_bytes = max_payload_bytes
        self.qos0_queue_max = qos0_queue_max
        self.connected = threading.Event()
        self.qos0_dropped = 0
        self.errors_reported = 0
        self._keepalive = keepalive_s
        self._subs: list[_Subscription[Any]] = []
        self._on_connect_hooks: list[Callable[[], None]] = []
        self._qos0_pending: set[int] = set()
        self._error_limit = _RateLimit(per_s=50, burst=200)
        self._stopping = False

        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=clean_session,
            protocol=paho.MQTTv311,
        )
        client.max_inflight_messages_set(inflight_max)
        client.max_queued_messages_set(100_000)
        client.reconnect_delay_set(min_delay=reconnect_min_s, max_delay=reconnect_max_s)  # type: ignore[arg-type]
        if url.username:
            client.username_pw_set(url.username, url.password)
        if url.tls:
            client.tls_set(cert_reqs=ssl.CERT_REQUIRED)
        if will is not None:
            client.will_set(will.topic, will.payload, qos=will.qos, retain=will.retain)
        client.on_socket_open = self._on_socket_open
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        self._client = client

    # -- lifecycle ---------------------------------------------------------------------------

    def on_connect(self, hook: Callable[[], None]) -> None:
        """Run `hook` after every (re)connect, once subscriptions are restored (birth messages)."""
        self._on_connect_hooks.append(hook)

    def start(self, timeout_s: float | None = 10.0) -> None:
        """Connect in the background; with a timeout, wait for the first connection."""
        self._client.connect_async(self.url.host, self.url.port, keepalive=self._keepalive)
        self._client.loop_start()
        if timeout_s is not None and not self.connected.wait(timeout_s):
            self.stop()
            raise BusError(f"no connection to {self.url.redacted()} within {timeout_s:g} s")

    def stop(self, last_words: list[Outgoing] = (), timeout_s: float = 5.0) -> None:  # type: ignore[assignment]
        """Publish `last_words` (e.g. retained offline), wait for them, and disconnect cleanly."""
        self._stopping = True
        infos = [self._client.publish(m.topic, m.payload, qos=m.qos, retain=m.retain) for m in last_words]
        deadline = time.monotonic() + timeout_s
        for info in infos:
            if self.connected.is_set() and info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
                try:
                    info.wait_for_publish(max(0.0, deadline - time.monotonic()))
                except (RuntimeError, ValueError):
                    break
        self._client.disconnect()
        self._client.loop_stop()
        self.connected.clear()

    # -- subscriptions -----------------------------------------------------------------------

    def subscribe(
        self,
        pattern: str,
        handler: Handler[T],
        parse: Parser[T] = raw_bytes,  # type: ignore[assignment]
        *,
        qos: int = 1,
        max_bytes: int | None = None,
    ) -> None:
        """Deliver messages matching `pattern` to `handler` after `parse` accepted them."""
        sub = _Subscription(pattern, qos, parse, handler, max_bytes or self.max_payload_bytes)
        self._subs.append(sub)
        self._client.message_callback_add(pattern, lambda _c, _u, msg: self._deliver(sub, msg))
        if self.connected.is_set():
            self._client.subscribe(pattern, qos)

    def unsubscribe(self, pattern: str) -> None:
        self._subs = [s for s in self._subs if s.pattern != pattern]
        self._client.message_callback_remove(pattern)
        if self.connected.is_set():
            self._client.unsubscribe(pattern)

    def _deliver(self, sub: _Subscription[Any], msg: paho.MQTTMessage) -> None:
        topic, payload = msg.topic, msg.payload
        if len(payload) > sub.max_bytes:
            self.report_error(topic, f"payload of {len(payload)} bytes exceeds the {sub.max_bytes}-byte limit", payload)
            return
        try:
            value = sub.parse(topic, payload)
        except ValidationError as error:
            self.report_error(topic, describe_validation_error(error), payload)
            return
        except (Rejected, TopicError, UnicodeDecodeError, ValueError) as error:
            self.report_error(topic, str(error), payload)
            return
        try:
            sub.handler(topic, value)
        except Exception:  # a bug of ours must not kill the network thread
            log.exception("handler for %s failed", topic)
            self.report_error(topic, "internal error while handling this message (see the log)", b"")

    # -- publishing --------------------------------------------------------------------------

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> bool:
        """Queue a message; False when it was not accepted (QoS 0 queue full, no connection)."""
        if qos == 0:
            if len(self._qos0_pending) >= self.qos0_queue_max:
                self.qos0_dropped += 1
                return False
            info = self._client.publish(topic, payload, qos=0, retain=retain)
            if info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
                self._qos0_pending.add(info.mid)
                return True
            return False
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            log.error("could not queue %s: %s", topic, paho.error_string(info.rc))
            return False
        return True  # QoS > 0 without a connection is kept by paho and sent on reconnect

    def report_error(self, topic: str, reason: str, payload: bytes = b"") -> None:
        """Tell people (log) and machines (`errors` topic) about a rejected input."""
        self.errors_reported += 1
        if not self._error_limit.allow():
            return
        log.warning("rejected %s: %s", topic[:200], reason)
        report = ErrorReport(
            ts=time.time(), source=self.source, topic=topic[:512], reason=reason[:1000],
            excerpt=excerpt(payload), size=len(payload),
        )
        self.publish(self.topics.errors, encode(report), qos=0)

    # -- paho callbacks (network thread) -----------------------------------------------------

    def _on_socket_open(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except (OSError, AttributeError):  # a websocket or exotic transport
            log.debug("TCP_NODELAY not available on %r", sock)

    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if reason.is_failure:
            log.error("broker %s refused the connection: %s", self.url.redacted(), reason)
            return
        if self._subs:
            client.subscribe([(s.pattern, s.qos) for s in self._subs])
        self._qos0_pending.clear()
        self.connected.set()
        log.info("connected to %s", self.url.redacted())
        for hook in self._on_connect_hooks:
            try:
                hook()
            except Exception:
                log.exception("on-connect hook failed")

    def _on_disconnect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        self.connected.clear()
        self._qos0_pending.clear()
        if not self._stopping:
            log.warning("disconnected from %s (%s); reconnecting with backoff", self.url.redacted(), reason)

    def _on_publish(self, client: paho.Client, userdata: Any, mid: int, reason: Any, properties: Any) -> None:
        self._qos0_pending.discard(mid)
