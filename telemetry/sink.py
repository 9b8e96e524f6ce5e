"""`edgehive sink`: MQTT in, batches of line protocol out, nothing lost while InfluxDB is away.

Two threads. paho's network thread parses each message into lines (telemetry/points.py) and
appends them to the open batch; a full batch is sealed into the spool at once. The writer
thread seals the open batch every `sink_flush_s`, and sends the spool's oldest batch, removing
it only once the server has stored it. A retryable failure leaves the batch at the head and
waits (0.5 s, doubling, capped at `sink_retry_max_s`) before trying it again; meanwhile new
batches queue behind it, in memory and then on disk (telemetry/spool.py). So batches reach
InfluxDB in the order they were sealed, and a batch sent twice (its reply lost) is harmless:
every point's time comes from its message.

Bad input never stops the sink: the bus validates every message against its schema and
reports rejects on `errors`; a batch the server refuses for its content (HTTP 400) is counted
and reported, not retried forever.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from edgehive import gctune
from edgehive.bus import MqttBus
from edgehive.schemas import Topics
from edgehive.signals import Stop

from .lineprotocol import line
from .points import Lines, parsers, stamp
from .settings import SinkSettings
from .spool import Spool
from .writers import WriteError, Writer, create_writer

log = logging.getLogger(__name__)

RETRY_MIN_S = 0.5
STOP_DRAIN_S = 5.0
# After each read from the broker the sink waits this long before the next, so that a fleet's
# heartbeats (spread evenly over each second) are read tens at a time rather than with one
# wake-up each, which cost more than the heartbeat (bench/fleetsim.py --sink). Points wait for
# the next flush (flush_s) anyway, so nobody waits for these milliseconds.
READ_PAUSE_S = 0.005


class Sink:
    """Subscribes on `bus`, batches into `spool`, writes through `writer`; `start()`/`stop()`."""

    def __init__(self, bus: MqttBus, writer: Writer, spool: Spool, *, node: str, batch_size: int = 5000, flush_s: float = 1.0,
                 retry_max_s: float = 10.0, stats_s: float = 10.0, clock: Callable[[], float] = time.time) -> None:
        self.bus, self.writer, self.spool = bus, writer, spool
        self.node = node
        self.batch_size, self.flush_s, self.retry_max_s, self.stats_s = batch_size, flush_s, retry_max_s, stats_s
        self.clock = clock
        # Counters, reported in the `sink` measurement (docs/TELEMETRY.md).
        self.messages = 0
        self.points_received = 0
        self.points_written = 0
        self.batches_written = 0
        self.write_failures = 0
        self.points_rejected = 0
        self._open: list[str] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._failing_since: float | None = None
        self._drain_deadline = 0.0
        self._thread = threading.Thread(target=self._run, name="sink-writer", daemon=True)
        for pattern, (_kind, parse) in parsers(bus.topics, clock).items():
            bus.subscribe(pattern, self._on_lines, parse, qos=1, max_bytes=max(bus.max_payload_bytes, 1 << 20))
        bus.after_read_burst(self._pause)

    @staticmethod
    def _pause() -> None:
        time.sleep(READ_PAUSE_S)

    # -- receiving (network thread) ---------------------------------------------------------

    def _on_lines(self, topic: str, lines: Lines) -> None:
        self.messages += 1
        self.add(lines)

    def add(self, lines: Lines) -> None:
        """Queue points (also used for the sink's own `sink` points)."""
        if not lines:
            return
        with self._lock:
            self._open.extend(lines)
            self.points_received += len(lines)
            if len(self._open) >= self.batch_size:
                self._seal_locked()

    def _seal_locked(self) -> None:
        if not self._open:
            return
        lines, self._open = self._open, []
        dropped = self.spool.put(("\n".join(lines) + "\n").encode(), len(lines))
        self._wake.set()
        if dropped:
            log.warning("spool full (%d bytes): dropped the %d oldest points", self.spool.max_bytes, dropped)
            self.bus.report_error(self.writer.description,
                                  f"telemetry spool full ({self.spool.max_bytes} bytes): dropped the {dropped} oldest points "
                                  f"({self.spool.dropped_points} in all)")

    def seal(self) -> None:
        with self._lock:
            self._seal_locked()

    # -- writing (writer thread) ------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self, drain_s: float = STOP_DRAIN_S) -> None:
        """Seal what is open, try to write everything for up to `drain_s`, keep the rest on disk."""
        self._drain_deadline = time.monotonic() + drain_s
        self._stopping.set()
        self._wake.set()
        self._thread.join(drain_s + 30)
        self.writer.close()

    def _run(self) -> None:
        now = time.monotonic()
        next_flush, next_stats, retry_at, backoff = now + self.flush_s, now + self.stats_s, 0.0, 0.0
        while not self._stopping.is_set():
            waits = [next_flush, next_stats] + ([retry_at] if len(self.spool) and retry_at > now else [])
            self._wake.wait(max(0.0, min(waits) - now))
            self._wake.clear()
            now = time.monotonic()
            if now >= next_stats:
                self.add(self.stats_lines())
                next_stats = now + self.stats_s
            if now >= next_flush:
                self.seal()
                next_flush = now + self.flush_s
            if now >= retry_at:
                if self._drain_guarded():
                    backoff = 0.0
                else:
                    backoff = min(self.retry_max_s, max(RETRY_MIN_S, backoff * 2))
                    retry_at = time.monotonic() + backoff
            now = time.monotonic()
        self.seal()
        if not self._drain(deadline=self._drain_deadline):
            log.warning("stopping with %d points unsent; they stay in the spool for the next start", self.spool.points)
        self.spool.persist()

    def _drain_guarded(self) -> bool:
        """`_drain`, but a bug of ours (or an exception a library was not expected to raise) is
        logged and treated as a failed write: the writer thread must never die, or the sink would
        go on receiving and never write again."""
        try:
            return self._drain(deadline=None)
        except Exception:
            log.exception("unexpected error while writing; retrying with backoff")
            return False

    def _drain(self, deadline: float | None) -> bool:
        """Send batches, oldest first, until the spool is empty (True) or a write fails (False)."""
        while (batch := self.spool.peek()) is not None:
            if deadline is not None and time.monotonic() > deadline:
                return False
            try:
                self._send(batch.body, batch.points)
            except WriteError as error:
                self.write_failures += 1
                if self._failing_since is None:
                    self._failing_since = time.monotonic()
                    log.warning("%s; points wait in the spool and are retried in order", error)
                else:
                    log.debug("still failing: %s", error)
                return False
            self.spool.done(batch.seq)
            if self._failing_since is not None:
                log.warning("%s is back after %.1f s; sending the spool (%d points)", self.writer.description,
                            time.monotonic() - self._failing_since, self.spool.points)
                self._failing_since = None
        return True

    def _send(self, body: bytes, points: int) -> None:
        """Write one batch; split it on 413; count and report a batch refused for its content."""
        try:
            self.writer.write(body)
        except WriteError as error:
            if error.too_large and points > 1:
                lines = body.splitlines(keepends=True)
                half = len(lines) // 2
                self._send(b"".join(lines[:half]), half)
                self._send(b"".join(lines[half:]), len(lines) - half)
                return
            if error.retryable:
                raise
            refused = points if error.dropped is None else min(points, error.dropped)
            self.points_rejected += refused
            self.points_written += points - refused
            log.error("%s; %d points of this batch are refused and not retried", error, refused)
            self.bus.report_error(self.writer.description, f"{error}"[:900], body[:120])
            return
        self.points_written += points
        self.batches_written += 1

    def stats_lines(self) -> Lines:
        """The `sink` point: what came in, what was written, what waits, what was dropped."""
        text = line("sink", {"node": self.node}, {
            "messages": self.messages, "points_received": self.points_received, "points_written": self.points_written,
            "batches_written": self.batches_written, "write_failures": self.write_failures, "points_rejected": self.points_rejected,
            "spool_points": self.spool.points, "spool_bytes": self.spool.bytes, "spool_disk_bytes": self.spool.disk_bytes,
            "spool_dropped_points": self.spool.dropped_points, "messages_rejected": self.bus.errors_reported,
            "writing": int(self._failing_since is None),
        }, stamp(self.clock()))
        return [text] if text else []


def run_sink(settings: SinkSettings) -> int:
    """The `edgehive sink` process: until SIGTERM/SIGINT; points still unsent stay in the spool."""
    topics = Topics(settings.prefix)
    # A persistent session: on Mosquitto, QoS 1 results and job states published while the sink
    # restarts are queued for it.
    client_id = f"edgehive-sink-{settings.prefix.replace('/', '-')}-{settings.node_id}"
    bus = MqttBus(settings.broker, topics, client_id, source=f"sink:{settings.node_id}", clean_session=False,
                  max_payload_bytes=settings.max_payload_bytes)
    writer = create_writer(settings)
    spool = Spool(Path(settings.spool_dir) if settings.spool_dir else None, settings.spool_max_bytes)
    sink = Sink(bus, writer, spool, node=settings.node_id, batch_size=settings.sink_batch_size, flush_s=settings.sink_flush_s,
                retry_max_s=settings.sink_retry_max_s, stats_s=settings.sink_stats_s)
    stop = Stop().install()
    gctune.tune()  # heartbeats and results of a whole fleet: see edgehive/gctune.py
    sink.start()
    try:
        bus.start(timeout_s=None)  # connects in the background, with backoff, for as long as it takes
        log.info("sink %s: %s → %s (spool %s)", os.getpid(), settings.broker.redacted(), writer.description, settings.spool_dir or "memory")
        stop.wait()
    finally:
        bus.stop()
        sink.stop()
    return 0
