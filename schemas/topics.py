"""Build and parse every topic of the protocol under one configurable prefix.

Parsing is the inverse of building, so a message that arrives on a malformed topic
(wrong shape, an id with spaces, an unknown level) is rejected by the same rules
that build valid ones.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..errors import EdgehiveError
from .base import IDENT_PATTERN

_IDENT = re.compile(IDENT_PATTERN)


class TopicError(EdgehiveError, ValueError):
    """A topic that is not part of the protocol."""


@dataclass(frozen=True)
class TopicRef:
    """What a parsed topic names: its kind (e.g. `heartbeat`) and its id levels."""

    kind: str
    node: str | None = None
    job: str | None = None
    result_kind: str | None = None
    source: str | None = None
    extra: dict[str, str] = field(default_factory=dict)


# kind → levels after the prefix; `{name}` levels are ids.
_SHAPES: dict[str, tuple[str, ...]] = {
    "capabilities": ("nodes", "{node}", "capabilities"),
    "status": ("nodes", "{node}", "status"),
    "heartbeat": ("nodes", "{node}", "heartbeat"),
    "jobs": ("nodes", "{node}", "jobs"),
    "declined": ("nodes", "{node}", "declined"),
    "node_result": ("nodes", "{node}", "results"),
    "node_snapshot": ("nodes", "{node}", "snapshots", "{camera}"),
    "result": ("results", "{result_kind}", "{source}"),
    "frames": ("frames", "{camera}"),
    "camera_direct": ("cameras", "{camera}", "direct"),
    "camera_assigned": ("cameras", "{camera}", "assigned"),
    "camera_want": ("cameras", "{camera}", "want", "{node}"),
    "camera_counts": ("cameras", "{camera}", "counts"),
    "node_frames": ("nodes", "{node}", "frames", "{camera}"),
    "snapshot": ("snapshots", "{camera}"),
    "sensor": ("sensors", "{sensor}", "{quantity}"),
    "submit": ("jobs", "submit"),
    "job_state": ("jobs", "{job}", "state"),
    "coordinator_status": ("coordinator", "status"),
    "coordinator_stats": ("coordinator", "stats"),
    "coordinator_leader": ("coordinator", "leader"),
    "coordinator_journal": ("coordinator", "journal"),
    "coordinator_member": ("coordinator", "members", "{coordinator}"),
    "hub_submit": ("hub", "submit"),
    "frigate_status": ("frigate", "status"),
    "errors": ("errors",),
}


def _check_ident(value: str, what: str) -> str:
    if not _IDENT.fullmatch(value):
        raise TopicError(f"invalid {what} {value[:80]!r}: use letters, digits, '_', '.', ':', '-' (at most 64)")
    return value


class Topics:
    """The topic scheme under `prefix` (default `edgehive/v1`)."""

    def __init__(self, prefix: str = "edgehive/v1") -> None:
        self.prefix = prefix.strip("/")
        self._prefix_levels = tuple(self.prefix.split("/"))

    def _join(self, *levels: str) -> str:
        return "/".join((self.prefix, *levels))

    # Builders. Ids are checked so that a bad id fails here, not at a subscriber.
    def capabilities(self, node: str) -> str:
        return self._join("nodes", _check_ident(node, "node id"), "capabilities")

    def status(self, node: str) -> str:
        return self._join("nodes", _check_ident(node, "node id"), "status")

    def heartbeat(self, node: str) -> str:
        return self._join("nodes", _check_ident(node, "node id"), "heartbeat")

    def jobs(self, node: str) -> str:
        return self._join("nodes", _check_ident(node, "node id"), "jobs")

    def declined(self, node: str) -> str:
        return self._join("nodes", _check_ident(node, "node id"), "declined")

    def node_results(self, node: str) -> str:
        """Where an agent publishes its results: under its own node, so the broker's ACL vouches
        for the publisher; the coordinator checks each and relays it on `result(kind, source)`."""
        return self._join("nodes", _check_ident(node, "node id"), "results")

    def node_snapshot(self, node: str, camera: str) -> str:
        """An agent's annotated snapshot, relayed by the coordinator to `snapshot(camera)`."""
        return self._join("nodes", _check_ident(node, "node id"), "snapshots", _check_ident(camera, "camera"))

    def result(self, kind: str, source: str) -> str:
        return self._join("results", _check_ident(kind, "job kind"), _check_ident(source, "source"))

    def frames(self, camera: str) -> str:
        return self._join("frames", _check_ident(camera, "camera"))

    def camera_direct(self, camera: str) -> str:
        """Our camera service's offer to send frames to agents directly (`CameraOffer`, retained)."""
        return self._join("cameras", _check_ident(camera, "camera"), "direct")

    def camera_assigned(self, camera: str) -> str:
        """The coordinator's answer to that offer: which nodes may ask for frames (`CameraAssignment`, retained)."""
        return self._join("cameras", _check_ident(camera, "camera"), "assigned")

    def camera_want(self, camera: str, node: str) -> str:
        """An assigned agent asks the camera for its next frame (`FrameWant`)."""
        return self._join("cameras", _check_ident(camera, "camera"), "want", _check_ident(node, "node id"))

    def camera_counts(self, camera: str) -> str:
        """The camera's own frame counts (`CameraCounts`), merged into `coordinator/stats`."""
        return self._join("cameras", _check_ident(camera, "camera"), "counts")

    def node_frames(self, node: str, camera: str) -> str:
        """A camera's frame for one agent (the envelope with `DirectFrameMeta`): the camera level is the sender."""
        return self._join("nodes", _check_ident(node, "node id"), "frames", _check_ident(camera, "camera"))

    def snapshot(self, camera: str) -> str:
        return self._join("snapshots", _check_ident(camera, "camera"))

    def sensor(self, sensor: str, quantity: str) -> str:
        return self._join("sensors", _check_ident(sensor, "sensor"), _check_ident(quantity, "quantity"))

    def job_state(self, job: str) -> str:
        return self._join("jobs", _check_ident(job, "job id"), "state")

    @property
    def submit(self) -> str:
        return self._join("jobs", "submit")

    @property
    def coordinator_status(self) -> str:
        return self._join("coordinator", "status")

    @property
    def coordinator_stats(self) -> str:
        return self._join("coordinator", "stats")

    @property
    def coordinator_leader(self) -> str:
        """The retained leadership claim (`LeaderClaim`): which coordinator places work, and its epoch."""
        return self._join("coordinator", "leader")

    @property
    def coordinator_journal(self) -> str:
        """The active coordinator's journal records and fusion log lines, streamed to standbys (QoS 1)."""
        return self._join("coordinator", "journal")

    def coordinator_member(self, coordinator: str) -> str:
        """One coordinator's own status (`CoordinatorMember`, retained): active, standby or offline."""
        return self._join("coordinator", "members", _check_ident(coordinator, "coordinator id"))

    @property
    def hub_submit(self) -> str:
        """Where a site's coordinator hands up a job none of its nodes can run (its bridge carries it to the hub)."""
        return self._join("hub", "submit")

    @property
    def frigate_status(self) -> str:
        """`online`/`offline` (retained) of `edgehive frigate`, the Frigate bridge: its Home Assistant availability."""
        return self._join("frigate", "status")

    @property
    def errors(self) -> str:
        return self._join("errors")

    def pattern(self, kind: str) -> str:
        """A subscription filter for every topic of `kind`, e.g. `edgehive/v1/nodes/+/heartbeat`."""
        shape = _SHAPES[kind]
        return self._join(*("+" if level.startswith("{") else level for level in shape))

    def parse(self, topic: str) -> TopicRef:
        """Name what `topic` refers to; raises TopicError for anything outside the scheme."""
        levels = topic.split("/")
        n = len(self._prefix_levels)
        if tuple(levels[:n]) != self._prefix_levels:
            raise TopicError(f"topic {topic[:120]!r} is outside prefix {self.prefix!r}")
        rest = levels[n:]
        for kind, shape in _SHAPES.items():
            if len(shape) != len(rest):
                continue
            if all(s == r for s, r in zip(shape, rest) if not s.startswith("{")):
                # `jobs/submit` also fits `jobs/{job}/state`'s length only by accident; literal levels decide.
                ids = {s[1:-1]: _check_ident(r, s[1:-1].replace("_", " ")) for s, r in zip(shape, rest) if s.startswith("{")}
                return TopicRef(
                    kind=kind,
                    node=ids.pop("node", None),
                    job=ids.pop("job", None),
                    result_kind=ids.pop("result_kind", None),
                    source=ids.pop("source", None),
                    extra=ids,
                )
        raise TopicError(f"topic {topic[:120]!r} is not part of the edgehive scheme")
