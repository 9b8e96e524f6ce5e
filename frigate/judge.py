"""Which snapshot belongs to which Frigate event, when it goes to the fleet, and every verdict.

Frigate's snapshot topic (`frigate/{camera}/{label}/snapshot`, retained) names no event, so
events and snapshots are paired by camera and label:

- An event is judged with the newest snapshot of its camera and label received at most
  `snapshot_max_age_s` before the event (Frigate publishes it when it starts tracking the
  object, usually a moment before the `new` event; a retained one counts from when the bridge
  received it), or else with the first one that arrives within `snapshot_wait_s` after it.
  No snapshot by then (or only a refused one): the verdict is ok:false and says so.
- Each event is judged once, on its first snapshot. Frigate keeps publishing `update`s and
  better snapshots while it tracks the object; re-judging them would cost the fleet a job for
  every update of a busy camera and flip the Home Assistant entities back and forth, so later
  updates and snapshots do not change a verdict. An `update` for an event the bridge never saw
  (it started mid-event) is judged like a `new` one; an `end` for one is not (it is over).
- The snapshots of one camera go to the fleet one at a time, as frames of the edgehive camera
  `{camera_prefix}{camera}`: the coordinator keeps only the newest waiting frame of a camera
  (it is built for live video), so a second frame sent before the first came back could replace
  it, and a result is matched to its frame by the capture time the frame carried. Different
  cameras run in parallel on the fleet. A frame whose result does not come within
  `job_timeout_s` gets an ok:false verdict and the camera's next snapshot goes.

Everything here runs on the MQTT client's network thread (handlers and the periodic tick), so
it needs no lock; it talks to the outside only through `Outlet`.
"""

from __future__ import annotations

import logging
import re
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import orjson

from edgehive.schemas import envelope
from edgehive.schemas.base import IDENT_PATTERN
from edgehive.schemas.frigate import FrigateVerdict
from edgehive.schemas.messages import Result
from edgehive.schemas.vision import DetectionOutput

from .events import FrigateEvent, FrigateObject, Snapshot
from .verdict import Rules, failed, judged

log = logging.getLogger(__name__)

_IDENT = re.compile(IDENT_PATTERN)
SEEN_KEPT = 4096  # event ids remembered as judged (or being judged), the oldest forgotten first
SNAPSHOTS_KEPT = 1024  # cameras × labels


class Outlet(Protocol):
    """What the judge does to the world (frigate/service.py: the bus; tests: lists)."""

    def send_frame(self, source: str, payload: bytes) -> None: ...

    def verdict(self, verdict: FrigateVerdict) -> None: ...

    def report(self, topic: str, reason: str) -> None: ...

    def new_camera(self, camera: str, source: str) -> None: ...


@dataclass(frozen=True)
class Limits:
    snapshot_wait_s: float = 10.0
    snapshot_max_age_s: float = 30.0
    job_timeout_s: float = 30.0
    queue_max: int = 32


@dataclass
class Pending:
    """One event on its way to a verdict."""

    obj: FrigateObject
    source: str
    arrived: float
    jpeg: bytes = b""
    started: float = 0.0  # the event or its snapshot, whichever came last
    captured: float | None = None  # the frame's capture stamp, which its result repeats
    sent: float | None = None


@dataclass
class _Held:
    jpeg: bytes
    arrived: float


@dataclass
class Judge:
    rules: Rules
    outlet: Outlet
    limits: Limits = field(default_factory=Limits)
    frigate_prefix: str = "frigate"
    camera_prefix: str = "frigate."
    model: str = ""
    cameras: frozenset[str] = frozenset()  # empty: every camera
    labels: frozenset[str] = frozenset()  # empty: every label
    clock: Callable[[], float] = time.monotonic
    wall: Callable[[], float] = time.time

    def __post_init__(self) -> None:
        self.snapshots: dict[tuple[str, str], _Held] = {}
        self.refused: dict[tuple[str, str], str] = {}
        self.waiting: dict[tuple[str, str], list[Pending]] = {}
        self.queues: dict[str, deque[Pending]] = {}
        self.in_flight: dict[str, Pending] = {}
        self.seen: OrderedDict[str, None] = OrderedDict()
        self.known_cameras: set[str] = set()
        self.refused_cameras: set[str] = set()
        self._last_stamp: dict[str, float] = {}

    # -- input ---------------------------------------------------------------------------------

    def on_event(self, event: FrigateEvent) -> None:
        obj = event.after
        if obj.false_positive or obj.id in self.seen:
            return  # judged once (or being judged): later updates change nothing
        if event.type == "end":
            log.debug("event %s ended before the bridge saw it: not judged", obj.id)
            return
        if self.cameras and obj.camera not in self.cameras:
            if obj.camera not in self.refused_cameras:
                self.refused_cameras.add(obj.camera)
                self.outlet.report(f"{self.frigate_prefix}/events", f"events of camera {obj.camera!r} are ignored: it is not in "
                                   f"EDGEHIVE_FRIGATE_CAMERAS ({', '.join(sorted(self.cameras))}); said once per camera")
            return
        if self.labels and obj.label not in self.labels:
            log.debug("event %s: label %s is not judged (EDGEHIVE_FRIGATE_LABELS)", obj.id, obj.label)
            return
        source = self.camera_prefix + obj.camera
        if not _IDENT.fullmatch(source):
            self.outlet.report(f"{self.frigate_prefix}/events", f"camera {obj.camera!r} with prefix {self.camera_prefix!r} makes "
                               f"{source!r}, longer than an edgehive camera id may be (64)")
            return
        self._remember(obj.id)
        if obj.camera not in self.known_cameras:
            self.known_cameras.add(obj.camera)
            self.outlet.new_camera(obj.camera, source)
        now = self.clock()
        pending = Pending(obj, source, arrived=now)
        key = (obj.camera, obj.label)
        held = self.snapshots.get(key)
        if held is not None and now - held.arrived <= self.limits.snapshot_max_age_s:
            self._with_snapshot(pending, held.jpeg, now)
        else:
            self.waiting.setdefault(key, []).append(pending)

    def on_snapshot(self, snapshot: Snapshot) -> None:
        key = (snapshot.camera, snapshot.label)
        now = self.clock()
        if key in self.snapshots or len(self.snapshots) < SNAPSHOTS_KEPT:
            self.snapshots[key] = _Held(snapshot.jpeg, now)
        self.refused.pop(key, None)
        for pending in self.waiting.pop(key, []):
            self._with_snapshot(pending, snapshot.jpeg, now)

    def on_snapshot_refused(self, camera: str, label: str, reason: str) -> None:
        """The events waiting for this snapshot learn at once that it will not do."""
        key = (camera, label)
        if key in self.refused or len(self.refused) < SNAPSHOTS_KEPT:
            self.refused[key] = reason
        for pending in self.waiting.pop(key, []):
            self._fail(pending, f"the snapshot on {self._snapshot_topic(key)} was refused: {reason}")

    def on_result(self, source: str, result: Result[DetectionOutput]) -> None:
        pending = self.in_flight.get(source)
        if pending is None or result.timings.captured != pending.captured:
            return  # another frame of that camera (someone else's), or one given up already
        del self.in_flight[source]
        assert pending.sent is not None
        self.outlet.verdict(judged(self.rules, pending.obj, source, result, pending.started, pending.sent, self.clock()))
        self._pump(source)

    def tick(self) -> None:
        """Events whose snapshot never came, and snapshots whose result never came."""
        now = self.clock()
        for key in list(self.waiting):
            late = [p for p in self.waiting[key] if now - p.arrived > self.limits.snapshot_wait_s]
            if not late:
                continue
            self.waiting[key] = [p for p in self.waiting[key] if p not in late]
            if not self.waiting[key]:
                del self.waiting[key]
            topic = self._snapshot_topic(key)
            refused = self.refused.get(key)
            reason = (f"the snapshot on {topic} was refused: {refused}" if refused else
                      f"no snapshot on {topic} within {self.limits.snapshot_wait_s:g} s of the event "
                      "(does Frigate publish MQTT snapshots for this camera? cameras.<name>.mqtt in its config)")
            for pending in late:
                self.outlet.report(topic, f"event {pending.obj.id}: {reason}")
                self._fail(pending, reason)
        for source, pending in list(self.in_flight.items()):
            assert pending.sent is not None
            if now - pending.sent > self.limits.job_timeout_s:
                del self.in_flight[source]
                reason = (f"no result from the fleet within {self.limits.job_timeout_s:g} s for frames/{source} (is the coordinator "
                          f"up, and an agent with the camera's model online? see the errors topic)")
                self.outlet.report(f"frames/{source}", f"event {pending.obj.id}: {reason}")
                self._fail(pending, reason)
                self._pump(source)

    # -- inside ----------------------------------------------------------------------------------

    def _with_snapshot(self, pending: Pending, jpeg: bytes, now: float) -> None:
        pending.jpeg, pending.started = jpeg, now
        queue = self.queues.setdefault(pending.source, deque())
        if len(queue) >= self.limits.queue_max:
            self._fail(pending, f"{len(queue)} events of camera {pending.obj.camera} already wait for the fleet (EDGEHIVE_FRIGATE_QUEUE_MAX)")
            return
        queue.append(pending)
        self._pump(pending.source)

    def _pump(self, source: str) -> None:
        """Send the camera's next snapshot if none of its is at the fleet."""
        queue = self.queues.get(source)
        if source in self.in_flight or not queue:
            return
        pending = queue.popleft()
        if not queue:
            del self.queues[source]
        stamp = max(self.wall(), self._last_stamp.get(source, 0.0) + 1e-3)  # unique per camera: it names the result
        self._last_stamp[source] = stamp
        header: dict[str, object] = {"v": 1, "captured": stamp}
        if self.model:
            header["model"] = self.model
        pending.captured, pending.sent = stamp, self.clock()
        self.in_flight[source] = pending
        self.outlet.send_frame(source, envelope.pack(orjson.dumps(header), pending.jpeg))

    def _fail(self, pending: Pending, reason: str) -> None:
        started = pending.started or pending.arrived
        self.outlet.verdict(failed(self.rules, pending.obj, pending.source, reason, started, pending.sent, self.clock()))

    def _remember(self, event_id: str) -> None:
        self.seen[event_id] = None
        while len(self.seen) > SEEN_KEPT:
            self.seen.popitem(last=False)

    def _snapshot_topic(self, key: tuple[str, str]) -> str:
        return f"{self.frigate_prefix}/{key[0]}/{key[1]}/snapshot"
