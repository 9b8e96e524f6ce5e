"""Direct frames: the messages by which our own camera service and the agents pass frames
without the coordinator carrying them.

The coordinator still decides who may see a camera's frames and whose results count: it
assigns each announced camera to the live nodes that run its model (`CameraAssignment`,
retained). An assigned agent asks the camera for frames (`FrameWant`, one frame per want),
the camera sends its newest frame to that agent's own topic (`DirectFrameMeta` in the frame
envelope's header), the agent publishes its result under its own node as for any job, and
the coordinator relays it after checking that the node is assigned to that camera. The
camera reports its own counts (`CameraCounts`) so that `coordinator/stats` still adds up.
Every topic carries the sender's id in a level the broker's ACL ties to its account.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from .base import Count, Ident, Message, decode

DIRECT_JOB_PREFIX = "d."  # job ids of direct frames: d.{camera boot}.{seq}; never a coordinator lease id


class CameraOffer(Message):
    """`cameras/{camera}/direct`, retained, from the camera: it can send frames to agents directly.
    An empty retained message (a clean stop, or the camera's will) withdraws it."""

    boot: Ident = Field(description="Random id of this run of the camera; a new one starts its counts over")
    model: str | None = Field(None, max_length=128, description="The model the camera asks for (none: the coordinator's choice)")
    width: int = Field(ge=1, le=65535, description="Width of its frames in pixels (the coordinator decides about tiling from it)")
    height: int = Field(ge=1, le=65535, description="Height of its frames in pixels")
    ts: float = Field(description="When this boot of the camera started (epoch seconds): a coordinator that started earlier counts all its frames")


class CameraAssignment(Message):
    """`cameras/{camera}/assigned`, retained, from the coordinator: the nodes that may ask this
    camera for frames, and the `detections` params they run each frame with. No nodes: the
    camera sends its frames on `frames/{camera}` to the coordinator as any camera does."""

    boot: str = Field(max_length=64, description="The camera boot this answers (a retained one for an earlier boot is ignored)")
    nodes: list[Ident] = Field(default_factory=list, max_length=4096)
    params: dict[str, Any] = Field(default_factory=dict, description="`detections` params (model, labels, min_score) without `camera` and `captured`")
    ts: float


class FrameWant(Message):
    """`cameras/{camera}/want/{node}`, from an assigned agent: send me your next frame."""

    boot: Ident = Field(description="The agent's boot id; the frame goes back with it, so a restarted agent never gets an earlier boot's frame")
    n: int = Field(1, ge=1, le=64, description="How many frames this want asks for (each is sent once)")


class DirectFrameMeta(Message):
    """The envelope header of a frame sent on `nodes/{node}/frames/{camera}`."""

    boot: Ident = Field(description="The camera's boot id")
    seq: Count = Field(description="The frame's number in this camera boot")
    to: Ident = Field(description="The agent boot id the want came from")
    captured: float | None = None


class CameraCounts(Message):
    """`cameras/{camera}/counts`, from the camera, about once a second while it changes: its
    frames since `boot`. `frames_in` = `dropped` (replaced by a newer one before any agent
    asked) + the frames sent + the one waiting (`waiting`, 0 or 1)."""

    boot: Ident
    frames_in: Count
    dropped: Count
    waiting: int = Field(0, ge=0, le=1)
    sent: dict[str, Count] = Field(default_factory=dict, description="Frames sent, by `{node}/{agent boot}`")
    ts: float


def parse_offer(topic: str, payload: bytes) -> CameraOffer | None:
    """A camera's retained offer on `cameras/{camera}/direct`; empty (withdrawn) is None."""
    return decode(CameraOffer, payload) if payload else None


def parse_assignment(topic: str, payload: bytes) -> CameraAssignment | None:
    """The coordinator's retained assignment on `cameras/{camera}/assigned`; empty (cleared) is None."""
    return decode(CameraAssignment, payload) if payload else None
