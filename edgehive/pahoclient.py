"""The paho client under `MqttBus`: paho as shipped with our hooks, or a faster subclass.

`PlainClient` adds what the bus needs (a reason for a failed connect, periodic work and an
after-read hook on the network thread) by overriding only paho's public methods, so it works
with any paho 2.x. `FastClient` also overrides private paho methods, because in a busy process
paho's per-packet costs dominate (see its docstring). Private methods can change in any paho
release, so `choose_client` checks, by feature and not by version number, that the installed
paho still has every method, attribute and packet record the overrides rely on, and falls back
to `PlainClient` when one is missing. `EDGEHIVE_MQTT_CLIENT=plain` (`CommonSettings.mqtt_client`)
forces the plain client, to rule the overrides out when a problem is suspected.
"""

from __future__ import annotations

import collections
import fcntl
import functools
import inspect
import logging
import struct
import termios
import threading
from collections.abc import Callable
from typing import Any, Literal

import paho.mqtt as paho_package
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes

log = logging.getLogger(__name__)

ClientChoice = Literal["fast", "plain"]

_DISCONNECT = PacketTypes.DISCONNECT << 4
_PUBLISH = PacketTypes.PUBLISH << 4
_PUBACK = PacketTypes.PUBACK << 4
_MID = struct.Struct("!H")


class PlainClient(paho.Client):
    """paho's Client plus the hooks `MqttBus` uses, through paho's public methods only."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.after_read: Callable[[], None] | None = None
        self.on_connect_error: Callable[[OSError], None] | None = None
        self.hold_wakeups = False  # set by the one thread acknowledging a batch: it wakes the loop once, at the end
        self.loop_timeout = 1.0  # the longest the loop sleeps in select
        self.periodic: Callable[[], None] | None = None  # run after each turn of the loop
        self.soon: collections.deque[Callable[[], None]] = collections.deque()  # run once, at the loop's next turn (call_soon)
        self._min_delay, self._max_delay = 1.0, 120.0  # paho's defaults, until reconnect_delay_set

    # -- failed connects: paho keeps the reason to itself -----------------------------------

    def reconnect(self) -> MQTTErrorCode:
        """paho's network thread swallows the OSError of a failed connect (refused, unknown
        host, TLS handshake) and its `on_connect_fail` gets no reason; report it here, then
        let paho retry with its backoff as before."""
        try:
            return super().reconnect()
        except OSError as error:
            if self.on_connect_error is not None:
                try:
                    self.on_connect_error(error)
                except Exception:
                    log.exception("connect-error hook failed")
            raise

    def reconnect_delay_set(self, min_delay: float = 1, max_delay: float = 120) -> None:
        self._min_delay, self._max_delay = float(min_delay), float(max_delay)
        super().reconnect_delay_set(min_delay, max_delay)  # type: ignore[arg-type]  # paho annotates int; it sleeps for any float

    def next_reconnect_delay(self) -> float:
        """The wait paho's `_reconnect_wait` starts next: min_delay, doubling up to max_delay,
        back to min_delay after a successful CONNACK. Read from paho's own state where it has
        it; otherwise the minimum (the figure is only for the log line)."""
        lock = getattr(self, "_reconnect_delay_mutex", None)
        if lock is None:
            return self._min_delay
        with lock:
            delay = getattr(self, "_reconnect_delay", None)
            return self._min_delay if delay is None else min(float(delay) * 2, self._max_delay)

    # -- the loop: periodic work and the after-read hook on the network thread ---------------

    def loop_forever(self, timeout: float = 1.0, retry_first_connection: bool = False) -> MQTTErrorCode:
        return super().loop_forever(min(timeout, self.loop_timeout), retry_first_connection)

    def call_soon(self, fn: Callable[[], None]) -> None:
        """Run `fn` once on the network thread, at the loop's next turn (from any thread)."""
        self.soon.append(fn)
        thread = self.network_thread_ident()
        if thread is not None and thread != threading.get_ident():
            self.wake()

    def _run_soon(self) -> None:
        soon = self.soon
        while soon:
            try:
                soon.popleft()()
            except Exception:
                log.exception("call_soon hook failed")

    def loop_misc(self) -> MQTTErrorCode:
        rc = super().loop_misc()
        if self.soon:
            self._run_soon()
            if rc == MQTTErrorCode.MQTT_ERR_SUCCESS and self.want_write() and self.socket() is not None:
                rc = self.loop_write()  # what they queued goes now, not after the next select
        if self.periodic is not None and self.socket() is not None:
            try:
                self.periodic()
            except Exception:
                log.exception("periodic hook failed")
        return rc

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        rc = super().loop_read(max_packets)
        return self._after_burst(rc)

    def _after_burst(self, rc: MQTTErrorCode) -> MQTTErrorCode:
        if self.after_read is not None:
            try:
                self.after_read()
            except Exception:
                log.exception("after-read hook failed")
        # Send what the handlers queued now, before select() can hand us the next burst to
        # read first (paho would write only after that, adding a burst to every hop).
        if rc == MQTTErrorCode.MQTT_ERR_SUCCESS and self.want_write() and self.socket() is not None:
            rc = self.loop_write()
        return rc

    # -- what the bus reads of paho's state, each with a safe answer where paho lacks it ------

    def network_thread_ident(self) -> int | None:
        """The id of paho's network thread (`loop_start`), None when it is not running."""
        thread = getattr(self, "_thread", None)
        return thread.ident if isinstance(thread, threading.Thread) else None

    def outgoing_backlog(self) -> int:
        """Packets queued in paho but not yet written to the socket."""
        return len(getattr(self, "_out_packet", ()))

    def unread_bytes(self) -> int:
        """Bytes that reached our socket but were not read yet (the kernel's count, FIONREAD)."""
        sock = self.socket()
        if sock is None:
            return 0
        try:
            waiting: int = struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0"))[0]
        except (OSError, ValueError, AttributeError):  # not a plain socket (e.g. a websocket wrapper): unknown, so none
            return 0
        return max(0, waiting)

    def wake(self) -> None:
        """Wake the network loop from another thread (it may sleep in select with packets to write)."""
        pair = getattr(self, "_sockpairW", None)
        if pair is not None:
            try:
                pair.send(getattr(paho, "sockpair_data", b"0"))
            except (BlockingIOError, OSError):
                pass

    def release_sockets(self) -> None:
        """Close paho's wake-up socket pair, which paho leaves to the garbage collector."""
        reset = getattr(self, "_reset_sockets", None)
        if reset is not None:
            reset(sockpair_only=True)


class _MessageInfo(paho.MQTTMessageInfo):
    """paho's MQTTMessageInfo, with one Condition shared by all instead of one each.

    paho makes an info for every message in and out, and each built a `threading.Condition`
    (an RLock, a deque and bound methods): measured with py-spy, about a tenth of the
    coordinator's time, while only a process stopping ever waits on one (`wait_for_publish`
    for its last words). Waiters of a shared condition are all woken and each checks its own
    message, so `_set_as_published` notifies all. paho builds infos by the module-level name,
    so `FastClient` installs this class for every paho client in the process (`_install`).
    """

    __slots__ = ()

    def __init__(self, mid: int) -> None:
        self.mid = mid
        self._published = False
        self._condition = _SHARED_CONDITION
        self.rc = MQTTErrorCode.MQTT_ERR_SUCCESS
        self._iterpos = 0

    def _set_as_published(self) -> None:
        with self._condition:
            self._published = True
            self._condition.notify_all()


_SHARED_CONDITION = threading.Condition()


class FastClient(PlainClient):
    """paho's Client without four per-packet costs that dominate a busy edgehive process.

    Measured with py-spy on the coordinator (bench/dispatch.py): paho reads every incoming
    packet with at least three `recv` calls (command byte, length bytes, body), writes one
    `send` per outgoing packet, and wakes its own select loop through a socketpair on every
    publish, even from the network thread. This subclass reads into a 64 KiB buffer, sends
    queued packets together, and wakes the loop only when it may be asleep. It also
    acknowledges 3.1.1 PUBACKs without paho's MQTT 5 decoding, and reads and writes a connection
    without TLS without naming `ssl` (which would load it). It relies on paho internals:
    `missing_fast_features` lists what it needs, and `choose_client` uses it only when all of
    that is there.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._rbuf = b""
        self._rpos = 0

    # -- plain sockets: what paho does, without naming ssl ---------------------------------

    def _recv_now(self, bufsize: int) -> bytes:
        """paho's `_sock_recv`. Without TLS, the socket is read directly: paho's except clauses
        name `ssl.SSLWantReadError`, and evaluating that on every would-block read would load the
        `ssl` module that a process without TLS defers (edgehive/lazymodules.py). A plain socket never
        raises ssl's errors, so the result and the errors are the same."""
        if self._ssl:
            return paho.Client._sock_recv(self, bufsize)
        sock = self._sock
        if sock is None:
            raise ConnectionError("self._sock is None")
        return sock.recv(bufsize)

    def _sock_send(self, buf: bytes | bytearray) -> int:
        """paho's `_sock_send`; without TLS, the socket is written directly (see `_recv_now`)."""
        if self._ssl:
            return super()._sock_send(buf)
        sock = self._sock
        if sock is None:
            raise ConnectionError("self._sock is None")
        try:
            return sock.send(buf)
        except BlockingIOError:
            self._call_socket_register_write()  # as paho: have the loop wait until the socket takes more
            raise

    # -- reads: one recv for many packets --------------------------------------------------

    def _sock_recv(self, bufsize: int) -> bytes:
        if self._rpos >= len(self._rbuf):
            data = self._recv_now(max(bufsize, 65536))
            if len(data) <= bufsize:
                return data
            self._rbuf, self._rpos = data, 0
        chunk = self._rbuf[self._rpos:self._rpos + bufsize]
        self._rpos += len(chunk)
        return chunk

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        rc = paho.Client.loop_read(self, max_packets)
        # Packets already in our buffer would not wake select(): handle them now.
        while rc == MQTTErrorCode.MQTT_ERR_SUCCESS and self._sock is not None and self._rpos < len(self._rbuf):
            rc = paho.Client.loop_read(self, max_packets)
        return self._after_burst(rc)

    def _packet_read(self) -> MQTTErrorCode:
        """A whole MQTT 3.1.1 PUBLISH of QoS 0 or 1 already in our read buffer is taken and handed
        on in one pass. paho reads each packet in three to five calls that update a dict each, and
        decodes it in a second pass that formats a log line whether or not anyone logs: most of
        the coordinator's time per heartbeat at 5,000 nodes (bench/fleetsim.py). Anything else (a
        packet split across reads, other packet types, QoS 2, MQTT 5, per-topic callbacks) goes
        paho's way."""
        if self._in_packet["command"] or self._protocol != paho.MQTTv311 or self._on_message_filtered._root._children:
            return super()._packet_read()
        if self._rpos >= len(self._rbuf):  # at a packet boundary with nothing buffered: read, then look
            try:
                data = self._recv_now(65536)
            except BlockingIOError:
                return MQTTErrorCode.MQTT_ERR_AGAIN
            except OSError:
                return super()._packet_read()  # paho meets the same error and reports it its way
            if not data:
                return MQTTErrorCode.MQTT_ERR_CONN_LOST
            self._rbuf, self._rpos = data, 0
        buf, pos = self._rbuf, self._rpos
        end = len(buf)
        command = buf[pos]
        if command == _PUBACK and pos + 4 <= end and buf[pos + 1] == 2 and self.on_publish is None and not self._max_inflight_messages:
            # A whole 3.1.1 PUBACK (the broker's answer to each QoS 1 message we send): what
            # `_handle_pubackcomp` below does, without paho's byte-at-a-time read of it first.
            self._rpos = pos + 4
            with self._msgtime_mutex:
                self._last_bytes_received = paho.time_func()
            with self._out_message_mutex:
                message = self._out_messages.pop((buf[pos + 2] << 8) | buf[pos + 3], None)
                if message is not None:
                    message.info._set_as_published()
                    if message.qos > 0:
                        self._inflight_messages -= 1
            return MQTTErrorCode.MQTT_ERR_SUCCESS
        if command & 0xF0 != _PUBLISH or command & 0x06 > 0x02:
            return super()._packet_read()
        length, shift, i = 0, 0, pos + 1
        while True:
            if i >= end or shift > 21:
                return super()._packet_read()
            byte = buf[i]
            length |= (byte & 0x7F) << shift
            shift += 7
            i += 1
            if not byte & 0x80:
                break
        stop = i + length
        if stop > end or length < 2:
            return super()._packet_read()
        topic_end = i + 2 + ((buf[i] << 8) | buf[i + 1])
        qos = (command & 0x06) >> 1
        if topic_end + 2 * qos > stop:
            return super()._packet_read()
        self._rpos = stop
        mid = (buf[topic_end] << 8) | buf[topic_end + 1] if qos else 0
        message = paho.MQTTMessage(mid=mid, topic=buf[i + 2:topic_end])
        message.qos, message.retain, message.dup = qos, bool(command & 0x01), bool(command & 0x08)
        message.payload = buf[topic_end + 2 * qos:stop]
        now = paho.time_func()
        message.timestamp = now
        with self._msgtime_mutex:
            self._last_bytes_received = now
        on_message = self.on_message
        if on_message is not None:
            with self._in_callback_mutex:
                try:
                    on_message(self, self._userdata, message)
                except Exception as err:
                    self._easy_log(paho.MQTT_LOG_ERR, "Caught exception in on_message: %s", err)
                    if not self.suppress_exceptions:
                        raise
        if qos and not self._manual_ack:
            return self._send_puback(mid)
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def unread_bytes(self) -> int:
        """The socket's unread bytes and what is left in our read buffer."""
        return super().unread_bytes() + max(0, len(self._rbuf) - self._rpos)

    def _sock_close(self) -> None:
        super()._sock_close()
        self._rbuf, self._rpos = b"", 0

    def _handle_pubackcomp(self, cmd: Any) -> MQTTErrorCode:
        """MQTT 3.1.1 PUBACK is just a message id; paho builds reason-code and property objects
        for it (23 % of the coordinator's time, measured). Take the short path when nothing
        needs them."""
        packet = self._in_packet["packet"]
        if cmd != "PUBACK" or self._protocol != paho.MQTTv311 or len(packet) != 2 or self.on_publish is not None or self._max_inflight_messages:
            return super()._handle_pubackcomp(cmd)
        with self._out_message_mutex:
            message = self._out_messages.pop((packet[0] << 8) | packet[1], None)
            if message is not None:
                message.info._set_as_published()
                if message.qos > 0:
                    self._inflight_messages -= 1
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    # -- writes: wake only when needed, send many packets at once ---------------------------

    def _packet_queue(self, command: int, packet: bytes | bytearray, mid: int, qos: int, info: Any = None) -> MQTTErrorCode:
        thread = self._thread
        if thread is None or self._sockpairW is None:
            return super()._packet_queue(command, packet, mid, qos, info)
        was_empty = not self._out_packet
        self._out_packet.append({"command": command, "mid": mid, "qos": qos, "pos": 0, "to_process": len(packet), "packet": packet, "info": info})
        # The loop selects for writing whenever the queue is non-empty, so it needs a wake-up
        # only for the first packet, and never from its own thread.
        if was_empty and not self.hold_wakeups and threading.get_ident() != thread.ident:
            self.wake()
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def _send_publish(self, mid: int, topic: bytes, payload: bytes | bytearray = b"", qos: int = 0, retain: bool = False,
                      dup: bool = False, info: Any = None, properties: Any = None) -> MQTTErrorCode:
        """A 3.1.1 PUBLISH packet built in one expression: paho appends it byte by byte and formats
        a debug line for every message whether or not anyone logs (a tenth of the coordinator's
        publishing, measured)."""
        if self._protocol != paho.MQTTv311 or type(topic) is not bytes or type(payload) not in (bytes, bytearray):
            return super()._send_publish(mid, topic, payload, qos, retain, dup, info, properties)
        if self._sock is None:
            return MQTTErrorCode.MQTT_ERR_NO_CONN
        length = 2 + len(topic) + len(payload) + (2 if qos else 0)
        if length < 128:
            head = bytes((_PUBLISH | (dup << 3) | (qos << 1) | retain, length))
        else:
            varint = bytearray()
            while True:
                byte, length = length & 0x7F, length >> 7
                varint.append(byte | 0x80 if length else byte)
                if not length:
                    break
            if len(varint) > 4:
                raise ValueError("Packet too large")
            head = bytes((_PUBLISH | (dup << 3) | (qos << 1) | retain,)) + varint
        mid_bytes = _MID.pack(mid) if qos else b""
        packet = b"".join((head, _MID.pack(len(topic)), topic, mid_bytes, payload))
        return self._packet_queue(_PUBLISH, packet, mid, qos, info)

    def _packet_write(self) -> MQTTErrorCode:
        out = self._out_packet
        while len(out) > 1:
            batch: list[Any] = []
            size = 0
            while out and len(batch) < 512 and size < 262144 and (out[0]["command"] & 0xF0) != _DISCONNECT:
                packet = out.popleft()
                batch.append(packet)
                size += packet["to_process"]
            if len(batch) < 2:
                out.extendleft(batch)
                break
            try:
                sent = self._sock_send(b"".join(p["packet"][p["pos"]:] for p in batch))
            except (AttributeError, ValueError):
                out.extendleft(reversed(batch))
                return MQTTErrorCode.MQTT_ERR_SUCCESS
            except BlockingIOError:
                out.extendleft(reversed(batch))
                return MQTTErrorCode.MQTT_ERR_AGAIN
            except OSError as err:
                out.extendleft(reversed(batch))
                log.debug("send failed: %s", err)
                return MQTTErrorCode.MQTT_ERR_CONN_LOST
            with self._msgtime_mutex:
                self._last_msg_out = paho.time_func()
            for i, packet in enumerate(batch):
                if sent < packet["to_process"]:  # the socket took part of the batch
                    packet["pos"] += sent
                    packet["to_process"] -= sent
                    out.extendleft(reversed(batch[i:]))
                    return MQTTErrorCode.MQTT_ERR_SUCCESS
                sent -= packet["to_process"]
                packet["pos"] += packet["to_process"]
                packet["to_process"] = 0
                if (packet["command"] & 0xF0) == _PUBLISH and packet["qos"] == 0 and packet["info"] is not None:
                    packet["info"]._set_as_published()
        return super()._packet_write()


# -- which client: by feature, not by version ----------------------------------------------

# The private methods FastClient overrides or calls, with the parameters it passes them.
_METHODS: dict[str, tuple[str, ...]] = {
    "_sock_recv": ("self", "bufsize"),
    "_sock_send": ("self", "buf"),
    "_sock_close": ("self",),
    "_handle_pubackcomp": ("self", "cmd"),
    "_packet_queue": ("self", "command", "packet", "mid", "qos", "info"),
    "_packet_write": ("self",),
    "_packet_read": ("self",),
    "_send_puback": ("self", "mid"),
    "_send_publish": ("self", "mid", "topic", "payload", "qos", "retain", "dup", "info", "properties"),
    "_easy_log": ("self", "level", "fmt", "args"),
    "_call_socket_register_write": ("self",),
}
# The private state it reads or changes (a new client's attributes).
_ATTRIBUTES = (
    "_in_packet", "_out_packet", "_out_messages", "_out_message_mutex", "_inflight_messages",
    "_max_inflight_messages", "_protocol", "_thread", "_sockpairW", "_msgtime_mutex", "_last_msg_out", "_sock",
    "_last_bytes_received", "_in_callback_mutex", "_manual_ack", "_userdata", "suppress_exceptions", "_on_message_filtered", "_ssl",
)
# The fields of paho's record of a queued packet that `_packet_write` reads and writes.
_PACKET_KEYS = frozenset({"command", "mid", "qos", "pos", "to_process", "packet", "info"})
_INFO_SLOTS = frozenset({"mid", "_published", "_condition", "rc", "_iterpos"})


def missing_fast_features(client_class: type[paho.Client] = paho.Client, module: Any = paho) -> list[str]:
    """What `FastClient` needs of paho that `client_class` (and its `module`) lacks; empty when
    the fast client can be used. A probe of a throwaway, unconnected client: no I/O."""
    missing = []
    for name, params in _METHODS.items():
        method = getattr(client_class, name, None)
        if not callable(method):
            missing.append(f"Client.{name}")
            continue
        try:
            have = tuple(inspect.signature(method).parameters)
        except (TypeError, ValueError):
            have = ()
        if have != params:
            missing.append(f"Client.{name}{params}")
    for name in ("time_func", "sockpair_data", "MQTTv311", "MQTTMessage", "MQTT_LOG_ERR"):
        if not hasattr(module, name):
            missing.append(name)
    info = getattr(module, "MQTTMessageInfo", None)
    slots = {slot for cls in getattr(info, "__mro__", ()) for slot in getattr(cls, "__slots__", ())}
    if info is None or not slots >= _INFO_SLOTS or not callable(getattr(info, "_set_as_published", None)):
        missing.append("MQTTMessageInfo fields")
    if missing:
        return missing
    try:
        probe: Any = client_class(CallbackAPIVersion.VERSION2, client_id="edgehive-probe")  # Any: its private state is what is probed
    except Exception as error:  # a paho whose constructor changed
        return [f"Client() ({error})"]
    try:
        missing += [f"Client.{name}" for name in _ATTRIBUTES if not hasattr(probe, name)]
        if not missing:
            if not isinstance(probe._out_packet, collections.deque) or "packet" not in probe._in_packet:
                missing.append("packet queues")
            elif not isinstance(getattr(getattr(probe._on_message_filtered, "_root", None), "_children", None), dict):
                missing.append("topic callback matcher")
            else:  # queue one packet the way paho does, and read the record it made
                client_class._packet_queue(probe, _PUBLISH, b"\x30\x00", 0, 0, None)
                if not probe._out_packet or not set(probe._out_packet[-1]) >= _PACKET_KEYS:
                    missing.append("packet record fields")
    except Exception as error:
        missing.append(f"packet queue ({type(error).__name__}: {error})")
    finally:
        release = getattr(probe, "_reset_sockets", None)
        if release is not None:
            release()
    return missing


@functools.cache
def _installed_paho_lacks() -> tuple[str, ...]:
    return tuple(missing_fast_features())


def _install_message_info() -> None:
    """paho builds every MQTTMessageInfo by its module-level name: swap in ours (once)."""
    if paho.MQTTMessageInfo is not _MessageInfo:
        paho.MQTTMessageInfo = _MessageInfo  # type: ignore[misc]  # assigning to a class name is the point


_logged: set[str] = set()


def choose_client(requested: ClientChoice, lacks: tuple[str, ...] | None = None) -> type[PlainClient]:
    """The client class for `requested` ("fast" or "plain"): fast only where the installed paho
    has everything `FastClient` relies on (`lacks`: what it lacks, probed once per process by
    default). Says at DEBUG, once per process and outcome, which client is used and why."""
    lacks = _installed_paho_lacks() if lacks is None else lacks
    version = getattr(paho_package, "__version__", "?")
    if requested == "plain":
        chosen: type[PlainClient] = PlainClient
        why = f"plain paho-mqtt {version} client (EDGEHIVE_MQTT_CLIENT=plain)"
    elif lacks:
        chosen = PlainClient
        why = f"plain paho-mqtt {version} client: this paho lacks what the fast client overrides ({', '.join(lacks)})"
    else:
        chosen = FastClient
        why = f"fast client (edgehive's overrides of paho-mqtt {version} internals)"
    if why not in _logged:
        _logged.add(why)
        log.debug("MQTT: %s", why)
    return chosen


def make_client(requested: ClientChoice, *args: Any, **kwargs: Any) -> PlainClient:
    """A new client of the class `choose_client` picks; arguments as paho's `Client`."""
    cls = choose_client(requested)
    if cls is FastClient:
        _install_message_info()
    return cls(*args, **kwargs)
