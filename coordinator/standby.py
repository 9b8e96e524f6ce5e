"""What a standby coordinator keeps so that it can take over without losing a job.

The active coordinator streams, after each step, what it wrote to its own disk (job journal
records and fusion log lines) on `coordinator/journal` at QoS 1, with the keys of the
submissions that step handled. A standby (coordinator/service.py) writes the same records
to its own journal and fusion log (its own `state_dir`), so at takeover it starts exactly as a
restarted coordinator would: journaled open jobs become orphans that the agents' heartbeats
re-adopt, and the fusion groups carry on from the same window number and prior.

Three things a journal cannot hold are kept here, in memory:

- **Submissions.** The standby receives `jobs/submit` too and holds each one until the stream
  says the active one handled it (accepted, answered or refused). At takeover it accepts those
  still held: a job the active one received but died before journaling is not lost. A
  submission is known by its id, or, without one, by its content.
- **Readings.** The readings of the window the active one had open are in no log; the standby
  keeps recent readings and, at takeover, files again those later than each group's last
  closed window, so the windows go on without a gap.
- **The fleet.** The latest capabilities and status of every node (retained messages, already
  received), so that the new active one knows the fleet in its first step.

No I/O here: the service parses with `parse_stream`, feeds `offer` and `apply`, and writes
what `apply` returns.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter, deque
from collections.abc import Sequence
from typing import Any, NamedTuple

import orjson
from pydantic import ValidationError

from edgehive.bus import Rejected
from edgehive.schemas import JobRequest

from .events import (
    CameraOfferIn,
    CapabilitiesIn,
    Event,
    JournalAccepted,
    JournalEnded,
    JournalRecord,
    JournalReplace,
    NodeCleared,
    ReadingsIn,
    StatusIn,
    Submitted,
)
from .fusion_log import FusionWrite

log = logging.getLogger(__name__)

STREAM_VERSION = 1
HELD_MAX = 100_000  # held submissions; beyond it the oldest go (the active one is then far behind its stream)
HANDLED_KEEP_S = 600.0  # a key seen handled before its submission reached us is remembered this long


def submission_key(request: JobRequest) -> str:
    """Its id, or, for a submission without one, a digest of its content (the same on every coordinator)."""
    if request.id is not None:
        return "id:" + request.id
    body = orjson.dumps(request.model_dump(mode="json", exclude_none=True), option=orjson.OPT_SORT_KEYS)
    return "sha:" + hashlib.blake2b(body, digest_size=12).hexdigest()


def submission_key_of(job_id: str) -> str:
    """The key of a submission that carried `job_id` (see `submission_key`)."""
    return "id:" + job_id


class StreamIn(NamedTuple):
    """One message on `coordinator/journal`."""

    topic: str
    sender: str
    epoch: int
    records: list[JournalRecord]
    fusion: FusionWrite | None
    handled: list[str]


def _record_json(record: JournalRecord) -> dict[str, Any]:
    if isinstance(record, JournalAccepted):
        return {"job": record.request.model_dump(mode="json", exclude_none=True), "ts": record.ts, "attempt": record.attempt}
    if isinstance(record, JournalEnded):
        return {"end": record.job_id}
    return {"replace": [{"job": r.model_dump(mode="json", exclude_none=True), "ts": ts, "attempt": a} for r, ts, a in record.jobs]}


def encode_stream(sender: str, epoch: int, records: Sequence[JournalRecord], fusion: FusionWrite | None, handled: Sequence[str]) -> bytes:
    body: dict[str, Any] = {"v": STREAM_VERSION, "from": sender, "epoch": epoch, "records": [_record_json(r) for r in records],
                            "handled": list(handled)}
    if fusion is not None:
        body["fusion"] = {"lines": [orjson.loads(line) for line in fusion.lines], "rewrite": fusion.rewrite}
    return orjson.dumps(body)


def _accepted(entry: dict[str, Any]) -> tuple[JobRequest, float, int]:
    request = JobRequest.model_validate(entry["job"])
    if request.id is None:
        raise ValueError("a journaled job without an id")
    return request, float(entry["ts"]), int(entry.get("attempt", 0))


def parse_stream(topic: str, payload: bytes) -> StreamIn:
    try:
        body = orjson.loads(payload)
        records: list[JournalRecord] = []
        for entry in body["records"]:
            if "end" in entry:
                records.append(JournalEnded(str(entry["end"])))
            elif "replace" in entry:
                records.append(JournalReplace([_accepted(e) for e in entry["replace"]]))
            else:
                records.append(JournalAccepted(*_accepted(entry)))
        fusion = body.get("fusion")
        write = None if fusion is None else FusionWrite([orjson.dumps(line) for line in fusion["lines"]], bool(fusion["rewrite"]))
        return StreamIn(topic, str(body["from"]), int(body["epoch"]), records, write, [str(k) for k in body["handled"]])
    except (orjson.JSONDecodeError, ValidationError, KeyError, TypeError, ValueError) as error:
        raise Rejected(f"not a journal stream message: {error}") from None


class Standby:
    """Held submissions, kept readings and the fleet's retained messages, until a takeover."""

    def __init__(self, readings_keep_s: float, readings_max: int) -> None:
        self.readings_keep_s = readings_keep_s
        self.readings_max = readings_max
        self.caps: dict[str, CapabilitiesIn] = {}  # kept across stints: the retained messages come only once per subscription
        self.statuses: dict[str, StatusIn] = {}
        self.camera_offers: dict[str, CameraOfferIn] = {}  # direct cameras' retained offers, for the same reason
        self._reset()

    def _reset(self) -> None:
        self.held: dict[str, list[tuple[int, Submitted]]] = {}  # key → (connection it came on, submission)
        self.connection = 0  # counts our (re)connections
        self._held_count = 0
        self.handled: Counter[str] = Counter()
        self._handled_at: deque[tuple[float, str]] = deque()
        self.readings: deque[tuple[float, ReadingsIn]] = deque()
        self.synced = False  # a full copy of the active one's journal arrived since we connected
        self.epoch = 0  # the last epoch the stream came from

    def remember(self, event: Event) -> None:
        """The fleet's retained messages, kept while active too: a coordinator deposed and
        standing by again is not sent them a second time."""
        if isinstance(event, CapabilitiesIn):
            self.caps[event.caps.node] = event
        elif isinstance(event, StatusIn):
            self.statuses[event.node] = event
        elif isinstance(event, CameraOfferIn):
            self.camera_offers[event.camera] = event
        elif isinstance(event, NodeCleared):  # the node left the fleet: a takeover must not bring it back
            node = event.topic.rsplit("/", 2)[-2]
            (self.caps if event.topic.endswith("/capabilities") else self.statuses).pop(node, None)

    def offer(self, event: Event, now: float) -> None:
        """An event the door parsed while we stand by: kept if a takeover will need it."""
        if isinstance(event, Submitted):
            self._hold(event)
        elif isinstance(event, CapabilitiesIn | StatusIn | NodeCleared | CameraOfferIn):
            self.remember(event)
        elif isinstance(event, ReadingsIn):
            self.readings.append((now, event))
            while self.readings and (len(self.readings) > self.readings_max or self.readings[0][0] < now - self.readings_keep_s):
                self.readings.popleft()

    def _hold(self, event: Submitted) -> None:
        key = submission_key(event.request)
        if self.handled[key] > 0:  # the stream was faster than the submission
            self.handled[key] -= 1
            return
        kept = self.held.setdefault(key, [])
        if kept and key.startswith("id:"):
            return  # a resubmission of an id we hold already: one job
        kept.append((self.connection, event))
        self._held_count += 1
        if self._held_count > HELD_MAX:
            oldest = next(iter(self.held))
            log.warning("standby: %d submissions held, none seen handled by the active coordinator; dropping the oldest", HELD_MAX)
            self._release(oldest)

    def _release(self, key: str) -> bool:
        kept = self.held.get(key)
        if not kept:
            return False
        kept.pop(0)
        self._held_count -= 1
        if not kept:
            del self.held[key]
        return True

    def reconnected(self) -> None:
        """A new connection: what the stream said while we were away may be lost (amqtt keeps
        nothing for us), so the full copy it brings next also settles what we held before."""
        self.connection += 1
        self.synced = False

    def ended(self, job_id: str) -> None:
        """The active one published the job's final state: a held submission of it is handled."""
        self._release("id:" + job_id)

    def apply(self, stream: StreamIn, now: float) -> list[JournalRecord]:
        """A stream message: forget what it handled; return its records, for our own journal."""
        self.epoch = max(self.epoch, stream.epoch)
        for key in stream.handled:
            if not self._release(key):
                self.handled[key] += 1
                self._handled_at.append((now, key))
        while self._handled_at and self._handled_at[0][0] < now - HANDLED_KEEP_S:
            _, key = self._handled_at.popleft()
            if self.handled[key] > 0:
                self.handled[key] -= 1
            if self.handled[key] <= 0:
                del self.handled[key]
        for record in stream.records:
            if isinstance(record, JournalReplace):
                self.synced = True
                for request, _, _ in record.jobs:  # held and already journaled (before we joined the stream)
                    assert request.id is not None
                    self._release("id:" + request.id)
                self._drop_held_before(self.connection)
        return stream.records

    def _drop_held_before(self, connection: int) -> None:
        """Submissions held from an earlier connection: the active coordinator received them
        before it was asked for this copy (the asking came after them, on our new connection),
        so it has handled them; what the stream said about them may have been lost meanwhile."""
        for key in list(self.held):
            kept = [entry for entry in self.held[key] if entry[0] >= connection]
            self._held_count -= len(self.held[key]) - len(kept)
            if kept:
                self.held[key] = kept
            else:
                del self.held[key]

    def takeover(self) -> list[Event]:
        """Everything a new active coordinator needs first, in order: the fleet, the held
        submissions, the kept readings (to be filed again where still open); then forget them."""
        events: list[Event] = [*self.caps.values(), *self.statuses.values(), *self.camera_offers.values()]
        events += [event for kept in self.held.values() for _, event in kept]
        events += [event._replace(replayed=True) for _, event in self.readings]
        held = self._held_count
        connection = self.connection
        self._reset()  # back to empty, for a later stint as standby (the fleet stays: see `remember`)
        self.connection = connection
        if held:
            log.warning("taking over %d submissions the active coordinator never journaled", held)
        return events
