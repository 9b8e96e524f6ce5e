"""The coordinator process: the broker connection, the disk, and the one thread that owns the core.

Threads, and what each may touch:

- The MQTT client's network thread owns the core (coordinator/core.py) and is the only thread
  that changes the coordinator's state, so there is no lock. Each message is parsed and
  checked at the door (coordinator/ingest.py) and queued as an event; after each read burst
  the queued events go to the core as one step, and what it returns is published at once, from
  this thread, in the write that follows the read. The same thread runs the periodic work (a
  tick every half heartbeat, at most 0.5 s) between reads.
- The writer thread (coordinator/writer.py) does all disk I/O: journal records and fusion log
  lines from each step, then the acknowledgements of the messages that step handled. The bus
  holds those back (`defer_acks`) until then, so a submission the broker saw acknowledged is
  in the journal, and a slow disk never stalls the network thread.

A message handed from one thread to another costs a wake-up, which on a busy 2-core machine is
0.1–0.4 ms per hop (BENCHMARKS.md): the path of a job (submission, placement, result, relay)
therefore stays on one thread, and only the disk, whose acknowledgements nobody waits on, is
handed off.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

from edgehive import gctune
from edgehive.bus import MqttBus, Outgoing, PendingAcks
from edgehive.schemas import Topics
from edgehive.signals import Stop

from .core import CoordinatorCore
from .events import ConnectionLost, ConnectionRestored, Event, HeartbeatIn, JournalRecord, Now, Tick
from .fusion import FusionWindows
from .ingest import Ingest
from .journal import JobJournal
from .settings import CoordinatorSettings
from .writer import StateWriter, WriteBatch

log = logging.getLogger(__name__)

_TICK = Tick()
# The coordinator is behind its input when more than this is left unread (our buffer and the
# socket's): four reads' worth, ~40 ms of heartbeats from 5,000 nodes, never a healthy loop's
# leftover; or when its last step took longer than SLOW_STEP of a heartbeat period.
BEHIND_BYTES = 256 * 1024
SLOW_STEP = 0.25
BIG_BURST = 64  # events in one step; a 64 KiB read holds ~250 heartbeats
# After a read that brought a few heartbeats and nothing else, the next read waits this long, so
# a big fleet's heartbeats (spread evenly over the second) are taken in tens per wake-up instead
# of one: each wake-up (select, recv, paho's loop, a core step) cost more than the heartbeat it
# read. A job or result arriving in that pause waits for it, once: the pause follows only steps
# that had no job-path message and sent nothing, so a busy coordinator never pauses.
COALESCE_S = 0.002


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
        self.ingest = Ingest(self.topics, cameras, settings.sensor_max_future_s, settings.sensor_max_age_s)
        self.bus = MqttBus(
            settings.broker, self.topics, f"edgehive-coordinator-{settings.prefix.replace('/', '-')}",
            source="coordinator",
            will=Outgoing(self.topics.coordinator_status, b"offline", qos=1, retain=True),
            clean_session=False,  # on Mosquitto, submissions made while we restart are queued for us
            max_payload_bytes=settings.max_payload_bytes,
            defer_acks=True,
        )
        self.writer = StateWriter(JobJournal(journal_path, on_error=self._report_journal_problem), self.fusion.log, self.bus)
        self._events: list[Event] = []  # queued by the door, taken by the next step (network thread only)
        self._slow_step = False

    # -- the network thread ------------------------------------------------------------------

    def _enqueue(self, topic: str, event: Event) -> None:
        self._events.append(event)

    def _after_burst(self) -> None:
        """After each read burst: one step for everything it brought. A burst of heartbeats alone,
        that asked nothing to be sent, is followed by a short pause before the next read, so that
        a big fleet's heartbeats are read many at a time rather than one wake-up each (see
        COALESCE_S)."""
        if self._step(self.bus.take_acks()):
            time.sleep(COALESCE_S)

    def _tick(self) -> None:
        self._events.append(_TICK)
        self._step(None)

    def _connected(self) -> None:
        self._events.append(ConnectionRestored())
        problem = self.writer.journal.problem
        if problem:  # found before we were connected (at recovery), or still unhealed: say it now
            self._report_journal_problem(problem)

    def _disconnected(self) -> None:
        self._events.append(ConnectionLost())

    def _step(self, acks: PendingAcks | None) -> bool:
        """One step of the core; True when it took only a few heartbeats and sent nothing."""
        events, self._events = self._events, []
        journal: Sequence[JournalRecord] = ()
        fusion = None
        quiet = False
        if events:
            started = time.monotonic()
            # The unread count is a system call: asked only where it can matter, at a tick (where
            # silence is judged) or after a big burst; a burst of a few messages came from a read
            # that emptied the socket (at 5,000 nodes the call was a tenth of the steady CPU).
            behind = self._slow_step or ((len(events) > BIG_BURST or events[-1] is _TICK) and self.bus.unread_bytes() > BEHIND_BYTES)
            actions = self.core.step(events, Now(time.time(), started), behind)
            self._slow_step = time.monotonic() - started > SLOW_STEP * self.settings.heartbeat_s
            for topic, reason in actions.errors:
                self.bus.report_error(topic, reason)
            publish = self.bus.publish
            for topic, payload, qos, retain in actions.publish:
                publish(topic, payload, qos, retain)
            journal = actions.journal
            fusion = self.fusion.take_state()
            quiet = not actions.publish and len(events) < BIG_BURST and all(type(event) is HeartbeatIn for event in events)
        writer = self.writer
        if writer.durable and (journal or fusion is not None or writer.acks_pending()):
            writer.put(WriteBatch(journal, fusion, acks))
        elif acks is not None:
            self.bus.ack(acks)  # nothing to wait for: acknowledged in the write that follows this read
        return quiet

    def _report_journal_problem(self, problem: str) -> None:
        self.bus.report_error(self.topics.submit, problem)

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, connect_timeout_s: float | None = None) -> None:
        self.core.restore(self.writer.journal.recover(), Now(time.time(), time.monotonic()))
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
        if self.settings.ha_discovery_prefix:  # Home Assistant's birth: every discovery config again
            self.bus.subscribe(f"{self.settings.ha_discovery_prefix}/status", self._enqueue, door.ha_status, max_bytes=limit)
        self.bus.on_connect(self._connected)
        self.bus.on_disconnect(self._disconnected)
        self.bus.after_read_burst(self._after_burst)
        self.bus.every(min(0.5, self.settings.heartbeat_s / 2), self._tick)
        self.writer.start()
        try:
            self.bus.start(timeout_s=connect_timeout_s)
        except BaseException:
            self.writer.stop()
            raise
        log.info("coordinator started on %s under %s", self.settings.broker.redacted(), self.settings.prefix)

    def stop(self) -> None:
        self.bus.stop([Outgoing(self.topics.coordinator_status, b"offline", qos=1, retain=True)])
        self.writer.stop()

    def run_forever(self) -> None:
        """Start, block until SIGTERM or SIGINT (edgehive.signals: reliably), then stop."""
        stop = Stop().install()
        gctune.tune()  # the heap of a big fleet made the cycle collector a fifth of the work
        self.start()
        stop.wait()
        log.info("coordinator: %s, stopping", stop.signal_name)
        self.stop()
