"""The coordinator: turns submissions into placed jobs and keeps every job alive until it ends.

One lock guards all state; paho's network thread runs the handlers and a ticker thread
checks liveness, leases and deadlines. Guarantees come from our own bookkeeping, never
from the broker: a job is held by exactly one node at a time, the node's heartbeats
renew its lease, and a job whose node dies or whose lease lapses goes back to the queue
until `max_attempts`. Submissions are journaled, so a coordinator restart loses none.
"""

from __future__ import annotations

import heapq
import logging
import re
import threading
import time
import uuid
from pathlib import Path

from edgehive.bus import MqttBus, Outgoing, Rejected
from edgehive.schemas import (
    Capabilities,
    CoordinatorStats,
    Heartbeat,
    JobRequest,
    JobStateName,
    NodeStatus,
    Result,
    Topics,
    decode,
    encode,
    envelope,
    parse_status,
)
from edgehive.schemas.base import IDENT_PATTERN
from edgehive.schemas.messages import FrameMeta, Requirements, job_json, job_state_json
from edgehive.schemas.sensors import ImuReading, SensorReading, parse_readings
from edgehive.signals import Stop

from . import scheduler
from .cameras import detect_params
from .discovery import camera_messages, discovery_messages
from .frames import Frame, FrameRouter
from .fusion import FUSION_KIND, FusionWindows
from .jobs import FinishedJobs, JobQueue, JobRecord
from .journal import JobJournal
from .registry import Change, Node, NodeRegistry
from .settings import CoordinatorSettings

log = logging.getLogger(__name__)

S = JobStateName
IDENT = re.compile(IDENT_PATTERN)
DETECT_KIND = "detections"
_BATCH_BYTES = 256 * 1024
HEARTBEAT_TIMEOUT = "heartbeat timeout"  # the reason of the offline status we publish for a silent node


class Coordinator:
    def __init__(self, settings: CoordinatorSettings) -> None:
        self.settings = settings
        self.topics = Topics(settings.prefix)
        self.registry = NodeRegistry()
        self.queue = JobQueue()
        self.active: dict[str, JobRecord] = {}
        self.finished = FinishedJobs(settings.finished_max)
        self.orphans: dict[str, JobRecord] = {}
        self._deadlines: list[tuple[float, str]] = []  # (deadline, job id), a heap; finished ones drop out when due
        self._outbox: dict[str, list[bytes]] = {}
        self.frames = FrameRouter()
        self._model_requirements: dict[str, Requirements] = {}
        self._cameras = settings.camera_policy
        self._frame_warned: dict[str, float] = {}
        self._run_id = uuid.uuid4().hex[:8]
        self._frame_seq = 0
        self._pump_wanted = False
        self.counters = {"submitted": 0, "done": 0, "failed": 0, "retried": 0, "rejected": 0, "duplicates": 0}
        journal_path = Path(settings.state_dir) / f"jobs-{settings.prefix.replace('/', '_')}.jsonl" if settings.state_dir else None
        self.journal = JobJournal(journal_path, self._open_journal_entries, self._report_journal_problem)
        fusion_path = journal_path.with_name(journal_path.name.replace("jobs-", "fusion-").replace(".jsonl", ".json")) if journal_path else None
        self.fusion = FusionWindows(settings.fusion_group_map, settings.fusion_queue_max, settings.fusion_window_max_readings,
                                    settings.fusion_grace_s, fusion_path)
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._started = time.monotonic()
        self._recovery_until = 0.0
        self._last_stats = (time.monotonic(), 0)
        self.bus = MqttBus(
            settings.broker, self.topics, f"edgehive-coordinator-{settings.prefix.replace('/', '-')}",
            source="coordinator",
            will=Outgoing(self.topics.coordinator_status, b"offline", qos=1, retain=True),
            clean_session=False,  # on Mosquitto, submissions made while we restart are queued for us
            max_payload_bytes=settings.max_payload_bytes,
        )
        self._ticker = threading.Thread(target=self._tick_loop, name="coordinator-tick", daemon=True)

    # -- parsing (network thread, before the lock) -----------------------------------------

    # The subscription filters fix each topic's shape, so only the id levels need reading; an id
    # the payload does not repeat (status) goes through the full topic parser.

    def _parse_node_message(self, topic: str, payload: bytes, model: type) -> object:
        message = parse_status(payload) if model is NodeStatus else decode(model, payload)
        node = getattr(message, "node", None)
        topic_node = topic.rsplit("/", 2)[-2]
        if node is None:
            self.topics.parse(topic)
        elif node != topic_node:
            raise Rejected(f"message names node {node!r} but arrived on node {topic_node[:80]!r}'s topic")
        return message

    def _parse_result(self, topic: str, payload: bytes) -> tuple[Result, bytes]:
        """A result from `nodes/{node}/results`: the broker's ACL lets only that node's account write
        there, so the topic names the publisher, and the payload must agree with it. The raw payload
        is kept so that the relay to `results/{kind}/{source}` is byte for byte."""
        result = decode(Result, payload)
        topic_node = topic.rsplit("/", 2)[-2]
        if result.node != topic_node:
            raise Rejected(f"result of job {result.job_id} names node {result.node!r} but arrived on node {topic_node[:80]!r}'s topic")
        return result, payload

    def _parse_snapshot(self, topic: str, payload: bytes) -> tuple[str, str, bytes]:
        node, _, camera = topic.rsplit("/", 3)[-3:]
        for value, what in ((node, "node"), (camera, "camera")):
            if not IDENT.fullmatch(value):
                raise Rejected(f"invalid {what} id {value[:80]!r} in the topic")
        return node, camera, payload

    def _parse_frame(self, topic: str, payload: bytes) -> Frame:
        camera = topic.rsplit("/", 1)[-1]  # the subscription fixes the shape; the id is checked here
        if not IDENT.fullmatch(camera):
            raise Rejected(f"invalid camera id {camera[:80]!r} in the topic")
        meta = FrameMeta()
        jpeg = payload
        if envelope.is_envelope(payload):
            header, jpeg = envelope.unpack(payload)
            meta = decode(FrameMeta, header)
        envelope.check_jpeg(jpeg)
        config = self._cameras.resolve(camera, meta.model)
        assert config.model is not None  # the policy's base always names the default model
        return Frame(camera, jpeg, config.model, arrived=time.time(), captured=meta.captured, config=config)

    def _parse_readings(self, topic: str, payload: bytes) -> tuple[str, str, list[tuple[SensorReading | ImuReading, float]]]:
        """Readings, checked at the door: finite, in their quantity's unit, stamped within the clock limits."""
        sensor, quantity = topic.rsplit("/", 2)[-2:]
        for value, what in ((sensor, "sensor"), (quantity, "quantity")):
            if not IDENT.fullmatch(value):
                raise Rejected(f"invalid {what} id {value[:80]!r} in the topic")
        now = time.time()
        stamped = []
        for reading in parse_readings(quantity, payload):
            ts = reading.ts or now
            if ts > now + self.settings.sensor_max_future_s:
                raise Rejected(f"reading from {sensor} is stamped {ts - now:.1f} s in the future (limit {self.settings.sensor_max_future_s:g} s; check the sensor's clock)")
            if ts < now - self.settings.sensor_max_age_s:
                raise Rejected(f"reading from {sensor} is {now - ts:.0f} s old (limit {self.settings.sensor_max_age_s:g} s)")
            stamped.append((reading, ts))
        return sensor, quantity, stamped

    def _on_readings(self, topic: str, parsed: tuple[str, str, list[tuple[SensorReading | ImuReading, float]]]) -> None:
        sensor, quantity, stamped = parsed
        problems: list[str] = []
        with self._lock:
            for reading, ts in stamped:
                problems += self.fusion.add(sensor, quantity, reading, ts)
            self._report_refused_windows()
            if self.fusion.waiting_count():
                self._pump_wanted = True
        for problem in problems[:3]:  # a batch refused by a full window says so once or twice, not a thousand times
            self.bus.report_error(topic, f"reading from {sensor} not fused: {problem}")

    def _report_refused_windows(self) -> None:
        for group, number, count in self.fusion.take_refused():
            self.bus.report_error(self.topics.pattern("sensor"), f"fusion window {number} of group {group} ({count} readings) refused: "
                                  f"{self.settings.fusion_queue_max} windows already wait (fusion_queue_max)")

    def _submit_fusion_windows(self) -> None:
        """Each group's next closed window becomes a job like any submitted one: journaled, leased, retried."""
        for request in self.fusion.ready_jobs():
            self._accept(request, self.topics.pattern("sensor"), bounded=False)

    def _on_frame(self, topic: str, frame: Frame) -> None:
        with self._lock:
            new_camera = frame.camera not in self.frames.received
            self.frames.offer(frame)
            self._pump_wanted = True
        if new_camera and self.settings.ha_discovery_prefix:
            self._announce_camera(frame.camera)

    def _announce_camera(self, camera: str) -> None:
        """A camera seen for the first time (since this coordinator started) appears in Home Assistant."""
        labels = self._cameras.resolve(camera).labels or ()
        for topic, config in camera_messages(self.settings.ha_discovery_prefix, self.topics, camera, labels):
            self.bus.publish(topic, config, qos=1, retain=True)

    # -- state publishing --------------------------------------------------------------------

    def _publish_state(self, job: JobRecord, state: JobStateName, reason: str | None = None, ts: float | None = None) -> None:
        job.state = state
        payload = job_state_json(job.id, state, ts or time.time(), job.kind, job.attempt, job.node, reason)
        self.bus.publish(self.topics.job_state(job.id), payload, qos=1)

    def _finish(self, job: JobRecord, state: JobStateName, reason: str | None = None, output: object = None) -> None:
        self._publish_state(job, state, reason)
        if job.kind == FUSION_KIND:
            self.fusion.finished(job.id, job.request.params, output if state is S.DONE else None)
            self._pump_wanted = True
        self.active.pop(job.id, None)
        self.orphans.pop(job.id, None)
        self.finished.add(job, reason)
        self.counters["done" if state is S.DONE else "failed"] += 1
        self.journal.ended(job.id)

    def _open_journal_entries(self) -> list[tuple[JobRequest, float, int]]:
        return [(j.request, j.submitted, j.attempt) for j in self.active.values()]

    def _report_journal_problem(self, problem: str) -> None:
        self.bus.report_error(self.topics.submit, problem)

    # -- submissions -------------------------------------------------------------------------

    def _on_submit(self, topic: str, request: JobRequest) -> None:
        with self._lock:
            if request.id is not None and self._answer_resubmission(request.id):
                return
            self._accept(request, topic)

    def _accept(self, request: JobRequest, topic: str, bounded: bool = True) -> None:
        """Queue a new job or fail it with a reason; lock held. Fusion windows are not `bounded` by
        queue_max: they have their own bound, and at most one per group is ever queued."""
        job_id = request.id or uuid.uuid4().hex[:20]
        request = request.model_copy(update={"id": job_id})
        now = time.time()
        job = JobRecord(job_id, request, submitted=now, deadline=now + request.deadline_s if request.deadline_s else None)
        self.counters["submitted"] += 1
        if bounded and len(self.queue) >= self.settings.queue_max:
            self.counters["rejected"] += 1
            reason = f"queue full ({self.settings.queue_max} jobs waiting)"
            self.bus.report_error(topic, f"job {job_id} refused: {reason}")
            self._publish_state(job, S.FAILED, reason)
            self.finished.add(job, reason)
            return
        self.active[job_id] = job
        if job.deadline is not None:
            heapq.heappush(self._deadlines, (job.deadline, job_id))
        self.journal.accepted(request, now)
        self._publish_state(job, S.REQUESTED)
        reason = self._unrunnable(job)
        if reason is not None:
            self._fail_unrunnable(job, reason)
            return
        self.queue.push(job)
        self._pump_wanted = True

    def _fail_unrunnable(self, job: JobRecord, reason: str) -> None:
        """A job no node could ever run (an unknown kind, a tag nobody has) is a refused input as
        much as a failed job: FAILED on its state topic and reported on `errors` too."""
        self.bus.report_error(self.topics.submit, f"job {job.id} ({job.kind}) refused: {reason}")
        self._finish(job, S.FAILED, reason)

    def _answer_resubmission(self, job_id: str) -> bool:
        """A job id we already have: repeat its state (the submitter's ack got lost) and stop."""
        job = self.active.get(job_id)
        if job is not None:
            self._publish_state(job, job.state)
            return True
        final = self.finished.get(job_id)
        if final is not None:
            state, kind, node, attempt, reason = final
            self.bus.publish(self.topics.job_state(job_id), job_state_json(job_id, state, time.time(), kind, attempt, node, reason), qos=1)
            return True
        return False

    # -- placement ---------------------------------------------------------------------------

    def _pump(self) -> None:
        """Place queued jobs while any node has a free slot."""
        self._submit_fusion_windows()
        nodes = self.registry.alive()
        if not (self.queue or self.frames.pending) or not any(n.free_slots for n in nodes):
            return
        now_mono, now = time.monotonic(), time.time()
        self._place_frames(nodes, now, now_mono)

        def try_place(job: JobRecord) -> bool | None:
            node = scheduler.choose(nodes, job.kind, job.request.requires, job.avoid)
            if node is not None:
                self._dispatch(job, node, now, now_mono)
                return True
            return None if not any(n.free_slots for n in nodes) else False

        self.queue.take(try_place)

    def _place_frames(self, nodes: list[Node], now: float, now_mono: float) -> None:
        """Frames first (they are real time), each to a node that has its camera's model."""
        waiting = self.frames.waiting()
        if not waiting:
            return
        for frame in waiting:
            requires = self._requirements_for(frame.model)
            node = scheduler.choose(nodes, DETECT_KIND, requires)
            if node is None:
                continue
            assert node.boot_id is not None
            self._frame_seq += 1
            job_id = f"f{self._run_id}-{self._frame_seq}"  # unique per coordinator run, cheaper than uuid4
            params = detect_params(frame.config, frame.camera, frame.captured)
            header = job_json(job_id, DETECT_KIND, params, frame.camera, 1, node.boot_id, frame.arrived, now)
            self.bus.publish(self.topics.jobs(node.id), envelope.pack(header, frame.jpeg), qos=1)
            node.sent(job_id, self.settings.lease)
            self.frames.sent(job_id, frame, node.id, now_mono)

    def _requirements_for(self, model: str) -> Requirements:
        """Cached per model; a camera's envelope names the model, so the cache is bounded."""
        requires = self._model_requirements.get(model)
        if requires is None:
            if len(self._model_requirements) >= 256:
                self._model_requirements.clear()
            requires = self._model_requirements[model] = Requirements(model=model)
        return requires

    def _warn_unplaceable_frames(self) -> None:
        """A camera whose model no known node has: say so on `errors`, once a minute."""
        now = time.monotonic()
        for frame in list(self.frames.pending.values()):
            reason = self._unrunnable_kind(DETECT_KIND, self._requirements_for(frame.model))
            if reason is not None and now - self._frame_warned.get(frame.camera, -1e9) > 60:
                self._frame_warned[frame.camera] = now
                self.bus.report_error(self.topics.frames(frame.camera), f"frames of {frame.camera} want model {frame.model!r}: {reason}")

    def _unrunnable_kind(self, kind: str, requires: Requirements | None) -> str | None:
        if time.monotonic() - self._started <= self.settings.dead_after:
            return None
        return scheduler.never_runnable(self.registry.nodes.values(), kind, requires)

    def _unrunnable(self, job: JobRecord) -> str | None:
        """Why no known node could ever run `job`; judged only once the registry is rebuilt."""
        return self._unrunnable_kind(job.kind, job.request.requires)

    def _sweep_queue(self) -> None:
        """Fail queued jobs whose deadline passed or that no node can run."""
        now = time.time()
        for job in self.queue:
            reason = self._unrunnable(job)
            if reason is not None:
                self.queue.remove(job)
                self._fail_unrunnable(job, reason)
            elif job.deadline is not None and now > job.deadline:
                self.queue.remove(job)
                self._finish(job, S.FAILED, f"deadline of {job.request.deadline_s:g} s passed while queued")

    def _expire_placed(self) -> None:
        """Fail placed jobs whose deadline passed. The node keeps the slot in our books while its
        heartbeats list the job (it may still be running it); a result that comes later is ignored."""
        now = time.time()
        while self._deadlines and self._deadlines[0][0] < now:
            _, job_id = heapq.heappop(self._deadlines)
            job = self.active.get(job_id)
            if job is None or job.queued or job.node is None:
                continue  # finished, or queued (_sweep_queue fails it), or an orphan not yet adopted
            where = "running" if job.running_announced else "waiting for a worker"
            self._finish(job, S.FAILED, f"deadline of {job.request.deadline_s:g} s passed while {where} on node {job.node}")

    def _dispatch(self, job: JobRecord, node: Node, now: float, now_mono: float) -> None:
        assert node.boot_id is not None
        job.attempt += 1
        job.node, job.boot_id = node.id, node.boot_id
        job.placed_on.add(node.id)
        job.dispatched, job.dispatched_mono = now, now_mono
        job.running_announced = False
        node.sent(job.id, self.settings.lease)
        self._outbox.setdefault(node.id, []).append(job_json(
            job.id, job.kind, job.request.params, job.source, job.attempt, node.boot_id, job.submitted, now, job.deadline,
        ))
        self._publish_state(job, S.SCHEDULED)

    def _flush_outbox(self) -> None:
        """One message per node for everything placed in this round: a job, or an array of jobs."""
        for node_id, jobs in self._outbox.items():
            topic = self.topics.jobs(node_id)
            if len(jobs) == 1:
                self.bus.publish(topic, jobs[0], qos=1)
                continue
            chunk: list[bytes] = []
            size = 0
            for job in jobs:  # arrays stay well under the agent's size limit
                chunk.append(job)
                size += len(job)
                if size >= _BATCH_BYTES:
                    self.bus.publish(topic, b"[" + b",".join(chunk) + b"]", qos=1)
                    chunk, size = [], 0
            if chunk:
                self.bus.publish(topic, b"[" + b",".join(chunk) + b"]", qos=1)
        self._outbox.clear()

    def _after_read_burst(self) -> None:
        """Runs on the network thread once every message of one read is handled: placing jobs
        here, not per message, lets one message carry several jobs to a node under load."""
        with self._lock:
            if self._pump_wanted:
                self._pump_wanted = False
                self._pump()
                self._flush_outbox()
            # Fusion state first: a crash between the two then re-runs a window whose end the journal
            # never saw (same prior, same result), instead of numbering a window twice.
            self.fusion.flush_state()
            self.journal.flush()  # before this burst's acknowledgements are written

    def _requeue(self, job_id: str, reason: str, count_attempt: bool = True, avoid: str | None = None) -> None:
        """Back to the front of the queue; `avoid`: a node this job should go to only if no other can run it."""
        job = self.active.get(job_id)
        if job is None:
            return
        if avoid is not None:
            job.avoid.add(avoid)
        if job.node is not None:
            node = self.registry.nodes.get(job.node)
            if node is not None:
                node.jobs.discard(job_id)
        if not count_attempt:
            job.attempt -= 1
            job.bounces += 1
        if job.attempt >= self.settings.max_attempts or job.bounces > 10 * self.settings.max_attempts:
            self._finish(job, S.FAILED, f"{reason}; gave up after {job.attempt} attempts")
            return
        job.node = None
        self.counters["retried"] += 1
        self._publish_state(job, S.REQUESTED, f"re-queued: {reason}")
        self.queue.push(job, front=True)

    def _apply(self, change: Change, why: str) -> None:
        for job_id in sorted(change.lost_jobs):
            if self.frames.lose(job_id) is None:
                self._requeue(job_id, f"node {change.node.id} {why}")
        if change.died:
            log.warning("node %s (boot %s) is dead (%s); %d jobs re-queued", change.node.id, change.node.boot_id, why, len(change.lost_jobs))
        elif change.revived:
            log.info("node %s is online", change.node.id)

    # -- node events -------------------------------------------------------------------------

    def _on_capabilities(self, topic: str, caps: Capabilities) -> None:
        with self._lock:
            self._apply(self.registry.on_capabilities(caps, time.monotonic()), "restarted")
            self._pump_wanted = True

    def _on_status(self, topic: str, status: NodeStatus) -> None:
        node_id = self.topics.parse(topic).node
        assert node_id is not None
        if status.state == "offline" and status.reason == HEARTBEAT_TIMEOUT:
            # Our own verdict coming back (retained, or queued while the broker was away): we acted
            # on it when we published it, and a late echo must not kill a node that has since
            # heartbeated again. A node that is really gone stays silent and is found again.
            return
        with self._lock:
            why = "went offline" + (f" ({status.reason})" if status.reason else "")
            self._apply(self.registry.on_status(node_id, status, time.monotonic()), why if status.state == "offline" else "restarted")
            self._pump_wanted = True

    def _on_heartbeat(self, topic: str, beat: Heartbeat) -> None:
        now_mono = time.monotonic()
        with self._lock:
            change = self.registry.on_heartbeat(beat, now_mono)
            self._apply(change, "restarted")
            self._reconcile_leases(change.node, beat, now_mono)
            self._pump_wanted = True

    def _reconcile_leases(self, node: Node, beat: Heartbeat, now_mono: float) -> None:
        """The heartbeat lists what the node holds: confirm those, re-queue what it never got.
        A lapsed lease is no failure of the job (the way to the node stalled, e.g. after a
        partition): the job moves to another node without using up an attempt, and the node
        is suspect until it confirms a job sent to it."""
        held = set(beat.held)
        running = held if beat.running is None else set(beat.running)  # an agent that does not say: held means running
        if node.confirm(held):
            log.info("node %s confirmed a job sent while suspect; it gets work again", node.id)
        for job_id in held - node.jobs:
            self._adopt(node, job_id)
        for job_id in list(node.jobs):
            frame = self.frames.in_flight.get(job_id)
            if frame is not None:
                if job_id not in held and now_mono - frame.dispatched_mono > self.settings.lease:
                    self.frames.lose(job_id)
                    node.jobs.discard(job_id)
                    node.mark_suspect(job_id, now_mono + self.settings.lease)
                continue
            job = self.active.get(job_id)
            if job is None:
                if job_id not in held:  # a job failed at its deadline keeps its slot until the node lets go of it
                    node.jobs.discard(job_id)
            elif job_id in held:
                if not job.running_announced and job_id in running:
                    job.running_announced = True
                    self._publish_state(job, S.RUNNING)
            elif now_mono - job.dispatched_mono > self.settings.lease:
                if not node.suspect:
                    log.warning("node %s did not confirm job %s within the lease; no new work for it until it confirms one", node.id, job_id)
                node.mark_suspect(job_id, now_mono + self.settings.lease)
                self._requeue(job_id, f"node {node.id} never confirmed it within the {self.settings.lease:g} s lease",
                              count_attempt=False, avoid=node.id)
        node.foreign = len(held - node.jobs)

    def _adopt(self, node: Node, job_id: str) -> None:
        """After a restart, a journaled job that a live node is still running stays there."""
        job = self.orphans.pop(job_id, None)
        if job is None:
            return
        job.node, job.boot_id = node.id, node.boot_id
        job.dispatched_mono, job.running_announced = time.monotonic(), True
        node.jobs.add(job_id)
        self._publish_state(job, S.RUNNING, "adopted after coordinator restart")

    # -- results -----------------------------------------------------------------------------

    def _on_result(self, topic: str, parsed: tuple[Result, bytes]) -> None:
        """Accept a result only from the node its job (or frame) is placed on, then relay it, as
        it came, to `results/{kind}/{source}`: what users read there was checked, once per job."""
        result, payload = parsed
        with self._lock:
            sender = self.registry.nodes.get(result.node)
            if sender is not None:
                sender.confirm((result.job_id,))  # it got a job sent while it was suspect
            job = self.active.get(result.job_id)
            if job is None:
                frame = self.frames.sent_to(result.job_id)
                if frame is not None:
                    if frame.node != result.node:
                        self._refuse_result(topic, result, frame.node)
                        return
                    self.frames.finished(result.job_id)
                    self.registry.get(frame.node).jobs.discard(result.job_id)
                    self._relay_result(result, payload)
                    self._pump_wanted = True
                elif result.job_id in self.finished:
                    self.counters["duplicates"] += 1  # a late or second run: one final state per job
                    if sender is not None:
                        sender.jobs.discard(result.job_id)
                return
            if result.retryable:
                return  # refusals come on nodes/{node}/declined, never as a job's result
            if not self._placed_on(job, result.node):
                self._refuse_result(topic, result, job.node)
                return
            self.orphans.pop(job.id, None)
            if job.node is not None and job.node in self.registry.nodes:
                self.registry.nodes[job.node].jobs.discard(job.id)
            if job.queued:
                self.queue.remove(job)
            job.node, job.attempt = result.node, result.attempt
            if not job.running_announced:
                self._publish_state(job, S.RUNNING, ts=result.timings.started)
            self._relay_result(result, payload)
            self._finish(job, S.DONE if result.ok else S.FAILED, result.error, result.output)
            self._pump_wanted = True

    def _placed_on(self, job: JobRecord, node: str) -> bool:
        """`node` was given this job: it holds it now, or held it before a lapsed lease, a death
        or a hand-back moved it (its late result is as good as the next node's, and comes first),
        or the job was recovered after a restart and any known node may still be running it."""
        return node == job.node or node in job.placed_on or (job.id in self.orphans and node in self.registry.nodes)

    def _refuse_result(self, topic: str, result: Result, placed: str | None) -> None:
        where = f"placed on node {placed}" if placed else "not placed on any node"
        self.bus.report_error(topic, f"result for job {result.job_id} from node {result.node}, but the job is {where}: refused")

    def _relay_result(self, result: Result, payload: bytes) -> None:
        self.bus.publish(self.topics.result(result.kind, result.source), payload, qos=1)

    def _on_snapshot(self, topic: str, parsed: tuple[str, str, bytes]) -> None:
        """A live node's annotated snapshot becomes the camera's retained `snapshots/{camera}`."""
        node_id, camera, jpeg = parsed
        with self._lock:
            node = self.registry.nodes.get(node_id)
            alive = node is not None and node.alive
        if not alive:
            self.bus.report_error(topic, f"snapshot of {camera} from node {node_id}, which is not a live node: refused")
            return
        self.bus.publish(self.topics.snapshot(camera), jpeg, qos=0, retain=True)

    def _on_declined(self, topic: str, refusal: Result) -> None:
        """The node could not take the job (full, draining): run it elsewhere, without counting an attempt."""
        with self._lock:
            frame = self.frames.in_flight.get(refusal.job_id)
            if frame is not None and frame.node == refusal.node:  # only the node holding the frame may give it back
                self.frames.lose(refusal.job_id)
                self.registry.get(frame.node).jobs.discard(refusal.job_id)
            job = self.active.get(refusal.job_id)
            if job is None or job.node != refusal.node:
                return
            self.registry.get(refusal.node).paused_until = time.monotonic() + self.settings.heartbeat_s  # until its next heartbeat
            self._requeue(job.id, f"node {refusal.node} declined: {refusal.error}", count_attempt=False, avoid=refusal.node)
            self._pump_wanted = True

    # -- periodic work -----------------------------------------------------------------------

    def _tick_loop(self) -> None:
        period = min(0.5, self.settings.heartbeat_s / 2)
        while not self._stop.wait(period):
            try:
                self.tick()
            except Exception:  # the ticker must outlive a bug
                log.exception("coordinator tick failed")

    def tick(self) -> None:
        now_mono = time.monotonic()
        with self._lock:
            # While we are cut off from the broker we hear nobody: silence then proves nothing.
            expired = self.registry.expire(now_mono, self.settings.dead_after) if self.bus.connected.is_set() else []
            for change in expired:
                self._apply(change, f"sent no heartbeat for {self.settings.dead_after:g} s")
                status = NodeStatus(state="offline", boot_id=change.node.boot_id, ts=time.time(), reason=HEARTBEAT_TIMEOUT)
                self.bus.publish(self.topics.status(change.node.id), encode(status), qos=1, retain=True)
            if self.orphans and now_mono > self._recovery_until:
                for job in list(self.orphans.values()):
                    del self.orphans[job.id]
                    self._requeue(job.id, "not running anywhere after coordinator restart", count_attempt=False)
            self.fusion.close_due(time.time())
            self._report_refused_windows()
            self._sweep_queue()
            self._expire_placed()
            self._warn_unplaceable_frames()
            self._pump()
            self._flush_outbox()
            self.fusion.flush_state()
            self.journal.flush()
            if now_mono - self._last_stats[0] >= self.settings.stats_interval_s:
                self._publish_stats(now_mono)

    def stats(self, now_mono: float) -> CoordinatorStats:
        last_mono, last_done = self._last_stats
        done = self.counters["done"] + self.counters["failed"]
        rate = (done - last_done) / max(1e-6, now_mono - last_mono)
        self._last_stats = (now_mono, done)
        return CoordinatorStats(
            ts=time.time(), uptime_s=now_mono - self._started,
            nodes_online=len(self.registry.alive()), nodes_known=len(self.registry.nodes),
            queued=len(self.queue), in_flight=sum(len(n.jobs) for n in self.registry.nodes.values()),
            queued_by_kind=self.queue.count_by_kind(), jobs_per_s=round(rate, 2), **self.counters,
            frames_in=dict(self.frames.received), frames_done=dict(self.frames.done),
            frames_dropped=dict(self.frames.dropped), frames_lost=dict(self.frames.lost), **self.fusion.stats(),
        )

    def _publish_stats(self, now_mono: float) -> None:
        self.bus.publish(self.topics.coordinator_stats, encode(self.stats(now_mono)), qos=0)

    # -- lifecycle ---------------------------------------------------------------------------

    def _recover(self) -> None:
        """Journaled open jobs become orphans until a heartbeat shows who runs them."""
        for request, submitted, attempt in self.journal.recover():
            assert request.id is not None
            job = JobRecord(request.id, request, submitted=submitted,
                            deadline=submitted + request.deadline_s if request.deadline_s else None, attempt=max(attempt, 1))
            self.active[job.id] = job
            self.orphans[job.id] = job
            if job.deadline is not None:
                heapq.heappush(self._deadlines, (job.deadline, job.id))
            if job.kind == FUSION_KIND:
                self.fusion.adopt(job.id, request.params)
        self._recovery_until = time.monotonic() + self.settings.dead_after + self.settings.heartbeat_s
        if self.orphans:
            log.warning("recovered %d open jobs from the journal", len(self.orphans))

    def _birth(self) -> None:
        with self._lock:  # (re)connected: give every live node a full dead_after to be heard again
            now_mono = time.monotonic()
            for node in self.registry.alive():
                node.last_seen = max(node.last_seen, now_mono)
        self.bus.publish(self.topics.coordinator_status, b"online", qos=1, retain=True)
        if self.journal.problem:  # found before we were connected (at recovery): say it now
            self._report_journal_problem(self.journal.problem)
        if self.settings.ha_discovery_prefix:
            for topic, config in discovery_messages(self.settings.ha_discovery_prefix, self.topics, self.settings.fusion_group_map):
                self.bus.publish(topic, config, qos=1, retain=True)
            with self._lock:
                cameras = list(self.frames.received)
            for camera in cameras:  # after a reconnect, in case the broker lost its retained messages
                self._announce_camera(camera)

    def start(self, connect_timeout_s: float | None = None) -> None:
        self._recover()
        t = self.topics
        node_limit = self.settings.max_payload_bytes
        self.bus.subscribe(t.pattern("capabilities"), self._on_capabilities, lambda tp, p: self._parse_node_message(tp, p, Capabilities), max_bytes=node_limit)
        self.bus.subscribe(t.pattern("status"), self._on_status, lambda tp, p: self._parse_node_message(tp, p, NodeStatus), max_bytes=node_limit)
        self.bus.subscribe(t.pattern("heartbeat"), self._on_heartbeat, lambda tp, p: self._parse_node_message(tp, p, Heartbeat), qos=0, max_bytes=4 * node_limit)
        self.bus.subscribe(t.pattern("declined"), self._on_declined, lambda tp, p: self._parse_node_message(tp, p, Result), max_bytes=node_limit)
        self.bus.subscribe(t.pattern("frames"), self._on_frame, self._parse_frame, qos=0, max_bytes=self.settings.max_frame_bytes)
        if self.fusion.groups:
            self.bus.subscribe(t.pattern("sensor"), self._on_readings, self._parse_readings, qos=1, max_bytes=self.settings.max_payload_bytes)
        self.bus.subscribe(t.submit, self._on_submit, lambda tp, p: decode(JobRequest, p), max_bytes=node_limit, refuse_retained=(
            "retained submissions are refused (a retained job would run again at every coordinator restart); "
            "publish without -r; the coordinator has cleared the retained copy"))
        self.bus.subscribe(t.pattern("node_result"), self._on_result, self._parse_result, max_bytes=16 * node_limit)
        self.bus.subscribe(t.pattern("node_snapshot"), self._on_snapshot, self._parse_snapshot, qos=0, max_bytes=self.settings.max_frame_bytes)
        self.bus.on_connect(self._birth)
        self.bus.after_read_burst(self._after_read_burst)
        self.bus.start(timeout_s=connect_timeout_s)
        self._ticker.start()
        log.info("coordinator started on %s under %s", self.settings.broker.redacted(), self.settings.prefix)

    def stop(self) -> None:
        self._stop.set()
        self.bus.stop([Outgoing(self.topics.coordinator_status, b"offline", qos=1, retain=True)])
        self.journal.close()
        self.fusion.close()

    def run_forever(self) -> None:
        """Start, block until SIGTERM or SIGINT (edgehive.signals: reliably), then stop."""
        stop = Stop().install()
        self.start()
        stop.wait()
        log.info("coordinator: %s, stopping", stop.signal_name)
        self.stop()
