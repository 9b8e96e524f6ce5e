"""The agent's end of direct frames: ask the assigned cameras for frames, run each as a job.

Why: a frame through the coordinator crosses the broker twice with its JPEG and costs the
coordinator a lease; a camera that offers direct frames (`edgehive camera`, sensors/direct.py)
sends each frame once, straight to the agent that asked for it. The coordinator still says
which cameras this node may serve (`cameras/{camera}/assigned`) and checks every result.

Wants are credits: this node never has more frames asked for or held than its slots, so a
frame never waits here behind others (newest wins at the camera, not in our queue). Each
finished frame asks again, round robin over the assigned cameras, so a fast node asks more
often than a slow one: per-frame load balance with no scheduler in the path. A frame this node
cannot take after all (its slots went to jobs, it is draining) goes back as a `retryable`
refusal on its results topic, which the coordinator counts as dropped.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from edgehive.bus import MqttBus
from edgehive.schemas import Job, Result, Timings, Topics, decode, encode, envelope
from edgehive.schemas.base import IDENT_PATTERN
from edgehive.schemas.direct import (
    DIRECT_JOB_PREFIX,
    CameraAssignment,
    CameraOffer,
    DirectFrameMeta,
    FrameWant,
    parse_assignment,
    parse_offer,
)
from edgehive.schemas.kinds import DETECT_KIND

from .runner import JobRunner

log = logging.getLogger(__name__)
T = TypeVar("T")

_IDENT = re.compile(IDENT_PATTERN)
WANT_EXPIRY_S = 10.0  # a want never answered (lost with a connection, a camera gone quiet) is asked again elsewhere


def parse_direct_frame(topic: str, payload: bytes) -> tuple[DirectFrameMeta, bytes]:
    header, jpeg = envelope.unpack(payload)
    envelope.check_jpeg(jpeg)
    return decode(DirectFrameMeta, header), jpeg


@dataclass
class _Camera:
    boot: str
    params: dict[str, Any]
    asked: list[float] = field(default_factory=list)  # monotonic times of wants not yet answered


class DirectFrames:
    """Wants, frames and refusals for one agent; `start()` before the bus connects."""

    def __init__(self, node: str, boot_id: str, bus: MqttBus, topics: Topics, runner: JobRunner,
                 models: Callable[[], list[str]], draining: threading.Event) -> None:
        self.node = node
        self.boot_id = boot_id
        self.bus = bus
        self.topics = topics
        self.runner = runner
        self.models = models
        self.draining = draining
        self.budget = runner.capacity
        self._lock = threading.Lock()
        self._cameras: dict[str, _Camera] = {}
        # Each camera's offer and the coordinator's answer, as last seen: a camera is served only
        # while both name the same camera boot (a retained assignment can outlive its camera).
        self._offers: dict[str, str] = {}
        self._assignments: dict[str, CameraAssignment] = {}
        self._turn = 0
        self._want_payloads: dict[int, bytes] = {}  # n → the encoded want (the boot never changes)
        self._held = 0  # direct frames accepted by the runner and not yet finished
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._expire_loop, name="direct-wants", daemon=True)

    def start(self) -> None:
        frames = self.topics.node_frames(self.node, "x").rpartition("/")[0] + "/+"
        self.bus.subscribe(self.topics.pattern("camera_direct"), self._on_offer, parse_offer, qos=1)
        self.bus.subscribe(self.topics.pattern("camera_assigned"), self._on_assigned, parse_assignment, qos=1)
        self.bus.subscribe(frames, self._on_frame, parse_direct_frame, qos=0, max_bytes=16 << 20)
        self.bus.on_connect(self._on_connect)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    # -- assignment --------------------------------------------------------------------------

    def _on_offer(self, topic: str, offer: CameraOffer | None) -> None:
        self._remember(self._offers, topic, None if offer is None else offer.boot)

    def _on_assigned(self, topic: str, assignment: CameraAssignment | None) -> None:
        self._remember(self._assignments, topic, assignment)

    def _remember(self, seen: dict[str, T], topic: str, value: T | None) -> None:
        """A camera's retained offer or assignment, or its clearing; then serve it or not."""
        camera = self.topics.parse(topic).extra.get("camera")
        assert camera is not None
        with self._lock:
            if value is None:
                seen.pop(camera, None)
            else:
                seen[camera] = value
        self._update(camera)

    def _update(self, camera: str) -> None:
        """Serve `camera` while its offer and its assignment agree and name this node and a model it has."""
        with self._lock:
            assignment = self._assignments.get(camera)
        mine = (assignment is not None and self.node in assignment.nodes and self._offers.get(camera) == assignment.boot
                and assignment.params.get("model") in self.models())
        with self._lock:
            current = self._cameras.get(camera)
            if not mine:
                if current is not None:
                    del self._cameras[camera]
                    log.info("direct frames of camera %s: no longer assigned here", camera)
                return
            assert assignment is not None
            if current is None or current.boot != assignment.boot:
                log.info("direct frames of camera %s: assigned here (model %s)", camera, assignment.params.get("model"))
                self._cameras[camera] = _Camera(assignment.boot, dict(assignment.params))
            else:
                current.params = dict(assignment.params)
            wants = self._plan_wants()
        self._send_wants(wants)

    def _on_connect(self) -> None:
        """Wants sent before a reconnect may be lost with it (QoS 0): ask afresh."""
        with self._lock:
            for camera in self._cameras.values():
                camera.asked.clear()
            wants = self._plan_wants()
        self._send_wants(wants)

    # -- wants -------------------------------------------------------------------------------

    def _plan_wants(self) -> dict[str, int]:
        """Under the lock: the free budget as wants, round robin over the assigned cameras."""
        if self.draining.is_set() or not self._cameras:
            return {}
        free = self.budget - self._held - sum(len(c.asked) for c in self._cameras.values())
        names = sorted(self._cameras)
        wants: dict[str, int] = {}
        now = time.monotonic()
        for _ in range(max(0, free)):
            self._turn = (self._turn + 1) % len(names)
            camera = names[self._turn]
            self._cameras[camera].asked.append(now)
            wants[camera] = wants.get(camera, 0) + 1
        return wants

    def _send_wants(self, wants: dict[str, int]) -> None:
        for camera, n in wants.items():
            payload = self._want_payloads.get(n)
            if payload is None:
                payload = self._want_payloads[n] = encode(FrameWant(boot=self.boot_id, n=n))
            self.bus.publish(self.topics.camera_want(camera, self.node), payload, qos=0)

    def _expire_loop(self) -> None:
        while not self._stop.wait(1.0):
            now = time.monotonic()
            with self._lock:
                for camera in self._cameras.values():
                    camera.asked = [t for t in camera.asked if now - t < WANT_EXPIRY_S]
                wants = self._plan_wants()
            self._send_wants(wants)

    # -- frames ------------------------------------------------------------------------------

    def _on_frame(self, topic: str, frame: tuple[DirectFrameMeta, bytes]) -> None:
        meta, jpeg = frame
        received = time.time()
        camera = topic.rsplit("/", 1)[-1]  # the subscription fixes the shape; the id is checked here
        if meta.to != self.boot_id or not _IDENT.fullmatch(camera):
            return  # meant for an earlier boot of this node: that boot's share is counted lost
        with self._lock:
            state = self._cameras.get(camera)
            if state is not None and state.asked:
                state.asked.pop(0)
            params = dict(state.params) if state is not None else None
        # Built from checked parts (the header, the assignment, this agent's own ids): no second validation per frame.
        job = Job.model_construct(id=f"{DIRECT_JOB_PREFIX}{meta.boot}.{meta.seq}", kind=DETECT_KIND,
                                  params={**(params or {}), "camera": camera, "captured": meta.captured},
                                  source=camera, attempt=1, boot_id=self.boot_id, submitted=meta.captured or received,
                                  dispatched=received, deadline=None, epoch=None)
        reason = None
        if params is None:
            reason = "camera is not assigned to this node"
        elif self.draining.is_set():
            reason = "node is draining"
        else:
            with self._lock:
                self._held += 1
            # A want goes out with a result, before its job leaves the runner: the runner counts
            # a job whose result is being published as no longer using its slot.
            if not self.runner.try_accept(job, received, jpeg):
                with self._lock:
                    self._held -= 1
                reason = f"node is full ({self.runner.capacity} jobs)"
        if reason is not None:
            self._refuse(job, received, reason)

    def _refuse(self, job: Job, received: float, reason: str) -> None:
        refusal = Result(job_id=job.id, kind=job.kind, node=self.node, source=job.source, ok=False, error=reason,
                         retryable=True, timings=Timings(captured=job.params.get("captured"), received=received))
        self.bus.publish(self.topics.node_results(self.node), encode(refusal), qos=1)
        self.finished()

    def handed_back(self, job: Job, received: float, reason: str) -> None:
        """The runner gave a held direct frame back (it waited too long for a worker): refused."""
        with self._lock:
            self._held = max(0, self._held - 1)
        self._refuse(job, received, reason)

    def finished(self, result: Result | None = None) -> None:
        """A direct frame's result went out (or it was refused): ask for the next one."""
        with self._lock:
            if result is not None:
                self._held = max(0, self._held - 1)
            wants = self._plan_wants()
        self._send_wants(wants)


def is_direct(job_id: str) -> bool:
    return job_id.startswith(DIRECT_JOB_PREFIX)
