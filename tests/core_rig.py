"""A coordinator core with no broker, no thread and no clock: real messages in, its actions out.

The rig owns the time (`advance`) and feeds the core the same parsed messages the coordinator
gets from the door; it reads back what a user would see: job states, what each node was sent,
results relayed, error reports, journal records and the stats.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from edgehive.coordinator.core import CoordinatorCore
from edgehive.coordinator.events import (
    Actions,
    CapabilitiesIn,
    ConnectionRestored,
    Declined,
    Event,
    FrameIn,
    HeartbeatIn,
    JournalAccepted,
    JournalEnded,
    Now,
    ReadingsIn,
    ResultIn,
    StatusIn,
    Submitted,
    Tick,
)
from edgehive.coordinator.frames import Frame
from edgehive.coordinator.fusion import FusionWindows, GroupConfig
from edgehive.coordinator.settings import CoordinatorSettings
from edgehive.schemas import Capabilities, Heartbeat, JobRequest, ModelRuntime, NodeStatus, Result, Topics, envelope
from edgehive.schemas.sensors import SensorReading
from edgehive.schemas.vision import CameraConfig

PREFIX = "rig/v1"


@dataclass
class Rig:
    heartbeat_s: float = 1.0
    max_attempts: int = 3
    queue_max: int = 10_000
    hand_up: bool = False
    job_states: str = "all"
    ha_discovery_prefix: str = ""
    forget_after_s: float = 7 * 86400.0
    ha_max_node_devices: int = 250
    fusion_groups: dict[str, GroupConfig] = field(default_factory=dict)
    now: Now = Now(1_000_000.0, 100.0)  # well past dead_after since the start: no grace for the registry
    log: Actions = field(default_factory=Actions)  # everything the core asked for so far

    def __post_init__(self) -> None:
        self.settings = CoordinatorSettings(state_dir="", heartbeat_s=self.heartbeat_s, max_attempts=self.max_attempts,
                                            queue_max=self.queue_max, ha_discovery_prefix=self.ha_discovery_prefix, prefix=PREFIX,
                                            hand_up=self.hand_up, forget_after_s=self.forget_after_s,
                                            ha_max_node_devices=self.ha_max_node_devices, job_states=self.job_states)
        self.topics = Topics(PREFIX)
        self.core = CoordinatorCore(self.settings, FusionWindows(self.fusion_groups, 10, 100, 0.25, None), started=0.0, run_id="run")
        self.seq = 0
        self.step(ConnectionRestored())

    # -- driving -----------------------------------------------------------------------------

    def advance(self, seconds: float) -> None:
        self.now = Now(self.now.wall + seconds, self.now.mono + seconds)

    def step(self, *events: Event) -> Actions:
        actions = self.core.step(events, self.now)
        self.log.publish += actions.publish
        self.log.journal += actions.journal
        self.log.errors += actions.errors
        return actions

    def tick(self) -> Actions:
        return self.step(Tick())

    def node(self, name: str, slots: int = 1, kinds: tuple[str, ...] = ("sleep",), models: tuple[str, ...] = (), boot: str = "b1",
             inputs: dict[str, tuple[int, int]] | None = None, version: str = "0") -> None:
        """A node's birth: capabilities, `online`, a first heartbeat. `inputs`: model → input size it reports."""
        runtimes = {m: ModelRuntime(backend="litert", device="cpu", input_size=size) for m, size in (inputs or {}).items()}
        caps = Capabilities(node=name, boot_id=boot, ts=0, version=version, arch="x", board="b", os="l", python="3", cores=2,
                            ram_mb=100, kinds=list(kinds), workers=slots, slots=slots, models=list(models), model_runtimes=runtimes)
        self.step(CapabilitiesIn(self.topics.capabilities(name), caps),
                  StatusIn(self.topics.status(name), name, NodeStatus(state="online", boot_id=boot)))
        self.beat(name, boot=boot)

    def heartbeat(self, node: str, held: list[str] | None = None, running: list[str] | None = None, boot: str = "b1") -> HeartbeatIn:
        """The event of `node`'s next heartbeat, not yet handed to the core."""
        self.seq += 1
        heartbeat = Heartbeat(node=node, boot_id=boot, seq=self.seq, ts=self.now.wall, cpu_pct=1, mem_pct=1, in_flight=0, queued=0,
                              jobs_done=0, jobs_failed=0, held=held or [], running=running)
        return HeartbeatIn(self.topics.heartbeat(node), heartbeat)

    def beat(self, node: str, held: list[str] | None = None, running: list[str] | None = None, boot: str = "b1") -> Actions:
        return self.step(self.heartbeat(node, held, running, boot))

    def offline(self, node: str, reason: str | None = None, boot: str = "b1") -> Actions:
        return self.step(StatusIn(self.topics.status(node), node, NodeStatus(state="offline", boot_id=boot, reason=reason)))

    def submit(self, job_id: str | None = None, kind: str = "sleep", **fields: Any) -> Actions:
        return self.step(Submitted(self.topics.submit, JobRequest(kind=kind, id=job_id, **fields)))

    def result(self, node: str, job_id: str, ok: bool = True, attempt: int = 1, kind: str = "sleep", source: str | None = None,
               output: Any = None) -> tuple[Actions, bytes]:
        result = Result(job_id=job_id, kind=kind, node=node, source=source or job_id, attempt=attempt, ok=ok,
                        output=output if ok else None, error=None if ok else "it broke",
                        timings={"started": self.now.wall, "inferred": self.now.wall})
        payload = orjson.dumps(result.model_dump(exclude_none=True))
        return self.step(ResultIn(self.topics.node_results(node), result, payload)), payload

    def decline(self, node: str, job_id: str, kind: str = "sleep") -> Actions:
        refusal = Result(job_id=job_id, kind=kind, node=node, source=job_id, ok=False, error="full", retryable=True, timings={})
        return self.step(Declined(self.topics.declined(node), refusal))

    def readings(self, sensor: str, quantity: str, *values: float) -> Actions:
        stamped = [(SensorReading(value=v), self.now.wall) for v in values]
        return self.step(ReadingsIn(self.topics.sensor(sensor, quantity), sensor, quantity, stamped))

    def frame(self, camera: str, model: str = "face", jpeg: bytes = b"\xff\xd8jpeg", config: CameraConfig | None = None) -> Actions:
        frame = Frame(camera, jpeg, model, arrived=self.now.wall, config=config or CameraConfig(model=model))
        return self.step(FrameIn(self.topics.frames(camera), frame))

    # -- reading -----------------------------------------------------------------------------

    def states(self, job_id: str, actions: Actions | None = None) -> list[dict[str, Any]]:
        topic = self.topics.job_state(job_id)
        return [orjson.loads(m.payload) for m in (actions or self.log).publish if m.topic == topic]

    def state_names(self, job_id: str, actions: Actions | None = None) -> list[str]:
        return [s["state"] for s in self.states(job_id, actions)]

    def sent(self, node: str, actions: Actions | None = None) -> list[dict[str, Any]]:
        """Every job sent to `node` (a frame's job from its envelope header), in order."""
        jobs: list[dict[str, Any]] = []
        for message in (actions or self.log).publish:
            if message.topic != self.topics.jobs(node):
                continue
            if envelope.is_envelope(message.payload):
                jobs.append(orjson.loads(envelope.unpack(message.payload)[0]))
            else:
                body = orjson.loads(message.payload)
                jobs += body if isinstance(body, list) else [body]
        return jobs

    def sent_ids(self, node: str, actions: Actions | None = None) -> list[str]:
        return [job["id"] for job in self.sent(node, actions)]

    def relayed(self, kind: str, source: str, actions: Actions | None = None) -> list[bytes]:
        topic = self.topics.result(kind, source)
        return [m.payload for m in (actions or self.log).publish if m.topic == topic]

    def errors(self, actions: Actions | None = None) -> list[str]:
        return [e.reason for e in (actions or self.log).errors]

    def journal(self) -> list[tuple[str, str]]:
        return [("accepted", r.request.id or "") if isinstance(r, JournalAccepted) else ("ended", r.job_id)
                for r in self.log.journal if isinstance(r, JournalAccepted | JournalEnded)]

    def holder(self, job_id: str) -> str | None:
        """The node whose holdings list the job now."""
        holders = [n.id for n in self.core.registry.nodes.values() if job_id in n.jobs]
        assert len(holders) <= 1, holders
        return holders[0] if holders else None

    def stats(self) -> dict[str, Any]:
        return self.core.stats(self.now).model_dump()
