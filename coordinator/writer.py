"""The coordinator's disk I/O, on a thread of its own: the job journal and the fusion log.

The thread that owns the coordinator's state (the MQTT network thread, coordinator/service.py)
never touches the disk: after each step it hands this thread the journal records and fusion
log lines the step produced, with the acknowledgements of the messages that led to them. This
thread writes and flushes them to the OS (fusion state first: a crash between the two then
re-runs a window whose end the journal never saw, with the same prior and the same result,
instead of numbering a window twice), and only then sends those acknowledgements: a submission
the broker saw acknowledged is on disk, and a slow disk delays acknowledgements, never the
fleet. While the journal is broken it retries the rewrite on its backoff.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Sequence
from typing import NamedTuple

from edgehive.bus import MqttBus, PendingAcks

from .events import JournalAccepted, JournalEnded, JournalRecord
from .fusion_log import FusionLog, FusionWrite
from .journal import JobJournal

log = logging.getLogger(__name__)

_BROKEN_RETRY_S = 0.5  # how often a broken journal gets the chance to heal (it keeps its own backoff)


class WriteBatch(NamedTuple):
    journal: Sequence[JournalRecord]
    fusion: FusionWrite | None
    acks: PendingAcks | None
    written: threading.Event | None = None  # set once this batch (and every one before it) is written


class StateWriter:
    def __init__(self, journal: JobJournal, fusion_log: FusionLog | None, bus: MqttBus) -> None:
        self.journal = journal
        self.fusion_log = fusion_log
        self.bus = bus
        self.durable = journal.path is not None or fusion_log is not None  # anything to write at all
        self._queue: queue.SimpleQueue[WriteBatch | None] = queue.SimpleQueue()
        self._sent = 0  # batches carrying acknowledgements, put (owner thread only)
        self._acked = 0  # and acknowledged (this thread only)
        self._thread = threading.Thread(target=self._run, name="coordinator-writer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def put(self, batch: WriteBatch) -> None:
        if batch.acks is not None and batch.acks.mids:
            self._sent += 1
        self._queue.put(batch)

    def barrier(self, timeout_s: float = 10.0) -> bool:
        """Wait until everything handed over so far is on disk: a standby taking over reads the
        files next. True if it was (a writer stuck for `timeout_s` is reported by the caller)."""
        if not self._thread.is_alive():
            return True
        written = threading.Event()
        self._queue.put(WriteBatch((), None, None, written))
        return written.wait(timeout_s)

    def acks_pending(self) -> bool:
        """Acknowledgements handed over and not yet sent: later ones must queue behind them (MQTT
        acknowledges in order)."""
        return self._sent != self._acked

    def stop(self) -> None:
        """Write what is queued, then close the files."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(10)
        self.journal.close()
        if self.fusion_log is not None:
            self.fusion_log.close()

    def _run(self) -> None:
        while True:
            try:
                first = self._queue.get(timeout=_BROKEN_RETRY_S if self.journal.broken else None)
            except queue.Empty:
                self.journal.flush()  # heals when its backoff has passed
                continue
            batches = [first]
            while not self._queue.empty():
                batches.append(self._queue.get_nowait())
            stop = None in batches
            try:
                self._write([b for b in batches if b is not None])
            except Exception:  # the writer must outlive a bug; the journal reports its own failures
                log.exception("writing the coordinator's state failed")
            for batch in batches:
                if batch is not None and batch.acks is not None and batch.acks.mids:
                    self.bus.ack(batch.acks)
                    self._acked += 1
                if batch is not None and batch.written is not None:
                    batch.written.set()
            if stop:
                return

    def _write(self, batches: list[WriteBatch]) -> None:
        if self.fusion_log is not None:
            for batch in batches:
                if batch.fusion is not None:
                    try:
                        self.fusion_log.write(batch.fusion)
                    except OSError as error:
                        log.error("fusion state %s could not be written: %s", self.fusion_log.path, error)
        journal = self.journal
        for batch in batches:
            for record in batch.journal:
                if isinstance(record, JournalAccepted):
                    journal.accepted(record.request, record.ts, record.attempt)
                elif isinstance(record, JournalEnded):
                    journal.ended(record.job_id)
                else:
                    journal.replace(record.jobs)
        journal.flush()
