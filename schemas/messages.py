"""Pydantic models of every JSON message in the README's topic table.

Timestamps are UTC epoch seconds (float). Durations end in `_s`.
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Any, Generic, Literal

import orjson
from pydantic import Field, RootModel, model_validator
from typing_extensions import TypeVar

from .base import MAX_COUNT, Count, Ident, JsonObject, JsonValue, Message, Part, decode

MAX_HELD_IDS = 4096
# Bounds on what a node announces about itself: a forged or buggy `slots: 10**18` must not make
# the scheduler believe in a machine that cannot exist.
MAX_SLOTS = 4096
MAX_WORKERS = 1024
MAX_CORES = 4096
MAX_RAM_MB = 1 << 24  # 16 TiB
MAX_LIST = 256  # accelerators, backends, models, kinds, tags


class ModelRuntime(Part):
    """How one loaded model runs on a node: what the scheduler needs to send heavy models to a GPU."""

    backend: str = Field(max_length=64, description="The inference backend that loaded it: litert, edgetpu, onnx")
    device: str = Field(max_length=64, description="What actually runs it: cpu, edgetpu, cuda, tensorrt")
    heavy: bool = Field(False, description="The manifest marks it too slow for a CPU at frame rate")
    input_size: tuple[Annotated[int, Field(gt=0, le=1 << 16)], Annotated[int, Field(gt=0, le=1 << 16)]] | None = Field(
        None, description="Width, height of the model's input: how the coordinator sizes a camera's tiles"
    )


class Capabilities(Message):
    """A node's birth certificate, published retained on `nodes/{node}/capabilities`."""

    node: Ident
    boot_id: Ident = Field(description="Changes on every agent start; tells a stale will from a live node")
    ts: float
    version: str = Field(description="edgehive version of the agent")
    arch: str = Field(description="Machine architecture, e.g. aarch64, x86_64")
    board: str = Field(description="Board model, e.g. 'Raspberry Pi 5 Model B Rev 1.0'")
    os: str
    python: str
    cores: int = Field(ge=1, le=MAX_CORES)
    ram_mb: int = Field(ge=0, le=MAX_RAM_MB)
    accelerators: list[Annotated[str, Field(max_length=64)]] = Field(default_factory=list, max_length=MAX_LIST, description="cuda, tensorrt (a GPU and an onnxruntime that can use it), edgetpu, hailo")
    backends: list[Annotated[str, Field(max_length=64)]] = Field(default_factory=list, max_length=MAX_LIST, description="Inference backends usable here: litert, edgetpu, onnx")
    models: list[Annotated[str, Field(max_length=128)]] = Field(default_factory=list, max_length=MAX_LIST, description="Models loaded and warmed up")
    model_runtimes: dict[Annotated[str, Field(max_length=128)], ModelRuntime] = Field(
        default_factory=dict, max_length=MAX_LIST, description="Per loaded model: its backend, the device running it, whether it is heavy"
    )
    kinds: list[Ident] = Field(max_length=MAX_LIST, description="Job kinds this agent runs")
    workers: int = Field(ge=1, le=MAX_WORKERS, description="Jobs run at the same time")
    slots: int = Field(ge=1, le=MAX_SLOTS, description="Jobs accepted at once (running plus prefetched)")
    tags: list[Ident] = Field(default_factory=list, max_length=MAX_LIST)


class NodeStatus(Message):
    """`online` / `offline` on `nodes/{node}/status` (retained); `offline` is also the will."""

    state: Literal["online", "offline"]
    boot_id: Ident | None = None
    ts: float | None = None
    reason: str | None = Field(None, max_length=200)


def parse_status(payload: bytes) -> NodeStatus:
    """Accept the JSON form and, for people typing into mosquitto_pub, a bare `online`/`offline`."""
    bare = payload.strip().lower()
    if bare in (b"online", b"offline"):
        return NodeStatus(state=bare.decode())  # type: ignore[arg-type]  # "online" or "offline", as just checked
    return decode(NodeStatus, payload)


class Heartbeat(Message):
    """Load and health, every `heartbeat_s`, on `nodes/{node}/heartbeat` (QoS 0)."""

    node: Ident
    boot_id: Ident
    seq: int = Field(ge=0, le=MAX_COUNT)
    ts: float
    cpu_pct: float = Field(ge=0, le=100)
    mem_pct: float = Field(ge=0, le=100)
    temp_c: float | None = Field(None, ge=-60, le=200)
    throttled: bool = False
    gpu_pct: float | None = Field(None, ge=0, le=100)
    in_flight: int = Field(ge=0, le=MAX_SLOTS, description="Jobs running now")
    queued: int = Field(ge=0, le=MAX_SLOTS, description="Jobs accepted, waiting for a worker")
    jobs_done: int = Field(ge=0, le=MAX_COUNT)
    jobs_failed: int = Field(ge=0, le=MAX_COUNT)
    jobs_per_s: float | None = Field(None, ge=0, le=1e6, description="Jobs finished (done or failed) per second since the previous heartbeat; absent from older agents")
    service_s: float | None = Field(None, ge=0, le=86400, description="Mean service time over recent jobs")
    service_by_kind: dict[Ident, Annotated[float, Field(ge=0, le=86400)]] = Field(default_factory=dict, max_length=MAX_LIST)
    service_by_model: dict[Ident, Annotated[float, Field(ge=0, le=86400)]] = Field(
        default_factory=dict, max_length=MAX_LIST, description="Service time per model, of the jobs that name one (detections)"
    )
    held: list[Ident] = Field(default_factory=list, max_length=MAX_HELD_IDS, description="Ids of every job on this node; renews their leases")
    running: list[Ident] | None = Field(None, max_length=MAX_HELD_IDS, description="Ids of the held jobs that have started (the rest wait for a worker); absent from older agents")
    draining: bool = Field(False, description="True once the agent stopped taking new jobs")


class Requirements(Part):
    """What a node must have to run a job; every field is optional."""

    model: str | None = Field(None, max_length=128)
    accelerator: str | None = Field(None, max_length=64)
    min_ram_mb: int | None = Field(None, ge=0, le=MAX_RAM_MB)
    arch: str | None = Field(None, max_length=32)
    tags: list[Ident] = Field(default_factory=list, max_length=MAX_LIST)
    node: Ident | None = Field(None, description="Pin the job to one node")


class JobRequest(Message):
    """A job sent by anyone to `jobs/submit`."""

    kind: Ident
    id: Ident | None = Field(None, description="Optional; the coordinator assigns one; resubmitting the same id is idempotent")
    params: JsonObject = Field(default_factory=dict, description="Free-form JSON for the kind; integers must fit in 64 bits, numbers be finite")
    requires: Requirements | None = None
    priority: int = Field(0, ge=-100, le=100, description="Higher runs first")
    deadline_s: float | None = Field(None, gt=0, le=30 * 86400, description="Give up (FAILED) if not finished this many seconds after submission")
    source: Ident | None = Field(None, description="Last level of the result topic; defaults to the job id")


class Job(Message):
    """A job handed to one agent on `nodes/{node}/jobs`."""

    id: Ident
    kind: Ident
    params: JsonObject = Field(default_factory=dict)
    source: Ident
    attempt: int = Field(ge=1, le=MAX_COUNT)
    boot_id: Ident = Field(description="The agent incarnation this was meant for; another boot ignores it")
    submitted: float
    dispatched: float
    deadline: float | None = None
    epoch: int | None = Field(None, ge=0, le=MAX_COUNT, description="The leadership epoch of the coordinator that placed it; "
                              "an agent that has seen a higher epoch ignores it (absent: from a coordinator without a standby, always taken)")


class Timings(Part):
    """Epoch seconds at each step; `queued` is when the coordinator accepted the job (for a
    frame: when it arrived), `captured` when a camera took the frame, `inferred` when the
    job's work (decode, inference, post-processing) ended, `published` when the result left."""

    captured: float | None = None
    queued: float | None = None
    dispatched: float | None = None
    received: float | None = None
    started: float | None = None
    finished: float | None = None
    inferred: float | None = None
    published: float | None = None


# A result's `output`: any JSON value for plain `Result`, which is all the coordinator needs (it
# relays results byte for byte); the kind's model for `Result[DetectionOutput]`, what a reader of
# one kind parses (schemas/results.py) to get the output typed and checked.
OutputT = TypeVar("OutputT", default=JsonValue)


class Result(Message, Generic[OutputT]):
    """What an agent publishes on `nodes/{node}/results`; the coordinator relays it, once checked, on `results/{kind}/{source}`."""

    job_id: Ident
    kind: Ident
    node: Ident
    source: Ident
    attempt: int = Field(1, ge=1, le=MAX_COUNT)
    ok: bool
    output: OutputT | None = Field(None, description=(
        "The kind's output (detections: detection_output; fusion: fusion_estimate or fusion_orientation; sleep: {slept_s}); "
        "absent when the job failed or has none"))
    error: str | None = Field(None, max_length=2000)
    retryable: bool = Field(False, description="The node could not take the job (busy, draining); run it elsewhere")
    timings: Timings

    @model_validator(mode="after")
    def _error_iff_failed(self) -> Result[OutputT]:
        if self.ok and self.error is not None:
            raise ValueError("a successful result carries no error")
        if not self.ok and not self.error:
            raise ValueError("a failed result must say why in 'error'")
        return self


class FrameMeta(Message):
    """What a camera may say about a frame in the envelope header (all optional)."""

    captured: float | None = None
    model: str | None = Field(None, max_length=128)


class JobStateName(str, Enum):
    REQUESTED = "REQUESTED"
    SCHEDULED = "SCHEDULED"
    RUNNING = "RUNNING"
    DONE = "DONE"
    FAILED = "FAILED"

    @property
    def terminal(self) -> bool:
        return self in (JobStateName.DONE, JobStateName.FAILED)


class JobState(Message):
    """The coordinator's word on a job, on `jobs/{job}/state`."""

    job_id: Ident
    state: JobStateName
    ts: float
    kind: Ident
    attempt: Count = 0
    node: Ident | None = None
    reason: str | None = None


def job_state_json(job_id: str, state: JobStateName, ts: float, kind: str, attempt: int, node: str | None = None, reason: str | None = None) -> bytes:
    """`encode(JobState(...))` without building a model: the coordinator sends four per job, every
    value already validated on the way in. Measured 2026-12-04 on the 2-core VM: 0.7–1.5 µs here
    against 3.2–3.5 µs to build and encode the model (`model_construct` is slower still, 7–11 µs);
    with `job_json`, about 20 µs a job saved, 5–10 % of the coordinator's CPU per job.
    tests/test_schemas.py checks that both agree byte for byte and that every field of the model
    is an argument here, so a field added to JobState fails that test until it is added here."""
    body: dict[str, Any] = {"v": 1, "job_id": job_id, "state": state.value, "ts": ts, "kind": kind, "attempt": attempt}
    if node is not None:
        body["node"] = node
    if reason is not None:
        body["reason"] = reason
    return orjson.dumps(body)


def job_json(id: str, kind: str, params: dict[str, Any], source: str, attempt: int, boot_id: str,
             submitted: float, dispatched: float, deadline: float | None = None, epoch: int | None = None) -> bytes:
    """`encode(Job(...))` without building a model, for the same reason (measured as above:
    0.5–1.1 µs against 6.0–7.4 µs for the model, every job and every frame); tests check the same."""
    body: dict[str, Any] = {"v": 1, "id": id, "kind": kind, "params": params, "source": source, "attempt": attempt,
                            "boot_id": boot_id, "submitted": submitted, "dispatched": dispatched}
    if deadline is not None:
        body["deadline"] = deadline
    if epoch is not None:
        body["epoch"] = epoch
    return orjson.dumps(body)


class LeaderClaim(Message):
    """The retained claim on `coordinator/leader`: which coordinator places work, under which epoch.

    The holder publishes it again every half heartbeat; a claim not renewed for `lease_s` (as
    timed by each reader's own clock since it last saw it) is dead, and a coordinator that sees
    none claims with `epoch` + 1. An empty retained message (a graceful stop) means no claim."""

    id: Ident = Field(description="The coordinator's id (EDGEHIVE_COORDINATOR_ID)")
    run: Ident = Field(description="Random per start of that coordinator: tells its runs apart")
    epoch: int = Field(ge=1, le=MAX_COUNT, description="Raised by one at every takeover; stamped on every dispatch")
    lease_s: float = Field(gt=0, le=3600, description="How long the claim holds without a renewal")
    ts: float



def parse_claim(topic: str, payload: bytes) -> LeaderClaim | None:
    """The retained claim on `coordinator/leader`; an empty message (a graceful stop cleared it) is None."""
    return decode(LeaderClaim, payload) if payload else None

class CoordinatorMember(Message):
    """One coordinator's own status on `coordinator/members/{id}` (retained): active or standby,
    and `offline` when it stopped. Read by `edgehive status` and the sink."""

    id: Ident
    run: Ident
    role: Literal["active", "standby", "offline"]
    epoch: int = Field(0, ge=0, le=MAX_COUNT, description="Its epoch while active; the highest it has seen while standby")
    ts: float
    synced: bool = Field(False, description="A standby: it holds the active one's journal (it got a full copy since it connected)")


class ErrorReport(Message):
    """One rejected input, on `errors`; the offending payload is only excerpted."""

    ts: float
    source: str = Field(description="Who rejected it: a node id or 'coordinator'")
    topic: str
    reason: str
    excerpt: str = Field("", max_length=256)
    size: Count = 0


class CoordinatorStats(Message):
    """The coordinator's counters, every few seconds on `coordinator/stats`."""

    ts: float
    uptime_s: float
    nodes_online: Count
    nodes_known: Count
    queued: Count
    in_flight: Count
    queued_by_kind: dict[str, Count] = Field(default_factory=dict)
    submitted: Count
    done: Count
    failed: Count
    retried: Count
    rejected: Count
    duplicates: Count
    handed_up: Count = Field(0, description="Jobs no node here could run, handed up to the hub (hand_up)")
    jobs_per_s: float
    frames_in: dict[str, Count] = Field(default_factory=dict, description="Frames received per camera")
    frames_done: dict[str, Count] = Field(default_factory=dict, description="Frames whose result came back, per camera")
    frames_dropped: dict[str, Count] = Field(default_factory=dict, description="Frames replaced by a newer one before a node was free, per camera")
    frames_lost: dict[str, Count] = Field(default_factory=dict, description="Frames whose node died or never confirmed them, per camera")
    fusion_queued: Count = Field(0, description="Closed fusion windows waiting, all groups")
    fusion_readings: dict[str, Count] = Field(default_factory=dict, description="Readings filed into windows, per group")
    fusion_windows: dict[str, Count] = Field(default_factory=dict, description="Windows closed, per group")
    fusion_fused: dict[str, Count] = Field(default_factory=dict, description="Windows fused (posterior back), per group")
    fusion_failed: dict[str, Count] = Field(default_factory=dict, description="Windows whose job FAILED (the prior carries over), per group")
    fusion_overflow: dict[str, Count] = Field(default_factory=dict, description="Windows or readings refused at a bound, per group")
    fusion_late: dict[str, Count] = Field(default_factory=dict, description="Readings older than an already closed window, per group")
    sensor_missing: dict[str, Count] = Field(default_factory=dict, description="Readings a fused sensor numbered (seq) that never arrived, per sensor")


class NodeJobs(RootModel[Job | Annotated[list[Job], Field(min_length=1)]]):
    """What `nodes/{node}/jobs` carries (a frame's envelope aside): one job, or a JSON array of the
    jobs placed on the node at once. Only the schema is exported; the agent parses the jobs."""


class NodeResults(RootModel[Result | Annotated[list[Result], Field(min_length=1)]]):
    """What `nodes/{node}/results` carries: one result, or a JSON array of the results that
    finished together. Each item of an array is checked and counted on its own, as a single one
    is. Only the schema is exported; the coordinator's door parses the items."""


MODELS: dict[str, type[Message]] = {
    "capabilities": Capabilities,
    "status": NodeStatus,
    "heartbeat": Heartbeat,
    "job_request": JobRequest,
    "job": Job,
    "result": Result,
    "job_state": JobState,
    "error": ErrorReport,
    "coordinator_stats": CoordinatorStats,
    "frame_meta": FrameMeta,
    "leader_claim": LeaderClaim,
    "coordinator_member": CoordinatorMember,
}


def excerpt(payload: bytes, limit: int = 120) -> str:
    """A short, printable excerpt of a payload for error reports."""
    text = payload[:limit].decode("utf-8", errors="replace")
    return text + ("…" if len(payload) > limit else "")

