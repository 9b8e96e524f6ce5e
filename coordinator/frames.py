"""Frames in flight: the newest frame per camera, and per-camera counters.

Frames are real time: when every slot is busy only the newest frame of each camera is
kept, and each frame it replaces is counted as dropped. A frame on a node that dies is
not retried (a newer one is already waiting); it is counted as lost, until its result comes
after all from the node it was sent to (then it is done, and the result is relayed). Frames never enter
the job journal or the job-state stream: at 5–30 frames per second per camera that
would cost more than the detections.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from dataclasses import dataclass, field

from edgehive.schemas.vision import CameraConfig

_GIVEN_UP_KEPT = 1024  # lost frames remembered, so that a late result still finds its node


@dataclass
class Frame:
    camera: str
    jpeg: bytes
    model: str
    arrived: float
    captured: float | None = None
    config: CameraConfig = field(default_factory=CameraConfig)


@dataclass
class FrameJob:
    camera: str
    node: str
    dispatched_mono: float


@dataclass
class FrameRouter:
    pending: dict[str, Frame] = field(default_factory=dict)
    in_flight: dict[str, FrameJob] = field(default_factory=dict)
    received: Counter[str] = field(default_factory=Counter)
    done: Counter[str] = field(default_factory=Counter)
    dropped: Counter[str] = field(default_factory=Counter)
    lost: Counter[str] = field(default_factory=Counter)
    given_up: OrderedDict[str, FrameJob] = field(default_factory=OrderedDict)
    _turn: int = 0

    def offer(self, frame: Frame) -> None:
        """Keep `frame` as its camera's next; the one it replaces is dropped."""
        self.received[frame.camera] += 1
        if frame.camera in self.pending:
            self.dropped[frame.camera] += 1
        self.pending[frame.camera] = frame

    def waiting(self) -> list[Frame]:
        """Pending frames, starting with a different camera each round so that none starves."""
        frames = list(self.pending.values())
        if not frames:
            return frames
        self._turn = (self._turn + 1) % len(frames)
        return frames[self._turn:] + frames[:self._turn]

    def sent(self, job_id: str, frame: Frame, node: str, now_mono: float) -> None:
        del self.pending[frame.camera]
        self.in_flight[job_id] = FrameJob(frame.camera, node, now_mono)

    def sent_to(self, job_id: str) -> FrameJob | None:
        """The frame job in flight, or given up on but still remembered."""
        return self.in_flight.get(job_id) or self.given_up.get(job_id)

    def finished(self, job_id: str) -> FrameJob | None:
        job = self.in_flight.pop(job_id, None)
        if job is None:
            job = self.given_up.pop(job_id, None)
            if job is not None:
                self.lost[job.camera] -= 1  # its result came after all
        if job is not None:
            self.done[job.camera] += 1
        return job

    def lose(self, job_id: str) -> FrameJob | None:
        job = self.in_flight.pop(job_id, None)
        if job is not None:
            self.lost[job.camera] += 1
            self.given_up[job_id] = job
            if len(self.given_up) > _GIVEN_UP_KEPT:
                self.given_up.popitem(last=False)
        return job
