"""The device agent: birth certificate, heartbeats, and jobs from its own jobs topic.

Threads, not asyncio: paho's network thread delivers messages, a worker pool runs jobs,
and one timer thread sends heartbeats. Liveness never depends on the broker: the
heartbeat lists every job this node holds, which renews their leases at the coordinator.
"""

from __future__ import annotations

import logging
import platform
import secrets
import threading
import time
from pathlib import Path
from typing import Literal

from pydantic import TypeAdapter

from edgehive import __version__
from edgehive.bus import MqttBus, Outgoing
from edgehive.schemas import (
    Capabilities,
    Heartbeat,
    Job,
    LeaderClaim,
    NodeStatus,
    Result,
    Timings,
    Topics,
    decode,
    encode,
    envelope,
    parse_claim,
    parse_status,
)
from edgehive.schemas.kinds import DETECT_KIND, FUSION_KIND
from edgehive.signals import Stop

from .directframes import DirectFrames, is_direct
from .fusion.job import fusion_kind
from .health import HealthReader
from .inference import BackendChoice, available_backends
from .kinds import KindRegistry, builtin_kinds
from .probe import probe_device
from .results import ResultOutbox
from .runner import JobRunner
from .settings import AgentSettings
from .snapshots import SnapshotPublisher
from .vision import DetectorPool, detections_kind, load_pool

log = logging.getLogger(__name__)

_JOB_BATCH = TypeAdapter(list[Job])
# MQTT 3.1.1 cannot tell a client that the broker's ACL dropped its publish; our own retained
# status coming back to us (we read our own topics) is the proof that the broker took it.
ECHO_TIMEOUT_S = 5.0


def parse_jobs(topic: str, payload: bytes) -> list[tuple[Job, bytes | None]]:
    """A job, an array of jobs (the coordinator batches what it places at once), or a frame
    envelope whose header is the job and whose body is the JPEG."""
    if envelope.is_envelope(payload):
        header, jpeg = envelope.unpack(payload)
        envelope.check_jpeg(jpeg)
        return [(decode(Job, header), jpeg)]
    if payload.lstrip()[:1] == b"[":
        return [(job, None) for job in _JOB_BATCH.validate_json(payload)]
    return [(decode(Job, payload), None)]


class Agent:
    def __init__(self, settings: AgentSettings, kinds: KindRegistry | None = None) -> None:
        self.settings = settings
        self.node = settings.node_id
        self.topics = Topics(settings.prefix)
        self.boot_id = secrets.token_hex(6)
        self.kinds = kinds or builtin_kinds()
        if self.kinds.get(FUSION_KIND) is None:  # numpy only: every agent fuses
            self.kinds.register(fusion_kind())
        self.detectors: DetectorPool | None = None
        self.root = Path(settings.host_root)
        self.health = HealthReader(self.root)
        self.draining = threading.Event()
        self._stop = threading.Event()
        self._seq = 0
        self._rate_mark = (time.monotonic(), 0)  # (when, jobs finished by then): the heartbeat's jobs_per_s
        self._echoed = threading.Event()
        self.epoch = 0  # the highest coordinator epoch seen (claims, dispatches): lower ones are a deposed leader's
        self.topics.jobs(self.node)  # fails fast on a node id that cannot be a topic level
        self.bus = MqttBus(
            settings.broker, self.topics, f"edgehive-agent-{self.node}", source=self.node,
            will=Outgoing(self.topics.status(self.node), self._status("offline", "will: connection lost"), qos=1, retain=True),
            max_payload_bytes=settings.max_payload_bytes,
        )
        self.results = ResultOutbox(self._send_results, self.bus.call_soon)
        self.runner = JobRunner(self.kinds, self.node, settings.workers, settings.effective_slots, self._publish_result, self._decline)
        self._heartbeat_thread = threading.Thread(target=self._heartbeat_loop, name="heartbeat", daemon=True)
        self.direct = DirectFrames(self.node, self.boot_id, self.bus, self.topics, self.runner,
                                   lambda: self.detectors.models() if self.detectors else [], self.draining)

    # -- messages ----------------------------------------------------------------------------

    def _status(self, state: Literal["online", "offline"], reason: str | None = None) -> bytes:
        return encode(NodeStatus(state=state, boot_id=self.boot_id, ts=time.time(), reason=reason))

    def capabilities(self) -> Capabilities:
        device = probe_device(self.root)
        return Capabilities(
            node=self.node, boot_id=self.boot_id, ts=time.time(), version=__version__,
            arch=device.arch, board=device.board, os=device.os, python=platform.python_version(),
            cores=device.cores, ram_mb=device.ram_mb, accelerators=device.accelerators,
            backends=available_backends(), models=self.detectors.models() if self.detectors else [],
            model_runtimes=self.detectors.runtimes() if self.detectors else {},
            kinds=self.kinds.names(), workers=self.settings.workers, slots=self.settings.effective_slots,
            tags=self.settings.tag_list,
        )

    def heartbeat(self) -> Heartbeat:
        running, waiting = self.runner.counts()
        self._seq += 1
        now, finished = time.monotonic(), self.runner.done + self.runner.failed
        (then, before), self._rate_mark = self._rate_mark, (now, finished)
        rate = round((finished - before) / max(now - then, 1e-3), 3)
        return Heartbeat(
            node=self.node, boot_id=self.boot_id, seq=self._seq, ts=time.time(),
            cpu_pct=self.health.cpu_pct(), mem_pct=self.health.mem_pct(), temp_c=self.health.temperature_c(),
            throttled=self.health.throttled(), gpu_pct=self.health.gpu_pct(),
            in_flight=running, queued=waiting, jobs_done=self.runner.done, jobs_failed=self.runner.failed, jobs_per_s=rate,
            service_s=self.runner.mean_service_s(), service_by_kind=dict(self.runner.service_by_kind),
            service_by_model=dict(self.runner.service_by_model),
            held=self.runner.held_ids(), running=self.runner.running_ids(), draining=self.draining.is_set(),
        )

    def _publish_heartbeat(self) -> None:
        beat = encode(self.heartbeat())
        # A job the heartbeat no longer lists must have its result ahead of it on the wire: a
        # coordinator that reads the heartbeat first would take the job for lost.
        self.results.flush()
        self.bus.publish(self.topics.heartbeat(self.node), beat, qos=0)

    def _birth(self) -> None:
        """On every (re)connect: the retained birth certificate, `online`, and a first heartbeat."""
        self.bus.publish(self.topics.capabilities(self.node), encode(self._caps), qos=1, retain=True)
        self._echoed.clear()
        self.bus.publish(self.topics.status(self.node), self._status("online"), qos=1, retain=True)
        self._publish_heartbeat()
        timer = threading.Timer(ECHO_TIMEOUT_S, self._check_echo)
        timer.daemon = True
        timer.start()

    def _check_echo(self) -> None:
        """Our `online` never came back: the broker dropped what we publish, which MQTT 3.1.1
        reports to nobody; say why it probably did, since nothing else will."""
        if self._echoed.is_set() or self._stop.is_set() or not self.bus.connected.is_set():
            return
        user = self.settings.broker.username
        log.error("the broker did not echo our own status within %g s, so it drops what this agent publishes: "
                  "is the ACL letting MQTT user %r write %s/nodes/%s/...? An agent's MQTT user name must equal its node id "
                  "(EDGEHIVE_NODE_ID=%s; broker/README.md)", ECHO_TIMEOUT_S, user, self.settings.prefix, self.node, self.node)

    def _publish_result(self, result: Result) -> None:
        self.results.add(encode(result))
        if not result.ok:  # a failed job is a rejected input too: say so where every reject goes
            self.bus.report_error(self.topics.jobs(self.node), f"job {result.job_id} ({result.kind}) failed: {result.error}")
        if is_direct(result.job_id):  # a camera's direct frame: ask it for the next one
            self.direct.finished(result)

    # -- handlers (network thread) -----------------------------------------------------------

    def _send_results(self, payload: bytes) -> None:
        if not self.bus.publish(self.topics.node_results(self.node), payload, qos=1):
            log.error("results (%d bytes) could not be queued; the coordinator will re-run their jobs", len(payload))

    def _on_jobs(self, topic: str, jobs: list[tuple[Job, bytes | None]]) -> None:
        with self.results.holding():  # inline kinds finish here: their results go out together
            for job, frame in jobs:
                self._on_job(job, frame)

    def _on_job(self, job: Job, frame: bytes | None = None) -> None:
        received = time.time()
        if job.boot_id != self.boot_id:
            log.info("ignoring job %s meant for an earlier boot of %s", job.id, self.node)
            return
        if job.epoch is not None:
            if job.epoch < self.epoch:
                log.warning("ignoring job %s from a deposed coordinator (epoch %d, the active one's is %d)", job.id, job.epoch, self.epoch)
                return
            self.epoch = job.epoch
        if self.runner.is_held(job.id):
            return  # a redelivery of a job we are already running
        reason = "node is draining" if self.draining.is_set() else None
        if reason is None and not self.runner.try_accept(job, received, frame):
            reason = f"node is full ({self.runner.capacity} jobs)"
        if reason is not None:
            self._decline(job, received, reason)

    def _decline(self, job: Job, received: float, reason: str) -> None:
        """Give a job back to the coordinator to run elsewhere (full, draining, stuck behind a worker)."""
        if is_direct(job.id):  # not the coordinator's: the frame is refused (and counted dropped)
            self.direct.handed_back(job, received, reason)
            return
        refusal = Result(
            job_id=job.id, kind=job.kind, node=self.node, source=job.source, attempt=job.attempt,
            ok=False, error=reason, retryable=True, timings=Timings(queued=job.submitted, dispatched=job.dispatched, received=received),
        )
        self.bus.publish(self.topics.declined(self.node), encode(refusal), qos=1)

    def _on_claim(self, topic: str, claim: LeaderClaim | None) -> None:
        """A coordinator took over: from now on, work from a lower epoch is a deposed leader's."""
        if claim is not None and claim.epoch > self.epoch:
            if self.epoch:
                log.info("coordinator %s is active now (epoch %d)", claim.id, claim.epoch)
            self.epoch = claim.epoch

    def _on_own_status(self, topic: str, status: NodeStatus) -> None:
        """Someone (a coordinator that lost our heartbeats) declared this boot offline: correct it.
        Our own `online` coming back proves the broker lets us publish (`_check_echo`)."""
        if status.state == "online" and status.boot_id == self.boot_id:
            self._echoed.set()
        if status.state == "offline" and status.boot_id == self.boot_id and not self._stop.is_set() and not self.draining.is_set():
            log.warning("status was set offline (%s) while alive; re-announcing", status.reason)
            self.bus.publish(self.topics.status(self.node), self._status("online"), qos=1, retain=True)

    # -- lifecycle ---------------------------------------------------------------------------

    def _load_models(self) -> None:
        """Before the birth certificate: a model is advertised only once it is warm."""
        s = self.settings
        choice = BackendChoice(s.backend, s.inference_threads, s.onnx_providers, s.tensorrt_cache_dir)
        self.detectors = load_pool(Path(s.models_dir), s.model_list, choice, s.inference_threads, s.workers)
        if self.detectors.models() and self.kinds.get(DETECT_KIND) is None:
            snapshots = SnapshotPublisher(s.snapshot_interval_s, self._publish_snapshot)
            self.kinds.register(detections_kind(self.detectors, snapshots))

    def _publish_snapshot(self, camera: str, jpeg: bytes) -> None:
        self.bus.publish(self.topics.node_snapshot(self.node, camera), jpeg, qos=0)

    def start(self, connect_timeout_s: float | None = None) -> None:
        self._load_models()
        self._caps = self.capabilities()
        self.bus.subscribe(self.topics.jobs(self.node), self._on_jobs, parse_jobs, qos=1, max_bytes=max(1 << 20, 2 * self.settings.max_payload_bytes))
        self.bus.subscribe(self.topics.status(self.node), self._on_own_status, lambda t, p: parse_status(p), qos=1)
        self.bus.subscribe(self.topics.coordinator_leader, self._on_claim, parse_claim, qos=1)
        self.bus.on_connect(self._birth)
        if self.detectors is not None and self.detectors.models():
            self.direct.start()
        self.bus.start(timeout_s=connect_timeout_s)
        self._heartbeat_thread.start()
        log.info("agent %s (boot %s) started: %s", self.node, self.boot_id, ", ".join(self._caps.kinds))

    def _heartbeat_loop(self) -> None:
        while not self._stop.wait(self.settings.heartbeat_s):
            self.runner.check_waiting(self.settings.prefetch_wait_max_s)
            if self.bus.connected.is_set():
                self._publish_heartbeat()

    def drain(self) -> None:
        """Take no new job, finish what is held, then say `offline` and leave."""
        if self.draining.is_set():
            return
        self.draining.set()
        self._publish_heartbeat()  # tells the scheduler at once
        finished = self.runner.wait_idle(self.settings.drain_timeout_s)
        if not finished:
            log.warning("drain timed out with %d jobs held; handing them back", len(self.runner.held_ids()))
            self.runner.cancel_all("node is draining")  # cancellable kinds stop; the coordinator re-runs the rest
            self.runner.wait_idle(min(2.0, self.settings.drain_timeout_s))
        self._stop.set()
        self.direct.stop()
        self.results.flush()  # anything the network thread had not sent yet
        self.bus.stop([Outgoing(self.topics.status(self.node), self._status("offline", "drained"), qos=1, retain=True)])
        self.runner.shutdown()
        self.health.close()  # jtop's client, where one was started

    def run_forever(self) -> None:
        """Start, then block until SIGTERM or SIGINT, then drain (a second signal: at once)."""
        stop = Stop().install()  # before start(): a signal while models load is not lost
        self.start()
        stop.wait()
        log.info("agent %s: %s, draining (at most %g s)", self.node, stop.signal_name, self.settings.drain_timeout_s)
        self.drain()
