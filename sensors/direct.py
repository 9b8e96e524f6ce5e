"""The camera's end of direct frames: announce, learn the assigned nodes, answer their wants.

Why: through the coordinator a frame costs it a parse, a lease and a second broker crossing
with the JPEG; here the frame crosses the broker once, to the agent that asked for it. The
coordinator keeps the decisions that need one view of the fleet (which nodes may see this
camera, whose results count) and receives only counts and small results.

Newest wins as before: the link holds at most one frame that no agent has asked for yet, and a
newer one replaces it (counted `dropped`). Load balance is per frame: an agent asks again each
time it finishes one, so a fast node asks, and gets, more often than a slow one. A want is
served at once when a frame waits, else with the next frame the camera takes.

Thread-safe: `offer` runs on the capture thread, wants arrive on paho's network thread.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from edgehive.bus import MqttBus
from edgehive.schemas import Topics, decode, encode, envelope
from edgehive.schemas.direct import CameraAssignment, CameraCounts, CameraOffer, DirectFrameMeta, FrameWant, parse_assignment

log = logging.getLogger(__name__)

COUNTS_INTERVAL_S = 1.0
MAX_WANTS_PER_NODE = 64  # a node's wants beyond this are ignored (a bound, not a limit any agent reaches)


@dataclass
class _Waiting:
    jpeg: bytes
    captured: float | None


class DirectLink:
    """One camera's direct path on `bus` (subscribe before `bus.start()`)."""

    def __init__(self, bus: MqttBus, topics: Topics, camera: str, model: str | None = None,
                 clock: Callable[[], float] = time.time,
                 on_demand: Callable[[], tuple[bytes, float | None] | None] | None = None) -> None:
        """`on_demand`: a camera that can take a frame at any moment (a benchmark, a still
        image) makes one, (JPEG, captured), for a want that finds none waiting, instead of
        waiting for its clock; None: not now."""
        self.bus = bus
        self.on_demand = on_demand
        self.topics = topics
        self.camera = camera
        self.model = model or None
        self.boot = secrets.token_hex(6)
        self.clock = clock
        self.started = clock()
        self._lock = threading.Lock()
        self._nodes: frozenset[str] = frozenset()
        self._wants: deque[tuple[str, str]] = deque()  # (node, agent boot), one per frame asked for
        self._waiting: _Waiting | None = None
        self._size: tuple[int, int] | None = None
        self._seq = 0
        self.frames_in = 0
        self.dropped = 0
        self.sent: dict[str, int] = {}  # "{node}/{agent boot}" → frames sent
        self._reported: tuple[int, int, int, int] | None = None
        self._last_report = 0.0
        self._assigned_topic = topics.camera_assigned(camera)
        self._direct_topic = topics.camera_direct(camera)
        self._counts_topic = topics.camera_counts(camera)
        bus.subscribe(self._assigned_topic, self._on_assigned, parse_assignment, qos=1)
        bus.subscribe(topics.camera_want(camera, "x").rpartition("/")[0] + "/+", self._on_want, lambda t, p: decode(FrameWant, p), qos=0)
        bus.on_connect(self._announce)

    # -- state -------------------------------------------------------------------------------

    @property
    def active(self) -> bool:
        """Some node is assigned: frames go to agents, not to `frames/{camera}`."""
        return bool(self._nodes)

    def _announce(self) -> None:
        """On every (re)connect, once the frame size is known: the retained offer."""
        if self._size is None:
            return
        width, height = self._size
        offer = CameraOffer(boot=self.boot, model=self.model, width=width, height=height, ts=self.started)
        self.bus.publish(self._direct_topic, encode(offer), qos=1, retain=True)

    def set_size(self, width: int, height: int) -> None:
        """The camera's frame size (known after its first frame); a change announces again."""
        if self._size != (width, height):
            self._size = (width, height)
            if self.bus.connected.is_set():
                self._announce()

    def withdraw(self) -> None:
        """A clean stop: the offer and its assignment go away (the will does it after a crash)."""
        self.report(force=True)
        self.bus.publish(self._direct_topic, b"", qos=1, retain=True)

    def _on_assigned(self, topic: str, assignment: CameraAssignment | None) -> None:
        if assignment is not None and assignment.boot != self.boot:
            return  # an answer to an earlier run of this camera
        nodes = frozenset(assignment.nodes) if assignment is not None else frozenset()
        with self._lock:
            if nodes == self._nodes:
                return
            self._nodes = nodes
            self._wants = deque(w for w in self._wants if w[0] in nodes)
            if not nodes and self._waiting is not None:
                self._waiting = None  # back to the coordinator's path: the held frame is dropped
                self.dropped += 1
        log.info("camera %s: %s", self.camera, f"frames go directly to {', '.join(sorted(nodes))}" if nodes else "frames go to the coordinator")

    def _on_want(self, topic: str, want: FrameWant) -> None:
        node = topic.rsplit("/", 1)[-1]  # the subscription fixes the shape; only assigned ids are honoured
        with self._lock:
            if node not in self._nodes:
                return  # not assigned (or no longer): its want is not honoured
            for _ in range(min(want.n, MAX_WANTS_PER_NODE - sum(1 for w in self._wants if w[0] == node))):
                self._wants.append((node, want.boot))
            send = self._take()
        if send is not None:
            self._send(*send)
        while self.on_demand is not None:  # every want waiting here gets a fresh frame, oldest want first
            with self._lock:
                if not self._wants:
                    break
            fresh = self.on_demand()
            if fresh is None:
                break
            self.offer(*fresh)

    # -- frames ------------------------------------------------------------------------------

    def offer(self, jpeg: bytes, captured: float | None = None) -> bool:
        """Hand the link a new frame. False: no node is assigned, so the caller sends it on
        `frames/{camera}`; True: it is sent to an agent now, or waits for a want (replacing,
        and dropping, any frame that waited)."""
        with self._lock:
            if not self._nodes:
                return False
            self.frames_in += 1
            if self._waiting is not None:
                self.dropped += 1
            self._waiting = _Waiting(jpeg, captured)
            send = self._take()
        if send is not None:
            self._send(*send)
        self.report()
        return True

    def _take(self) -> tuple[str, str, _Waiting, int] | None:
        """Under the lock: the waiting frame and the want it answers, if both exist."""
        if self._waiting is None or not self._wants:
            return None
        node, agent_boot = self._wants.popleft()
        frame, self._waiting = self._waiting, None
        self._seq += 1
        key = f"{node}/{agent_boot}"
        self.sent[key] = self.sent.get(key, 0) + 1
        return node, agent_boot, frame, self._seq

    def _send(self, node: str, agent_boot: str, frame: _Waiting, seq: int) -> None:
        header = encode(DirectFrameMeta(boot=self.boot, seq=seq, to=agent_boot, captured=frame.captured))
        # QoS 0 like any frame; one that does not make it is counted lost when its node's share ends.
        self.bus.publish(self.topics.node_frames(node, self.camera), envelope.pack(header, frame.jpeg), qos=0)

    # -- counts ------------------------------------------------------------------------------

    def report(self, force: bool = False) -> None:
        """Publish the counts when they changed, at most once per COUNTS_INTERVAL_S (or now, `force`)."""
        now = time.monotonic()
        if not force and now - self._last_report < COUNTS_INTERVAL_S:
            return
        with self._lock:
            sent = dict(self.sent)
            waiting = 1 if self._waiting is not None else 0
            state = (self.frames_in, self.dropped, sum(sent.values()), waiting)
            if state == self._reported and not force:
                return
            self._reported = state
            self._last_report = now
            counts = CameraCounts(boot=self.boot, frames_in=self.frames_in, dropped=self.dropped, waiting=waiting, sent=sent, ts=self.clock())
        self.bus.publish(self._counts_topic, encode(counts), qos=1)
