"""The one MQTT layer: with its client class (`pahoclient.py`), the only code that imports paho-mqtt.

It owns what every part needs and nobody should write twice: a will and a retained
birth message, capped exponential reconnect backoff, subscriptions restored after a
reconnect, `TCP_NODELAY` (paho never sets it; without it a QoS 1 round trip stalls
~40 ms on Nagle + delayed ACK), a bounded QoS 0 outgoing queue (paho's is unbounded:
QoS 0 messages are dropped, and counted, while the socket backlog is over the bound),
and validation at the boundary: a handler only ever sees a parsed, valid value, and
every rejected payload is reported on the `errors` topic and in the log.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from pydantic import ValidationError

from .errors import EdgehiveError
from .pahoclient import make_client
from .schemas import ErrorReport, Topics, encode
from .schemas.messages import excerpt
from .schemas.topics import TopicError
from .settings import MqttUrl

log = logging.getLogger(__name__)

T = TypeVar("T")
Parser = Callable[[str, bytes], T]
Handler = Callable[[str, T], None]


class Rejected(EdgehiveError, ValueError):
    """Raised by a parser for input that is well-formed but not acceptable."""


class BusError(EdgehiveError, RuntimeError):
    """The broker could not be reached or refused us."""


@dataclass(frozen=True)
class PendingAcks:
    """Acknowledgements a `defer_acks` bus holds back: the ids of one burst's QoS 1 messages, in
    the order they came, and the connection they came on (a later connection never gets them)."""

    connection: int
    mids: list[tuple[int, int]]  # (message id, QoS)


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
    refuse_retained: str = ""

    @functools.cached_property
    def levels(self) -> tuple[str, ...]:
        return tuple(self.pattern.split("/"))


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


class _ConnectFailures:
    """Rate-limited WARNINGs about failed connection attempts: the first failure, then at most
    one every `every_s` unless the reason changes, each with the count of attempts; and one
    line when the connection finally succeeds. A wrong URL used to retry in silence."""

    def __init__(self, every_s: float = 30.0) -> None:
        self.every_s = every_s
        self.attempts = 0
        self.last_reason: str | None = None
        self._reported_reason: str | None = None
        self._reported_at = 0.0

    def failed(self, reason: str) -> bool:
        """Count an attempt; True when this one should be logged."""
        self.attempts += 1
        self.last_reason = reason
        now = time.monotonic()
        if self.attempts == 1 or reason != self._reported_reason or now - self._reported_at >= self.every_s:
            self._reported_reason, self._reported_at = reason, now
            return True
        return False

    def connected(self) -> int:
        """Reset; returns how many attempts had failed."""
        failed, self.attempts, self.last_reason, self._reported_reason = self.attempts, 0, None, None
        return failed


def describe_connect_error(error: OSError, url: MqttUrl) -> str:
    """The reason a connect failed, as a person can act on it."""
    if isinstance(error, socket.gaierror):
        return f"unknown host ({error.strerror or error})"
    if not url.tls:  # only a TLS connection raises ssl's errors; a process without TLS need not load ssl (edgehive/tlsless.py)
        return str(error) or type(error).__name__
    import ssl

    if isinstance(error, ssl.SSLError):
        hint = " (a plain MQTT port? mqtts:// needs a TLS listener)" if error.reason == "WRONG_VERSION_NUMBER" else ""
        return tls_failure(url, error) + hint
    if isinstance(error, ConnectionResetError):
        return f"{error} (a plain MQTT port? mqtts:// needs a TLS listener)"
    return str(error) or type(error).__name__


def tls_failure(url: MqttUrl, error: BaseException) -> str:
    """A failed TLS handshake in words, with what to change: a broker signed by a private CA is
    the usual case, and Python's message alone does not name our setting."""
    import ssl

    text = f"TLS handshake with {url.host}:{url.port} failed: "
    if isinstance(error, ssl.SSLCertVerificationError):
        text += f"certificate verify failed: {error.verify_message}"
        if error.verify_code in (2, 19, 20, 21):  # unknown issuer, self-signed in chain, no local issuer, leaf unverifiable
            where = f"{url.ca_file} did not sign it" if url.ca_file else "set EDGEHIVE_MQTT_CA_FILE to your broker's CA"
            return f"{text} (the broker's certificate is not signed by a CA we trust: {where})"
        if error.verify_code == 62:  # hostname mismatch
            return f"{text} (the broker's certificate does not name {url.host}: connect by a name or address it lists)"
        return f"{text} (check the broker's certificate and EDGEHIVE_MQTT_CA_FILE)"
    text += str(getattr(error, "reason", None) or error)
    if "certificate required" in str(error).lower() or "alert" in str(error).lower():
        return f"{text} (the broker may require a client certificate: EDGEHIVE_MQTT_CERT_FILE and EDGEHIVE_MQTT_KEY_FILE)"
    return text


def _matches(pattern: tuple[str, ...], levels: list[str]) -> bool:
    """MQTT filter matching on split levels (`+` one level, `#` the rest, `$` topics only by name)."""
    if levels[0].startswith("$") and pattern[0] in ("+", "#"):
        return False
    for i, want in enumerate(pattern):
        if want == "#":
            return True
        if i >= len(levels) or (want != "+" and want != levels[i]):
            return False
    return len(levels) == len(pattern)


# Topics whose subscriptions are remembered: a few per node (heartbeat, status, results), so a
# fleet of 20,000 nodes fits; about 150 bytes each. At 4,096 a 5,000-node fleet's heartbeats
# cleared it over and over and matching cost a fifth of the coordinator's time.
ROUTES_KEPT = 65536


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
        inflight_max: int = 0,
        keepalive_s: int = 30,
        reconnect_min_s: float = 0.5,
        reconnect_max_s: float = 30.0,
        defer_acks: bool = False,
    ) -> None:
        """`defer_acks`: QoS 1 messages are acknowledged only when the owner calls `ack` with what its
        after-read hook took (`take_acks`), e.g. once what they asked for is on disk; without a
        hook that takes them, at the end of each read burst."""
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
        self._routes: dict[str, tuple[_Subscription[Any], ...]] = {}
        self._on_connect_hooks: list[Callable[[], None]] = []
        self._on_disconnect_hooks: list[Callable[[], None]] = []
        self._error_limit = _RateLimit(per_s=50, burst=200)
        self._stopping = False
        self._clearing: dict[str, int] = {}  # retained commands we cleared, whose echo to ignore
        self._connect_failures = _ConnectFailures()
        self._connack_seen = False  # in this connection attempt
        self._defer_acks = defer_acks
        self._acks: list[tuple[int, int]] = []  # this burst's QoS 1 message ids, with defer_acks
        self._connection = 0  # changes at every connect and disconnect: message ids are per connection
        self._after_read_hook: Callable[[], None] | None = None
        self.log_connect_failures = True  # tools (status, submit) say it once in their own words

        client = make_client(
            url.client,
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=clean_session,
            protocol=paho.MQTTv311,
            manual_ack=defer_acks,
        )
        # 0 = no client-side cap: with a cap, paho rescans every unacknowledged message on each
        # PUBACK (29 % of the coordinator's time, measured). The broker caps what it sends us.
        client.max_inflight_messages_set(inflight_max)
        client.max_queued_messages_set(100_000)
        client.reconnect_delay_set(min_delay=reconnect_min_s, max_delay=reconnect_max_s)
        if url.username:
            client.username_pw_set(url.username, url.password)
        if url.tls:
            import ssl

            try:
                client.tls_set(ca_certs=url.ca_file, certfile=url.cert_file, keyfile=url.key_file, cert_reqs=ssl.CERT_REQUIRED)
            except (OSError, ValueError) as error:  # ssl.SSLError is an OSError: a file missing, unreadable or not PEM
                raise BusError(f"TLS settings for {url.redacted()} cannot be used: {error} "
                               "(EDGEHIVE_MQTT_CA_FILE, EDGEHIVE_MQTT_CERT_FILE, EDGEHIVE_MQTT_KEY_FILE)") from None
        if will is not None:
            client.will_set(will.topic, will.payload, qos=will.qos, retain=will.retain)
        client.on_socket_open = self._on_socket_open
        client.on_connect_error = self._on_connect_error
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._route
        client.after_read = self._after_read
        self._client = client

    # -- lifecycle ---------------------------------------------------------------------------

    def on_connect(self, hook: Callable[[], None]) -> None:
        """Run `hook` after every (re)connect, once subscriptions are restored (birth messages)."""
        self._on_connect_hooks.append(hook)

    def on_disconnect(self, hook: Callable[[], None]) -> None:
        """Run `hook` (on the network thread) when an established connection drops, not at `stop`."""
        self._on_disconnect_hooks.append(hook)

    def every(self, period_s: float, hook: Callable[[], None]) -> None:
        """Run `hook` on the network thread about every `period_s` while connected (not while it
        waits to reconnect), between reads: the owner's periodic work needs no thread of its own."""
        client = self._client
        client.loop_timeout = min(client.loop_timeout, period_s)
        due = [time.monotonic() + period_s]

        def maybe() -> None:
            now = time.monotonic()
            if now >= due[0]:
                due[0] = now + period_s
                hook()

        client.periodic = maybe

    def call_soon(self, fn: Callable[[], None]) -> None:
        """Run `fn` once on the network thread at its next turn; callable from any thread. It
        wakes the loop (as a publish from another thread does), so what `fn` sends goes out as
        soon as a publish would have, and what other threads add meanwhile can go with it."""
        self._client.call_soon(fn)

    def after_read_burst(self, hook: Callable[[], None]) -> None:
        """Run `hook` on the network thread after each burst of incoming messages is handled,
        so that work triggered by many messages (placing jobs) is done once per burst."""
        self._after_read_hook = hook

    def _after_read(self) -> None:
        if self._after_read_hook is not None:
            self._after_read_hook()
        if self._acks:  # a defer_acks bus whose owner did not take them
            self.ack(self.take_acks())

    def unread_bytes(self) -> int:
        """(Network thread) bytes received but not handled yet: left in our read buffer and
        waiting in the socket. A large figure means this process is behind its input (a long
        step, a stalled machine): what it has not read may be the heartbeats it is waiting for."""
        return self._client.unread_bytes()

    def take_acks(self) -> PendingAcks:
        """(Network thread, in the after-read hook) the acknowledgements this burst owes, to `ack` later."""
        acks, self._acks = self._acks, []
        return PendingAcks(self._connection, acks)

    def ack(self, pending: PendingAcks) -> None:
        """Send the acknowledgements `take_acks` returned, from any thread. Those of a connection
        that has since dropped are not sent: the broker delivers those messages again."""
        if pending.connection != self._connection or not pending.mids:
            return
        client = self._client
        network = client.network_thread_ident()
        elsewhere = network is not None and threading.get_ident() != network
        client.hold_wakeups = elsewhere  # one wake-up for them all, not one per message the loop drains meanwhile
        try:
            for mid, qos in pending.mids:
                client.ack(mid, qos)
        finally:
            client.hold_wakeups = False
            if elsewhere and client.outgoing_backlog():
                client.wake()

    def start(self, timeout_s: float | None = 10.0) -> None:
        """Connect in the background; with a timeout, wait for the first connection."""
        self._client.connect_async(self.url.host, self.url.port, keepalive=self._keepalive)
        self._client.loop_start()
        if timeout_s is not None and not self.connected.wait(timeout_s):
            reason = self._connect_failures.last_reason
            self.stop()
            raise BusError(f"no connection to {self.url.redacted()} within {timeout_s:g} s" + (f": {reason}" if reason else ""))

    def stop(self, last_words: Sequence[Outgoing] = (), timeout_s: float = 5.0) -> None:
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
        self._client.release_sockets()
        self.connected.clear()

    # -- subscriptions -----------------------------------------------------------------------

    def subscribe(
        self,
        pattern: str,
        handler: Handler[T],
        parse: Parser[T] = raw_bytes,  # type: ignore[assignment]  # T is bytes when parse is left out
        *,
        qos: int = 1,
        max_bytes: int | None = None,
        refuse_retained: str = "",
    ) -> None:
        """Deliver messages matching `pattern` to `handler` after `parse` accepted them. With
        `refuse_retained` (the reason to report), the topic carries commands: a retained message
        is refused on `errors` and cleared (replaying the last command at every subscription
        would be wrong); the echo of our own zero-length clearing message is ignored."""
        sub = _Subscription(pattern, qos, parse, handler, max_bytes or self.max_payload_bytes, refuse_retained)
        self._subs.append(sub)
        self._routes.clear()
        if self.connected.is_set():
            self._client.subscribe(pattern, qos)

    def unsubscribe(self, pattern: str) -> None:
        self._subs = [s for s in self._subs if s.pattern != pattern]
        self._routes.clear()
        if self.connected.is_set():
            self._client.unsubscribe(pattern)

    def _route(self, _client: paho.Client, _userdata: object, msg: paho.MQTTMessage) -> None:
        """Every message to the subscriptions its topic matches. Matching is cached per topic:
        sensors, cameras and nodes repeat their topics, and paho's own per-message trie walk
        was a fifth of the coordinator's time at 20,000 readings/s."""
        if msg.qos and self._defer_acks:
            self._acks.append((msg.mid, msg.qos))  # every one, refused or not: acknowledgements go in order
        topic = msg.topic
        subs = self._routes.get(topic)
        if subs is None:
            levels = topic.split("/")
            subs = tuple(s for s in self._subs if _matches(s.levels, levels))
            if len(self._routes) >= ROUTES_KEPT:  # unique topics (results/{kind}/{job}) must not grow it for ever
                self._routes.clear()
            self._routes[topic] = subs
        for sub in subs:
            self._deliver(sub, msg)

    def _deliver(self, sub: _Subscription[Any], msg: paho.MQTTMessage) -> None:
        topic = msg.topic
        payload: bytes = msg.payload  # type: ignore[assignment]  # paho says bytes | bytearray; it hands on the bytes it read
        if len(payload) > sub.max_bytes:
            self.report_error(topic, f"payload of {len(payload)} bytes exceeds the {sub.max_bytes}-byte limit", payload)
            return
        if sub.refuse_retained:
            if not payload and self._clearing.get(topic):
                self._clearing[topic] -= 1  # the zero-length message we sent to clear a retained one
                return
            if msg.retain:
                self.report_error(topic, sub.refuse_retained, payload)
                if len(self._clearing) < 1024:  # so it is not refused again at every start
                    self._clearing[topic] = self._clearing.get(topic, 0) + 1
                    self.publish(topic, b"", qos=1, retain=True)
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
            if self.outgoing_backlog() >= self.qos0_queue_max:
                self.qos0_dropped += 1
                return False
            return self._client.publish(topic, payload, qos=0, retain=retain).rc == MQTTErrorCode.MQTT_ERR_SUCCESS
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            log.error("could not queue %s: %s", topic, paho.error_string(info.rc))
            return False
        return True  # QoS > 0 without a connection is kept by paho and sent on reconnect

    def outgoing_backlog(self) -> int:
        """Packets queued in paho but not yet written to the socket."""
        return self._client.outgoing_backlog()

    def report_error(self, topic: str, reason: str, payload: bytes = b"", logged: bool = False) -> None:
        """Tell people (log) and machines (`errors` topic) about a rejected input. `logged`: the
        caller has already said it in the log, in its own words (a journal that cannot be written
        is no input of `topic` rejected), so only the `errors` message goes out."""
        self.errors_reported += 1
        if not self._error_limit.allow():
            return
        if not logged:
            log.warning("rejected %s: %s", topic[:200], reason)
        report = ErrorReport(
            ts=time.time(), source=self.source, topic=topic[:512], reason=reason[:1000],
            excerpt=excerpt(payload), size=len(payload),
        )
        self.publish(self.topics.errors, encode(report), qos=0)

    # -- paho callbacks (network thread) -----------------------------------------------------

    def _connect_failed(self, reason: str) -> None:
        if self._stopping or not self._connect_failures.failed(reason) or not self.log_connect_failures:
            return
        log.warning("cannot connect to %s: %s; retrying in %g s (attempt %d)", self.url.redacted(), reason,
                    self._client.next_reconnect_delay(), self._connect_failures.attempts)

    def _on_connect_error(self, error: OSError) -> None:
        self._connect_failed(describe_connect_error(error, self.url))

    def _on_socket_open(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        self._connack_seen = False
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except (OSError, AttributeError):  # a websocket or exotic transport
            log.debug("TCP_NODELAY not available on %r", sock)

    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        self._connack_seen = True
        if reason.is_failure:
            self._connect_failed(f"the broker refused the connection: {reason}")
            return
        self._connection += 1
        self._acks.clear()
        failed = self._connect_failures.connected()
        if failed and self.log_connect_failures:
            log.warning("connected to %s after %d failed attempt%s", self.url.redacted(), failed, "s" * (failed != 1))
        if self._subs:
            client.subscribe([(s.pattern, s.qos) for s in self._subs])
        self.connected.set()
        log.info("connected to %s", self.url.redacted())
        for hook in self._on_connect_hooks:
            try:
                hook()
            except Exception:
                log.exception("on-connect hook failed")

    def _on_disconnect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        self._connection += 1  # acknowledgements still held back are for a connection that is gone
        was_connected = self.connected.is_set()
        self.connected.clear()
        if self._stopping:
            return
        if was_connected:
            log.warning("disconnected from %s (%s); reconnecting with backoff", self.url.redacted(), reason)
            for hook in self._on_disconnect_hooks:
                try:
                    hook()
                except Exception:
                    log.exception("on-disconnect hook failed")
        elif not self._connack_seen:  # the socket opened but no MQTT answer came: not an MQTT port, or a TLS one
            hint = "" if self.url.tls else " (a TLS port? use mqtts://)"
            self._connect_failed(f"the connection closed before the broker answered{hint}")


def tool_client(url: MqttUrl, prefix: str, role: str, **options: Any) -> MqttBus:
    """A client for a short-lived tool (status, submit, healthcheck): a client id unique per run,
    so two at once never kick each other off the broker."""
    bus = MqttBus(url, Topics(prefix), f"edgehive-{role}-{os.getpid()}-{time.monotonic_ns() % 10**6}", source=role, **options)
    bus.log_connect_failures = False  # the tool's one line names the last reason (BusError)
    return bus
