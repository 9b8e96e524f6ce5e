"""What goes into the coordinator's core and what comes out of it.

The core (coordinator/core.py) is a state machine without I/O: the service hands it events
(parsed at the door by coordinator/ingest.py) with the time they are handled at, and carries
out the actions it returns: messages to publish, job journal records to write, rejected inputs
to report on `errors`. So every rule about jobs, frames and nodes can be tested by feeding
events and reading actions, with no broker, no thread and no clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from edgehive.schemas import Capabilities, Heartbeat, JobRequest, NodeStatus, Result
from edgehive.schemas.direct import CameraCounts, CameraOffer
from edgehive.schemas.sensors import ImuReading, SensorReading

from .frames import Frame


class Now(NamedTuple):
    """One reading of both clocks, taken by the service for each step of the core."""

    wall: float  # epoch seconds: job states, deadlines, the journal, fusion windows
    mono: float  # monotonic seconds: liveness, leases, pauses


# -- events: what happened -------------------------------------------------------------------
# Each message-borne event keeps the topic it came on, to name it in an error report. Events and
# actions are named tuples: thousands are made per second, and a tuple is the cheapest record.


class Submitted(NamedTuple):
    """A job request on `jobs/submit`."""

    topic: str
    request: JobRequest


class ResultIn(NamedTuple):
    """A result on `nodes/{node}/results`; `payload` as it came, for a byte-for-byte relay."""

    topic: str
    result: Result
    payload: bytes


class ResultsIn(NamedTuple):
    """What the door made of an array of results on `nodes/{node}/results`: each valid item as its
    own `ResultIn` (the core sees no batches), and each refused one with its reason and bytes."""

    topic: str
    results: list[ResultIn]
    refused: list[tuple[str, bytes]]


class Declined(NamedTuple):
    """A node handed back work it could not take (full, draining), on `nodes/{node}/declined`."""

    topic: str
    refusal: Result


class HeartbeatIn(NamedTuple):
    topic: str
    beat: Heartbeat


class CapabilitiesIn(NamedTuple):
    """A node's birth certificate (retained)."""

    topic: str
    caps: Capabilities


class StatusIn(NamedTuple):
    """`online` / `offline` (retained; also the will) for `node`, named by the topic."""

    topic: str
    node: str
    status: NodeStatus


class FrameIn(NamedTuple):
    topic: str
    frame: Frame


class ReadingsIn(NamedTuple):
    """Sensor readings checked at the door, each with the time it stands for."""

    topic: str
    sensor: str
    quantity: str
    stamped: list[tuple[SensorReading | ImuReading, float]]
    replayed: bool = False  # kept by a standby and filed at its takeover (FusionWindows.add)


class SnapshotIn(NamedTuple):
    """A node's annotated snapshot of a camera, to relay while the node is alive."""

    topic: str
    node: str
    camera: str
    jpeg: bytes


class CameraOfferIn(NamedTuple):
    """A camera's retained offer of direct frames on `cameras/{camera}/direct`; None: withdrawn."""

    topic: str
    camera: str
    offer: CameraOffer | None


class CameraCountsIn(NamedTuple):
    """A direct camera's own frame counts, on `cameras/{camera}/counts`."""

    topic: str
    camera: str
    counts: CameraCounts


class NodeCleared(NamedTuple):
    """An empty retained payload on a node's capabilities or status: the retained copy was removed
    (by the coordinator itself when the node left the fleet); nothing to do."""

    topic: str


class HomeAssistantStatus(NamedTuple):
    """Home Assistant's birth (`online`) or will (`offline`) on `{ha_discovery_prefix}/status`."""

    topic: str
    online: bool


class HomeAssistantConfigs(NamedTuple):
    """This fleet's retained discovery configs as the broker held them (topic → config), read by
    the active coordinator when it became active or reconnected (coordinator/ha_sweep.py)."""

    configs: dict[str, bytes]


class EndedElsewhere(NamedTuple):
    """A job this coordinator took over still running (an orphan) was finished by the coordinator
    it took over from: its final state, or for a fusion window its result (`output`), was seen
    published by it. The orphan is closed without a second final state."""

    job_id: str
    output: object = None  # a fusion window's output, whose posterior is the next prior
    has_output: bool = False


class Tick(NamedTuple):
    """Periodic work: silent nodes, leases of orphans, deadlines, fusion windows due, stats."""


class ConnectionRestored(NamedTuple):
    """The coordinator is (again) connected to the broker: birth messages, fresh liveness."""


class ConnectionLost(NamedTuple):
    """The coordinator's own connection dropped: silence proves nothing until it is back."""


Event = (Submitted | ResultIn | Declined | HeartbeatIn | CapabilitiesIn | StatusIn | FrameIn | ReadingsIn | SnapshotIn
         | CameraOfferIn | CameraCountsIn | NodeCleared | HomeAssistantStatus | HomeAssistantConfigs
         | EndedElsewhere | Tick | ConnectionRestored | ConnectionLost)


# -- actions: what to do ---------------------------------------------------------------------


class Publish(NamedTuple):
    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False


class ReportError(NamedTuple):
    """A rejected input or refused job, for `errors` and the log."""

    topic: str
    reason: str


class JournalAccepted(NamedTuple):
    request: JobRequest  # with its id
    ts: float
    attempt: int = 0


class JournalEnded(NamedTuple):
    job_id: str


class JournalReplace(NamedTuple):
    """The whole journal, replaced by these open jobs: a standby's full copy from the active one."""

    jobs: list[tuple[JobRequest, float, int]]  # (request with id, submitted epoch, attempts so far)


JournalRecord = JournalAccepted | JournalEnded | JournalReplace


@dataclass
class Actions:
    """Everything one step of the core asks for, each list in the order it was decided."""

    publish: list[Publish] = field(default_factory=list)
    journal: list[JournalRecord] = field(default_factory=list)
    errors: list[ReportError] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.publish or self.journal or self.errors)
