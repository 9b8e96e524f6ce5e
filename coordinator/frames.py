"""Frames waiting for a node: the newest one per camera, and the per-camera counters.

Frames are real time: when every slot is busy only the newest frame of each camera is kept,
and each frame it replaces is counted as dropped. A frame placed on a node is a lease with the
`FRAME` policy (coordinator/leases.py): on a node that dies, or whose lease lapses, it is not
retried (a newer one is already waiting) but counted as lost, until its result comes after
all from the node it was sent to (then it is done, and the result is relayed). So per camera,
frames in = done + dropped + lost + the one waiting + those on nodes. Frames never enter the
job journal or the job-state stream: at 5–30 frames per second per camera that would cost more
than the detections.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from edgehive.schemas.vision import CameraConfig


@dataclass
class Frame:
    camera: str
    jpeg: bytes
    model: str
    arrived: float
    captured: float | None = None
    config: CameraConfig = field(default_factory=CameraConfig)


@dataclass
class FrameRouter:
    pending: dict[str, Frame] = field(default_factory=dict)
    received: Counter[str] = field(default_factory=Counter)
    done: Counter[str] = field(default_factory=Counter)
    dropped: Counter[str] = field(default_factory=Counter)
    lost: Counter[str] = field(default_factory=Counter)
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

    def sent(self, frame: Frame) -> None:
        """Placed on a node: from now on a lease."""
        del self.pending[frame.camera]

    def count_done(self, camera: str, was_lost: bool) -> None:
        if was_lost:
            self.lost[camera] -= 1  # its result came after all
        self.done[camera] += 1

    def count_lost(self, camera: str) -> None:
        self.lost[camera] += 1
