"""The coordinator process: the broker connection, the job journal, and one thread that owns the core.

The MQTT client's network thread only reads: each message is parsed and checked at the door
(coordinator/ingest.py) and queued as an event; at the end of each read burst it queues a
marker and goes back to the socket. One service thread takes what is queued, has the core
(coordinator/core.py) handle it in one step, and carries out what it returns: publishing,
journal writes, error reports. It is the only thread that touches the coordinator's state, so
there is no lock, and it also does the periodic work (a tick every half heartbeat, at most 0.5 s).

Durability: a submission the broker saw acknowledged is in the journal, flushed to the OS. The
bus holds back the acknowledgements of each burst (`defer_acks`); the service thread sends them
after the step that handled the burst has flushed the journal (`fsync` per job would cost more
than the job; a power cut can lose the last second). So the disk never stalls the network
thread, and the broker's limit on unacknowledged messages bounds what waits in the queue. When
the queue is long anyway (QoS 0 floods), the network thread waits at the end of a burst until
the service thread has caught up.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, NamedTuple

from edgehive.bus import MqttBus, Outgoing, PendingAcks
from edgehive.schemas import Topics
from edgehive.signals import Stop

from .core import CoordinatorCore
from .events import Actions, ConnectionLost, ConnectionRestored, Event, JournalAccepted, Now, Tick
from .fusion import FusionWindows
from .ingest import Ingest
from .journal import JobJournal
from .settings import CoordinatorSettings

log = logging.getLogger(__name__)

_BACKLOG_MAX = 1000  # queued events beyond which the network thread waits for the service thread
_BACKLOG_WAIT_S = 30.0  # a service thread that never answers must not wedge the network thread
_TICK = Tick()


class _BurstEnd(NamedTuple):
    """Queued after each read burst: the acknowledgements it owes, and a lock to release when the
    network thread waits for it (a long backlog)."""

    acks: PendingAcks
    waiter: Any = None  # a held threading.Lock, or None


class Coordinator:
    def __init__(self, settings: CoordinatorSettings) -> None:
        self.settings = settings
        self.topics = Topics(settings.prefix)
        journal_path = Path(settings.state_dir) / f"jobs-{settings.prefix.replace('/', '_')}.jsonl" if settings.state_dir else None
        fusion_path = journal_path.with_name(journal_path.name.replace("jobs-", "fusion-").replace(".jsonl", ".json")) if journal_path else None
        self.fusion = FusionWindows(settings.fusion_group_map, settings.fusion_queue_max, settings.fusion_window_max_readings,
                                    settings.fusion_grace_s, fusion_path)
        cameras = settings.camera_policy
        self.core = CoordinatorCore(settings, self.fusion, started=time.monotonic(), cameras=cameras)
        self.journal = JobJournal(journal_path, self.core.open_jobs, self._report_journal_problem)
        self.ingest = Ingest(self.topics, cameras, settings.sensor_max_future_s, settings.sensor_max_age_s)
        self.bus = MqttBus(
            settings.broker, self.topics, f"edgehive-coordinator-{settings.prefix.replace('/', '-')}",
            source="coordinator",
            will=Outgoing(self.topics.coordinator_status, b"offline", qos=1, retain=True),
            clean_session=False,  # on Mosquitto, submissions made while we restart are queued for us
            max_payload_bytes=settings.max_payload_bytes,
            defer_acks=True,
        )
        self._inbox: deque[Any] = deque()  # events, and a _BurstEnd after each read burst
        self._wake = threading.Event()
        self._burst_pending = False  # network thread only: this read burst queued something
        self._reconnected = False
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="coordinator", daemon=True)

    # -- the network thread: parse (the bus calls ingest) and queue ------------------------

    def _enqueue(self, topic: str, event: Event) -> None:
        self._inbox.append(event)
        self._burst_pending = True

    def _end_burst(self) -> None:
        """After a read burst: hand the service thread the burst's acknowledgements, to send once
        it has handled the burst and flushed the journal; wake it."""
        acks = self.bus.take_acks()
        if not self._burst_pending and not acks.mids:
            return
        self._burst_pending = False
        if len(self._inbox) < _BACKLOG_MAX:
            self._inbox.append(_BurstEnd(acks))
            self._wake.set()
            return
        waiter = threading.Lock()
        waiter.acquire()
        self._inbox.append(_BurstEnd(acks, waiter))
        self._wake.set()
        if not waiter.acquire(timeout=_BACKLOG_WAIT_S):
            log.error("the coordinator's service thread did not catch up within %g s", _BACKLOG_WAIT_S)

    def _connected(self) -> None:
        self._reconnected = True
        self._inbox.append(ConnectionRestored())
        self._wake.set()

    def _disconnected(self) -> None:
        self._inbox.append(ConnectionLost())
        self._wake.set()

    # -- the service thread: the only one that touches the core ------------------------------

    def _run(self) -> None:
        period = min(0.5, self.settings.heartbeat_s / 2)
        next_tick = time.monotonic() + period
        inbox, wake = self._inbox, self._wake
        while True:
            if not inbox:
                timeout = next_tick - time.monotonic()
                if timeout > 0:
                    wake.wait(timeout)
            wake.clear()
            events: list[Event] = []
            bursts: list[_BurstEnd] = []
            while inbox:
                item = inbox.popleft()
                (bursts if type(item) is _BurstEnd else events).append(item)
            now = Now(time.time(), time.monotonic())
            if now.mono >= next_tick:
                events.append(_TICK)
                next_tick = now.mono + period
            try:
                if events:
                    self._carry_out(self.core.step(events, now))
                if self._reconnected:
                    self._reconnected = False
                    if self.journal.problem:  # found before we were connected (at recovery): say it now
                        self._report_journal_problem(self.journal.problem)
                # Fusion state first: a crash between the two then re-runs a window whose end the journal
                # never saw (same prior, same result), instead of numbering a window twice.
                self.fusion.flush_state()
                self.journal.flush()
            except Exception:  # the service thread must outlive a bug
                log.exception("coordinator step failed")
            finally:
                for burst in bursts:  # what they asked for is on disk now
                    self.bus.ack(burst.acks)
                    if burst.waiter is not None:
                        burst.waiter.release()
            if self._stopping and not inbox:
                return

    def _carry_out(self, actions: Actions) -> None:
        journal = self.journal
        for record in actions.journal:
            if type(record) is JournalAccepted:
                journal.accepted(record.request, record.ts, record.attempt)
            else:
                journal.ended(record.job_id)
        for topic, reason in actions.errors:
            self.bus.report_error(topic, reason)
        publish = self.bus.publish
        for topic, payload, qos, retain in actions.publish:
            publish(topic, payload, qos, retain)

    def _report_journal_problem(self, problem: str) -> None:
        self.bus.report_error(self.topics.submit, problem)

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, connect_timeout_s: float | None = None) -> None:
        self.core.restore(self.journal.recover(), Now(time.time(), time.monotonic()))
        t, door, limit = self.topics, self.ingest, self.settings.max_payload_bytes
        self.bus.subscribe(t.pattern("capabilities"), self._enqueue, door.capabilities, max_bytes=limit)
        self.bus.subscribe(t.pattern("status"), self._enqueue, door.status, max_bytes=limit)
        self.bus.subscribe(t.pattern("heartbeat"), self._enqueue, door.heartbeat, qos=0, max_bytes=4 * limit)
        self.bus.subscribe(t.pattern("declined"), self._enqueue, door.declined, max_bytes=limit)
        self.bus.subscribe(t.pattern("frames"), self._enqueue, door.frame, qos=0, max_bytes=self.settings.max_frame_bytes)
        if self.fusion.groups:
            self.bus.subscribe(t.pattern("sensor"), self._enqueue, door.readings, qos=1, max_bytes=limit)
        self.bus.subscribe(t.submit, self._enqueue, door.submission, max_bytes=limit, refuse_retained=(
            "retained submissions are refused (a retained job would run again at every coordinator restart); "
            "publish without -r; the coordinator has cleared the retained copy"))
        self.bus.subscribe(t.pattern("node_result"), self._enqueue, door.result, max_bytes=16 * limit)
        self.bus.subscribe(t.pattern("node_snapshot"), self._enqueue, door.snapshot, qos=0, max_bytes=self.settings.max_frame_bytes)
        self.bus.on_connect(self._connected)
        self.bus.on_disconnect(self._disconnected)
        self.bus.after_read_burst(self._end_burst)
        self._thread.start()
        try:
            self.bus.start(timeout_s=connect_timeout_s)
        except BaseException:
            self._stop_thread()
            raise
        log.info("coordinator started on %s under %s", self.settings.broker.redacted(), self.settings.prefix)

    def _stop_thread(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(10)

    def stop(self) -> None:
        # The service thread runs on while the bus stops: the network thread may be waiting for it.
        self.bus.stop([Outgoing(self.topics.coordinator_status, b"offline", qos=1, retain=True)])
        self._stop_thread()
        self.journal.close()
        self.fusion.close()

    def run_forever(self) -> None:
        """Start, block until SIGTERM or SIGINT (edgehive.signals: reliably), then stop."""
        stop = Stop().install()
        self.start()
        stop.wait()
        log.info("coordinator: %s, stopping", stop.signal_name)
        self.stop()
