"""Cameras that send frames to agents directly: who may serve each, and the counts that make
`coordinator/stats` add up.

Why here: the frame bytes no longer pass through the coordinator (sensors/direct.py,
agents/directframes.py), but two decisions still need one view of the fleet. Which nodes may
see a camera's frames: every live, not draining node whose birth certificate lists the
camera's model, published as the camera's retained assignment (a node that dies or drains
leaves it at the next tick, so its share moves to the others, which keep asking). And whose
results count: a direct frame's result is relayed to `results/detections/{camera}` only from
a node assigned to that camera (now, or when the frame was sent); any other is refused.

Counts. The camera reports, per boot, frames in, dropped (replaced before any agent asked) and
sent per `{node}/{agent boot}` pair; the coordinator counts the results it relays per pair, and
refusals (an agent that could not take a frame) as dropped. A pair whose node is gone (dead,
restarted), or that went a lease without a frame or an answer, has its unanswered frames
counted lost, and a late result moves one back to done; so, as for frames through the coordinator, frames_in = done + dropped + lost + in flight
+ the one waiting at the camera, and exactly in = done + dropped + lost once nothing is in flight.
A coordinator that starts while a camera runs counts that camera from its first report on.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from edgehive.schemas.direct import CameraCounts, CameraOffer
from edgehive.schemas.vision import CameraConfig

from .registry import Node


@dataclass
class _Boot:
    """One run of a camera, as reported since this coordinator first heard of it."""

    boot: str
    fresh: bool = False  # the camera started after this coordinator: counted from its first frame
    base: CameraCounts | None = None  # else from the first report this coordinator saw
    last: CameraCounts | None = None
    done: Counter[str] = field(default_factory=Counter)  # "{node}/{agent boot}" → results relayed
    refused: Counter[str] = field(default_factory=Counter)
    progress: dict[str, float] = field(default_factory=dict)  # pair → when it last got a frame or answered one (monotonic)

    def sent(self, pair: str) -> int:
        """Frames sent on this pair: as reported, or as answered when the report is behind (it
        comes once a second, results as they happen)."""
        reported = 0
        if self.last is not None:
            before = self.base.sent.get(pair, 0) if self.base is not None else 0
            reported = self.last.sent.get(pair, 0) - before
        return max(reported, self.done[pair] + self.refused[pair])

    def pairs(self) -> set[str]:
        return set(self.last.sent if self.last is not None else ()) | set(self.done) | set(self.refused)

    def totals(self, live: set[str], now: float, quiet_s: float) -> tuple[int, int, int, int]:
        """(in, done, dropped, lost) of this boot. A pair's unanswered frames are in flight while
        its node lives (same boot) and the pair moved within `quiet_s`; else they are lost."""
        base, last = self.base, self.last
        frames_in = (last.frames_in - base.frames_in) if last is not None and base is not None else 0
        dropped = max(0, (last.dropped - base.dropped) if last is not None and base is not None else 0)
        sent = {pair: self.sent(pair) for pair in self.pairs()}
        frames_in = max(frames_in, dropped + sum(sent.values()))  # never fewer than what is accounted for
        done = sum(self.done.values())
        dropped += sum(self.refused.values())
        lost = sum(sent[pair] - self.done[pair] - self.refused[pair] for pair in sent
                   if pair not in live or now - self.progress.get(pair, now) > quiet_s)
        return frames_in, done, dropped, lost


@dataclass
class DirectCamera:
    camera: str
    offer: CameraOffer | None = None
    config: CameraConfig | None = None
    assigned: tuple[str, ...] | None = None  # as last published; None: never
    boots: dict[str, _Boot] = field(default_factory=dict)
    ever_assigned: set[str] = field(default_factory=set)  # nodes assigned during the current boot
    cleared: bool = False  # the retained answer was cleared after the offer was withdrawn


class DirectCameras:
    """Offers, assignments and counts of the cameras that send frames directly."""

    def __init__(self, started_wall: float = 0.0) -> None:
        self.cameras: dict[str, DirectCamera] = {}
        self.started_wall = started_wall

    def offer(self, camera: str, offer: CameraOffer | None, config: CameraConfig | None) -> DirectCamera:
        """A camera's retained offer (None: withdrawn); `config`: what the policy gives it, or
        None when it cannot be served directly (a pipeline, tiles)."""
        entry = self.cameras.setdefault(camera, DirectCamera(camera))
        if offer is not None and (entry.offer is None or entry.offer.boot != offer.boot):
            entry.ever_assigned = set()
            entry.assigned = None  # a new run of the camera gets its own answer, even naming the same nodes
            entry.boots.setdefault(offer.boot, _Boot(offer.boot, fresh=offer.ts >= self.started_wall))
        if offer is not None:
            entry.cleared = False
        entry.offer, entry.config = offer, config
        return entry

    def counts(self, camera: str, counts: CameraCounts, now: float) -> None:
        entry = self.cameras.setdefault(camera, DirectCamera(camera))
        boot = entry.boots.setdefault(counts.boot, _Boot(counts.boot))
        before = boot.last.sent if boot.last is not None else {}
        for pair, sent in counts.sent.items():
            if sent != before.get(pair):
                boot.progress[pair] = now
        if boot.base is None:
            boot.base = CameraCounts(boot=counts.boot, frames_in=0, dropped=0, ts=counts.ts) if boot.fresh else counts
        if boot.last is None or counts.frames_in >= boot.last.frames_in:
            boot.last = counts

    def wanted(self, entry: DirectCamera, nodes: Iterable[Node]) -> tuple[str, ...]:
        """The nodes that should serve this camera now: live, not draining, with its model."""
        if entry.offer is None or entry.config is None or entry.config.model is None:
            return ()
        model = entry.config.model
        return tuple(sorted(n.id for n in nodes if n.alive and not n.draining and n.caps is not None and model in n.caps.models))

    def is_assigned(self, camera: str, node: str, camera_boot: str) -> bool:
        """A result's node may speak for this camera: assigned now or earlier in the camera's boot."""
        entry = self.cameras.get(camera)
        if entry is None or camera_boot not in entry.boots:
            return False
        return node in entry.ever_assigned or (entry.assigned is not None and node in entry.assigned)

    def result(self, camera: str, camera_boot: str, pair: str, refused: bool, now: float) -> None:
        boot = self.cameras[camera].boots[camera_boot]
        (boot.refused if refused else boot.done)[pair] += 1
        boot.progress[pair] = now

    def totals(self, live: set[str], now: float, quiet_s: float) -> dict[str, tuple[int, int, int, int]]:
        """Per camera (in, done, dropped, lost); `live`: the `{node}/{boot}` of every live node."""
        out: dict[str, tuple[int, int, int, int]] = {}
        for camera, entry in self.cameras.items():
            sums = [0, 0, 0, 0]
            for boot in entry.boots.values():
                for i, value in enumerate(boot.totals(live, now, quiet_s)):
                    sums[i] += value
            if any(sums):
                out[camera] = (sums[0], sums[1], sums[2], sums[3])
        return out


def params_for(config: CameraConfig) -> dict[str, Any]:
    """The `detections` params an assigned agent runs the camera's frames with."""
    params: dict[str, Any] = {"model": config.model}
    if config.labels is not None:
        params["labels"] = list(config.labels)
    if config.min_score:
        params["min_score"] = dict(config.min_score)
    return params
