"""The coordinator's core: accept, place, lease, re-queue and finish, as a state machine.

It takes events (coordinator/events.py) with the time they are handled at and returns actions:
messages to publish, journal records to write, inputs to report on `errors`. It does no I/O,
reads no clock and takes no lock: the service (coordinator/service.py) calls it from one thread
and decides about the broker and the disk, and the tests drive it directly (tests/test_core.py).

Guarantees come from our own bookkeeping, never from the broker: a lease is held by exactly one
node at a time (coordinator/leases.py), the node's heartbeats renew it, and work whose node
dies, whose lease lapses or that the node hands back is treated by its policy: a job goes back
to the queue until `max_attempts` (a lapsed lease or a hand-back uses no attempt, and the node
is avoided for it), a frame is counted lost. Jobs are journaled, so a coordinator restart loses
none: recovered jobs are orphans until a heartbeat shows who runs them.
"""

from __future__ import annotations

import heapq
import logging
import random
import uuid
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

from edgehive.schemas import CoordinatorStats, JobRequest, JobStateName, NodeStatus, Result, Timings, Topics, encode, envelope
from edgehive.schemas.direct import DIRECT_JOB_PREFIX, CameraAssignment
from edgehive.schemas.homeassistant import Message
from edgehive.schemas.kinds import DETECT_KIND
from edgehive.schemas.messages import job_json, job_state_json
from edgehive.schemas.vision import CameraConfig

from . import scheduler
from .cameras import EVERY_CAMERA, CameraPolicy, detect_params, stage_params
from .direct import DirectCameras, params_for
from .discovery import camera_messages, discovery_messages
from .events import (
    Actions,
    CameraCountsIn,
    CameraOfferIn,
    CapabilitiesIn,
    ConnectionLost,
    ConnectionRestored,
    Declined,
    EndedElsewhere,
    Event,
    FrameIn,
    HeartbeatIn,
    HomeAssistantConfigs,
    HomeAssistantStatus,
    JournalAccepted,
    JournalEnded,
    NodeCleared,
    Now,
    Publish,
    ReadingsIn,
    ReportError,
    ResultIn,
    SnapshotIn,
    StatusIn,
    Submitted,
    Tick,
)
from .framegroups import FrameGroup, FrameGroups, Stage
from .frames import Frame, FrameRouter
from .fusion import FusionWindows
from .ha_devices import NodeDevices, coordinator_messages
from .ha_sweep import classify
from .jobs import FinishedJobs, JobQueue
from .journal import OpenJob
from .leases import FRAME, PART, Lease, LeaseBook, policy_for
from .placement import ModelRequirements, Outbox, Placer, place, requirement_key
from .registry import Change, Node, NodeRegistry
from .settings import CoordinatorSettings
from .tiles import jpeg_size, plan_tiles

log = logging.getLogger(__name__)

S = JobStateName
HEARTBEAT_TIMEOUT = "heartbeat timeout"  # the reason of the offline status we publish for a silent node
# Home Assistant's `online` makes every config go out again, at most once in this many seconds (a
# later one within the window is answered when it ends): a fleet's configs are megabytes.
HA_REANNOUNCE_MIN_S = 30.0


def _new_job_id() -> str:
    return uuid.uuid4().hex[:20]


class CoordinatorCore:
    """All of the coordinator's state, changed only by `step`."""

    def __init__(self, settings: CoordinatorSettings, fusion: FusionWindows, started: float, run_id: str = "",
                 new_job_id: Callable[[], str] = _new_job_id, cameras: CameraPolicy | None = None) -> None:
        """`started`: the monotonic time the coordinator started (nodes are judged unable to run a
        job only once a full `dead_after` has passed since, when the registry is rebuilt)."""
        self.settings = settings
        self.topics = Topics(settings.prefix)
        self.registry = NodeRegistry()
        self.book = LeaseBook(self.registry)
        self.queue = JobQueue()
        self.frames = FrameRouter()
        self.groups = FrameGroups()
        self.direct = DirectCameras()
        self.finished = FinishedJobs(settings.finished_max)
        self.orphans: dict[str, Lease] = {}
        self.fusion = fusion
        self.counters: dict[str, Any] = {"submitted": 0, "done": 0, "failed": 0, "retried": 0, "rejected": 0, "duplicates": 0,
                                         "handed_up": 0}
        self.connected = False
        self._cameras = cameras or settings.camera_policy
        self._requirements = ModelRequirements()
        self._kind_verdicts: dict[tuple[str, object], str | None] = {}  # (kind, requirement) → why no known node runs it (cleared by capabilities)
        self._model_inputs: dict[str, tuple[int, int] | None] = {}  # model → its input size (cleared by capabilities)
        self._new_job_id = new_job_id
        self._run_id = run_id or uuid.uuid4().hex[:8]
        self._frame_seq = 0
        self._deadlines: list[tuple[float, str]] = []  # (deadline, lease id), a heap; finished ones drop out when due
        self._outbox = Outbox()
        self._frame_warned: dict[str, float] = {}
        self._started = started
        self._recovery_until = started
        self._last_stats = (started, 0)
        self._pump_wanted = False
        self._now = Now(0.0, started)
        self._out = Actions()
        self._behind = False  # this step's input may be stale: see step()
        self._rng = random.Random()  # samples nodes in large fleets (coordinator/scheduler.py)
        self._ha_nodes = NodeDevices(settings.ha_discovery_prefix, self.topics, settings.dead_after, settings.ha_max_node_devices)
        self._ha_announced_mono = -HA_REANNOUNCE_MIN_S  # when every config last went out on Home Assistant's `online`
        self._ha_reannounce_due = False
        self._ha_unseen: dict[str, list[str]] = {}  # camera → its retained config topics, while it may be stale (_on_ha_configs)
        self.epoch: int | None = None  # the leadership epoch stamped on every dispatch (coordinator/leader.py); None: no election
        self._final_states_only = settings.job_states == "final"  # EDGEHIVE_JOB_STATES: see _publish_state

    # -- the interface -----------------------------------------------------------------------

    def step(self, events: Iterable[Event], now: Now, behind: bool = False) -> Actions:
        """Handle `events` in order, then place what waits; return what to do about it all.

        `behind`: the service is behind its input (the last step was long, or much is left
        unread): a heartbeat read now was sent a while ago, so one that does not list a job
        sent since proves nothing, and silence does not make a node dead until we caught up.
        Liveness must never be starved by our own work: a node is dead when IT went silent."""
        self._at(now)
        self._behind = behind
        handlers = self._handlers
        for event in events:
            try:
                handlers[type(event)](self, event)
            except Exception:  # a bug must cost one message, never the coordinator
                log.exception("handling %s failed", type(event).__name__)
                topic = getattr(event, "topic", self.topics.submit)
                self._error(topic, "internal error while handling this message (see the log)")
        if self._pump_wanted:
            self._pump_wanted = False
            self._place()
        out, self._out = self._out, Actions()
        return out

    def restore(self, open_jobs: Iterable[OpenJob], now: Now) -> None:
        """Journaled open jobs (after a restart) become orphans until a heartbeat shows who runs them."""
        self._at(now)
        for request, submitted, attempt in open_jobs:
            assert request.id is not None
            lease = Lease(request.id, request, submitted=submitted, policy=policy_for(request),
                          deadline=submitted + request.deadline_s if request.deadline_s else None, attempt=max(attempt, 1))
            self.book.add(lease)
            self.orphans[lease.id] = lease
            if lease.deadline is not None:
                heapq.heappush(self._deadlines, (lease.deadline, lease.id))
            if lease.policy.carries_prior:
                self.fusion.adopt(lease.id, request.params)
        self._recovery_until = now.mono + self.settings.dead_after + self.settings.heartbeat_s
        if self.orphans:
            log.warning("recovered %d open jobs from the journal", len(self.orphans))

    def open_jobs(self) -> list[OpenJob]:
        """Every journaled job not yet ended, as the journal holds it: a standby's full copy."""
        return [(lease.request, lease.submitted, max(0, lease.attempt)) for lease in self.book.open.values()
                if lease.policy.journaled and lease.request is not None]

    def stats(self, now: Now) -> CoordinatorStats:
        last_mono, last_done = self._last_stats
        done = self.counters["done"] + self.counters["failed"]
        rate = (done - last_done) / max(1e-6, now.mono - last_mono)
        self._last_stats = (now.mono, done)
        frames = self.frames
        frames_in, done, dropped, lost = dict(frames.received), dict(frames.done), dict(frames.dropped), dict(frames.lost)
        for camera, (d_in, d_done, d_dropped, d_lost) in self._direct_totals().items():
            for table, value in ((frames_in, d_in), (done, d_done), (dropped, d_dropped), (lost, d_lost)):
                if value:
                    table[camera] = table.get(camera, 0) + value
        return CoordinatorStats(
            ts=now.wall, uptime_s=now.mono - self._started,
            nodes_online=len(self.registry.alive()), nodes_known=len(self.registry.nodes),
            queued=len(self.queue), in_flight=sum(len(n.jobs) for n in self.registry.nodes.values()),
            queued_by_kind=self.queue.count_by_kind(), jobs_per_s=round(rate, 2), **self.counters,
            frames_in=frames_in, frames_done=done, frames_dropped=dropped, frames_lost=lost, **self.fusion.stats(),
        )

    # -- actions -----------------------------------------------------------------------------

    def _at(self, now: Now) -> None:
        self._now = now
        if not self.direct.started_wall:
            self.direct.started_wall = now.wall
        self.registry.clock.now = now.mono

    def _publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None:
        self._out.publish.append(Publish(topic, payload, qos, retain))

    def _error(self, topic: str, reason: str) -> None:
        self._out.errors.append(ReportError(topic, reason))

    def _publish_state(self, lease: Lease, state: JobStateName, reason: str | None = None, ts: float | None = None) -> None:
        """The lease takes `state`; it goes out on jobs/{id}/state unless it is an intermediate one
        and EDGEHIVE_JOB_STATES is `final` (the lease still records it: a resubmission, the
        journal and the standbys work from the lease and the final states alone)."""
        lease.state = state
        if self._final_states_only and not state.terminal:
            return
        payload = job_state_json(lease.id, state, ts or self._now.wall, lease.kind, lease.attempt, lease.node, reason)
        if not lease.state_topic:
            lease.state_topic = self.topics.job_state(lease.id)
        self._out.publish.append(Publish(lease.state_topic, payload, 1, False))

    # -- submissions -------------------------------------------------------------------------

    def _on_submit(self, event: Submitted) -> None:
        request = event.request
        if request.id is not None and self._answer_resubmission(request.id, event.topic):
            return
        self._accept(request, event.topic)

    def _answer_resubmission(self, job_id: str, topic: str) -> bool:
        """A job id we already have: repeat its state (the submitter's ack got lost) and stop. With
        EDGEHIVE_JOB_STATES=final a job still under way has no state to repeat: the submitter
        hears its final state when it comes."""
        lease = self.book.get(job_id)
        if lease is not None:
            if lease.policy.announced:
                self._publish_state(lease, lease.state)
            else:
                self._error(topic, f"job {job_id} refused: the id is in use")
            return True
        final = self.finished.get(job_id)
        if final is not None:
            state, kind, node, attempt, reason = final
            self._publish(self.topics.job_state(job_id), job_state_json(job_id, state, self._now.wall, kind, attempt, node, reason), qos=1)
            return True
        return False

    def _accept(self, request: JobRequest, topic: str, bounded: bool = True) -> None:
        """Queue a new job or fail it with a reason. Fusion windows are not `bounded` by queue_max:
        they have their own bound, and at most one per group is ever queued."""
        if request.id is None:
            request = request.model_copy(update={"id": self._new_job_id()})
        job_id = request.id
        assert job_id is not None
        now = self._now.wall
        lease = Lease(job_id, request, submitted=now, policy=policy_for(request),
                      deadline=now + request.deadline_s if request.deadline_s else None)
        self.counters["submitted"] += 1
        if bounded and len(self.queue) >= self.settings.queue_max:
            self.counters["rejected"] += 1
            reason: str | None = f"queue full ({self.settings.queue_max} jobs waiting)"
            self._error(topic, f"job {job_id} refused: {reason}")
            self._publish_state(lease, S.FAILED, reason)
            self.finished.add(lease, reason)
            return
        self.book.add(lease)
        if lease.deadline is not None:
            heapq.heappush(self._deadlines, (lease.deadline, job_id))
        self._out.journal.append(JournalAccepted(request, now))
        self._publish_state(lease, S.REQUESTED)
        reason = self._unrunnable(lease.kind, request)
        if reason is not None:
            self._fail_unrunnable(lease, reason)
            return
        self.queue.push(lease)
        self._pump_wanted = True

    def _fail_unrunnable(self, lease: Lease, reason: str) -> None:
        """A job no node could ever run (an unknown kind, a tag nobody has) is a refused input as
        much as a failed job: FAILED on its state topic and reported on `errors` too. At a site
        with `hand_up`, it goes up to the hub instead (not a fusion window: those are the site's)."""
        if self.settings.hand_up and not lease.policy.carries_prior and lease.request is not None:
            self._hand_up(lease, reason)
            return
        self._error(self.topics.submit, f"job {lease.id} ({lease.kind}) refused: {reason}")
        self._finish(lease, S.FAILED, reason)

    def _hand_up(self, lease: Lease, reason: str) -> None:
        """To the hub, which places it on another site; this site's part ends here. Its later
        states and its result come back down the bridge onto this site's own topics."""
        assert lease.request is not None
        self._publish(self.topics.hub_submit, encode(lease.request), qos=1)
        self._publish_state(lease, S.REQUESTED, f"handed up to the hub: {reason}")
        self.book.close(lease)
        self.orphans.pop(lease.id, None)
        self.finished.add(lease, f"handed up to the hub: {reason}")
        self.counters["handed_up"] += 1
        self._out.journal.append(JournalEnded(lease.id))

    def _unrunnable(self, kind: str, request: JobRequest | None) -> str | None:
        """Why no known node could ever run it; judged only once the registry is rebuilt. The
        verdict depends only on the nodes' capabilities, so it is kept per kind and requirement
        until capabilities change: a queue of thousands of alike jobs costs one pass over the
        nodes, not one per job per tick."""
        if self._now.mono - self._started <= self.settings.dead_after:
            return None
        requires = request.requires if request is not None else None
        key = (kind, requirement_key(requires))
        if key not in self._kind_verdicts:
            if len(self._kind_verdicts) >= 4096:  # distinct requirements are few; bound them anyway
                self._kind_verdicts.clear()
            self._kind_verdicts[key] = scheduler.never_runnable(self.registry.nodes.values(), kind, requires)
        return self._kind_verdicts[key]

    # -- ends --------------------------------------------------------------------------------

    def _finish(self, lease: Lease, state: JobStateName, reason: str | None = None, output: object = None) -> None:
        """The one final state of a journaled, announced lease (a job or a window)."""
        self._publish_state(lease, state, reason)
        if lease.policy.carries_prior:
            assert lease.request is not None
            self.fusion.finished(lease.id, lease.request.params, output if state is S.DONE else None)
            self._pump_wanted = True
        self.book.close(lease)
        self.orphans.pop(lease.id, None)
        self.finished.add(lease, reason)
        self.counters["done" if state is S.DONE else "failed"] += 1
        self._out.journal.append(JournalEnded(lease.id))

    def _lost(self, lease: Lease, reason: str, count_attempt: bool = True, avoid: str | None = None) -> None:
        """Its node died, its lease lapsed, or the node handed it back: what its policy says."""
        if lease.policy.retried:
            self._requeue(lease, reason, count_attempt, avoid)
        elif lease.policy is PART:
            self.book.give_up(lease)
            found = self.groups.pop_part(lease.id)
            if found is not None and not found[0].ended:
                self._lose_group(found[0])
        else:
            self.book.give_up(lease)
            self.frames.count_lost(lease.source)

    def _lose_group(self, group: FrameGroup) -> None:
        """One part of the frame is lost: so is the frame, counted once; its other parts are let go."""
        self.groups.end(group)
        self.frames.count_lost(group.frame.camera)

    def _requeue(self, lease: Lease, reason: str, count_attempt: bool = True, avoid: str | None = None) -> None:
        """Back to the front of the queue; `avoid`: a node this job should go to only if no other can run it."""
        if avoid is not None:
            lease.avoid.add(avoid)
        self.book.release(lease)
        if not count_attempt:
            lease.attempt -= 1
            lease.bounces += 1
        if lease.attempt >= self.settings.max_attempts or lease.bounces > 10 * self.settings.max_attempts:
            self._finish(lease, S.FAILED, f"{reason}; gave up after {lease.attempt} attempts")
            return
        lease.node = None
        self.counters["retried"] += 1
        self._publish_state(lease, S.REQUESTED, f"re-queued: {reason}")
        self.queue.push(lease, front=True)
        self._pump_wanted = True

    # -- results -----------------------------------------------------------------------------

    def _on_result(self, event: ResultIn) -> None:
        """Accept a result only from a node its lease was placed on, then relay it, as it came,
        to `results/{kind}/{source}`: what users read there was checked, once per lease."""
        result = event.result
        if result.job_id.startswith(DIRECT_JOB_PREFIX):
            self._direct_result(event)
            return
        sender = self.registry.nodes.get(result.node)
        if sender is not None:
            sender.confirm((result.job_id,))  # it got work sent while it was suspect
        lease = self.book.find(result.job_id)
        if lease is None:
            if result.job_id in self.finished:
                self.counters["duplicates"] += 1  # a late or second run: one final state per job
                if sender is not None:
                    self.book.let_go(sender, result.job_id)
            return
        if result.retryable and lease.policy.retried:
            return  # refusals come on nodes/{node}/declined, never as a job's result
        if not self._placed_on(lease, result.node):
            where = f"placed on node {lease.node}" if lease.node else "not placed on any node"
            self._error(event.topic, f"result for job {result.job_id} from node {result.node}, but the job is {where}: refused")
            return
        self._complete(lease, result, event.payload)

    def _placed_on(self, lease: Lease, node: str) -> bool:
        """`node` was given this lease: it holds it now, or held it before a lapsed lease, a death
        or a hand-back moved it (its late result is as good as the next node's, and comes first),
        or the job was recovered after a restart and any known node may still be running it."""
        return node == lease.node or node in lease.placed_on or (lease.id in self.orphans and node in self.registry.nodes)

    def _complete(self, lease: Lease, result: Result, payload: bytes) -> None:
        """A checked result ends the lease: relayed, then counted as its policy says."""
        self.book.release(lease)
        if lease.policy is PART:
            self.book.close(lease)
            self._part_done(lease, result)
            self._pump_wanted = True
            return
        if lease.queued:
            self.queue.remove(lease)
        self.orphans.pop(lease.id, None)
        lease.node, lease.attempt = result.node, result.attempt
        if lease.policy.announced and not lease.running_announced:
            self._publish_state(lease, S.RUNNING, ts=result.timings.started)
        self._publish(self.topics.result(result.kind, result.source), payload, qos=1)
        if lease.policy.retried:
            self._finish(lease, S.DONE if result.ok else S.FAILED, result.error, result.output)
        else:
            self.book.close(lease)
            self.frames.count_done(lease.source, was_lost=lease.lost)
        self._pump_wanted = True

    def _on_ended_elsewhere(self, event: EndedElsewhere) -> None:
        """The coordinator before us finished an orphan (its last acts reached the broker after
        we took over): close it quietly instead of running it again. A fusion window needs its
        output for the next prior, so only its result closes it."""
        lease = self.orphans.get(event.job_id)
        if lease is None or (lease.policy.carries_prior and not event.has_output):
            return
        del self.orphans[lease.id]
        self.book.release(lease)
        if lease.policy.carries_prior:
            assert lease.request is not None
            self.fusion.finished(lease.id, lease.request.params, event.output)
            self._pump_wanted = True
        self.book.close(lease)
        self.finished.add(lease, "finished by the coordinator before the takeover")
        self._out.journal.append(JournalEnded(lease.id))

    def _on_declined(self, event: Declined) -> None:
        """The node could not take it (full, draining): elsewhere, without counting an attempt;
        the node gets nothing new until its next heartbeat."""
        refusal = event.refusal
        lease = self.book.get(refusal.job_id)
        if lease is None or lease.node != refusal.node:  # only the node holding it may give it back
            return
        self.registry.get(refusal.node).paused_until = self._now.mono + self.settings.heartbeat_s
        self._lost(lease, f"node {refusal.node} declined: {refusal.error}", count_attempt=False, avoid=refusal.node)
        self._pump_wanted = True

    def _on_snapshot(self, event: SnapshotIn) -> None:
        """A live node's annotated snapshot becomes the camera's retained `snapshots/{camera}`."""
        node = self.registry.nodes.get(event.node)
        if node is None or not node.alive:
            self._error(event.topic, f"snapshot of {event.camera} from node {event.node}, which is not a live node: refused")
            return
        self._publish(self.topics.snapshot(event.camera), event.jpeg, qos=0, retain=True)

    # -- node events -------------------------------------------------------------------------

    def _apply(self, change: Change, why: str) -> None:
        lost = self.book.vacate(change.node) if change.vacated else []
        for lease in lost:
            self._lost(lease, f"node {change.node.id} {why}")
        if change.died:
            log.warning("node %s (boot %s) is dead (%s); %d jobs re-queued", change.node.id, change.node.boot_id, why, len(lost))
        elif change.revived:
            log.info("node %s is online", change.node.id)

    def _on_capabilities(self, event: CapabilitiesIn) -> None:
        self._kind_verdicts.clear()
        self._model_inputs.clear()
        change = self.registry.on_capabilities(event.caps, self._now.mono)
        self._apply(change, "restarted")
        if change.node.caps is event.caps:  # not a retired boot's
            self._discovery(self._ha_nodes.seen(event.caps))
        self._assign_direct()
        self._pump_wanted = True

    def _on_status(self, event: StatusIn) -> None:
        status = event.status
        if status.state == "offline" and status.reason == HEARTBEAT_TIMEOUT:
            # Our own verdict coming back (retained, or queued while the broker was away): we acted
            # on it when we published it, and a late echo must not kill a node that has since
            # heartbeated again. A node that is really gone stays silent and is found again.
            return
        why = "went offline" + (f" ({status.reason})" if status.reason else "")
        self._apply(self.registry.on_status(event.node, status, self._now.mono), why if status.state == "offline" else "restarted")
        self._assign_direct()
        self._pump_wanted = True

    def _on_heartbeat(self, event: HeartbeatIn) -> None:
        change = self.registry.on_heartbeat(event.beat, self._now.mono)
        self._apply(change, "restarted")
        self._reconcile(change.node, event.beat.held, event.beat.running)
        self._pump_wanted = True

    def _reconcile(self, node: Node, held_ids: list[str], running_ids: list[str] | None) -> None:
        """The heartbeat lists what the node holds: confirm those, re-queue what it never got.
        A lapsed lease is no failure of the job (the way to the node stalled, e.g. after a
        partition): the job moves to another node without using up an attempt, and the node
        is suspect until it confirms a job sent to it."""
        held = set(held_ids)
        running = held if running_ids is None else set(running_ids)  # an agent that does not say: held means running
        if node.confirm(held):
            log.info("node %s confirmed a job sent while suspect; it gets work again", node.id)
        for lease_id in held - node.jobs:
            self._adopt(node, lease_id)
        lease_s, now_mono = self.settings.lease, self._now.mono
        for lease_id in list(node.jobs):
            lease = self.book.get(lease_id)
            if lease is None:
                if lease_id not in held:  # ended (failed at its deadline) but kept its slot until the node let go
                    self.book.let_go(node, lease_id)
            elif lease_id in held:
                if lease.policy.announced and not lease.running_announced and lease_id in running:
                    lease.running_announced = True
                    self._publish_state(lease, S.RUNNING)
            elif now_mono - lease.dispatched_mono > lease_s and not self._behind:
                if not node.suspect:
                    log.warning("node %s did not confirm job %s within the lease; no new work for it until it confirms one", node.id, lease_id)
                node.mark_suspect(lease_id, now_mono + lease_s)
                self._lost(lease, f"node {node.id} never confirmed it within the {lease_s:g} s lease", count_attempt=False, avoid=node.id)
        node.foreign = len(held - node.jobs)

    def _adopt(self, node: Node, lease_id: str) -> None:
        """After a restart, a journaled job that a live node is still running stays there."""
        lease = self.orphans.pop(lease_id, None)
        if lease is None:
            return
        self.book.hold(lease, node, self._now)
        lease.running_announced = True
        self._publish_state(lease, S.RUNNING, "adopted after coordinator restart")

    # -- frames and readings -----------------------------------------------------------------

    def _on_frame(self, event: FrameIn) -> None:
        camera = event.frame.camera
        new_camera = camera not in self.frames.received
        self.frames.offer(event.frame)
        self._pump_wanted = True
        if new_camera and self.settings.ha_discovery_prefix:
            self._announce_camera(camera)

    # -- direct frames (coordinator/direct.py) ------------------------------------------------

    def _on_camera_offer(self, event: CameraOfferIn) -> None:
        known = event.camera in self.frames.received or event.camera in self.direct.cameras
        self.direct.offer(event.camera, event.offer, None)
        self._assign_direct()
        if event.offer is not None and not known and self.settings.ha_discovery_prefix:
            self._announce_camera(event.camera)

    def _on_camera_counts(self, event: CameraCountsIn) -> None:
        self.direct.counts(event.camera, event.counts, self._now.mono)

    def _direct_config(self, camera: str) -> CameraConfig | None:
        """What a direct camera's frames run with, or None when they need the coordinator (a
        pipeline, or tiles for frames much larger than the model's input)."""
        entry = self.direct.cameras[camera]
        if entry.offer is None:
            return None
        config = self._cameras.resolve(camera, entry.offer.model)
        if config.stages or config.model is None:
            return None
        setting = config.tiles or "auto"
        if setting != "off":
            model_input = self._model_input(config.model)
            if model_input is None or len(plan_tiles(setting, (entry.offer.width, entry.offer.height), model_input)) > 1:
                return None
        return config

    def _assign_direct(self) -> None:
        """Each offered camera's assigned nodes, published (retained) when they change."""
        if not self.direct.cameras:
            return
        nodes = list(self.registry.nodes.values())
        for camera, entry in self.direct.cameras.items():
            entry.config = self._direct_config(camera)
            if entry.offer is None:  # withdrawn: so is the retained answer, with nodes or without (once)
                if not entry.cleared:
                    entry.assigned, entry.cleared = None, True
                    self._publish(self.topics.camera_assigned(camera), b"", qos=1, retain=True)
                continue
            wanted = self.direct.wanted(entry, nodes)
            if wanted == entry.assigned:
                continue
            if not wanted and self._now.mono - self._started <= self.settings.dead_after:
                continue  # just started: the fleet's births may still be on their way; an empty answer would only flap
            entry.assigned = wanted
            entry.ever_assigned.update(wanted)
            assert entry.config is not None or not wanted
            params = params_for(entry.config) if entry.config is not None else {}
            log.info("camera %s: direct frames to %s", camera, ", ".join(wanted) or "nobody (through the coordinator)")
            assignment = CameraAssignment(boot=entry.offer.boot, nodes=list(wanted), params=params, ts=self._now.wall)
            self._publish(self.topics.camera_assigned(camera), encode(assignment), qos=1, retain=True)

    def _direct_result(self, event: ResultIn) -> None:
        """A direct frame's result: relayed only from a node assigned to its camera; a refusal is a drop."""
        result = event.result
        camera_boot = result.job_id[len(DIRECT_JOB_PREFIX):].partition(".")[0]
        if not self.direct.is_assigned(result.source, result.node, camera_boot):
            self._error(event.topic, f"result for a direct frame of camera {result.source} from node {result.node}, "
                                     "which is not assigned to that camera: refused")
            return
        node = self.registry.nodes.get(result.node)
        pair = f"{result.node}/{node.boot_id if node is not None else ''}"
        self.direct.result(result.source, camera_boot, pair, refused=result.retryable, now=self._now.mono)
        if not result.retryable:
            self._publish(self.topics.result(result.kind, result.source), event.payload, qos=1)

    def _direct_totals(self) -> dict[str, tuple[int, int, int, int]]:
        """A direct frame is in flight while its node lives and its camera-node pair moved within a
        lease (a frame lost on the way, QoS 0, would otherwise be in flight for ever); else lost."""
        if not self.direct.cameras:
            return {}
        live = {f"{n.id}/{n.boot_id}" for n in self.registry.alive() if n.boot_id}
        return self.direct.totals(live, self._now.mono, self.settings.lease)

    def _announce_camera(self, camera: str) -> None:
        """A camera seen for the first time (since this coordinator started) appears in Home Assistant."""
        labels = self._cameras.resolve(camera).labels or ()
        for topic, config in camera_messages(self.settings.ha_discovery_prefix, self.topics, camera, labels):
            self._publish(topic, config, qos=1, retain=True)

    def _on_readings(self, event: ReadingsIn) -> None:
        problems: list[str] = []
        for reading, ts in event.stamped:
            problems += self.fusion.add(event.sensor, event.quantity, reading, ts, event.replayed)
        self._report_refused_windows()
        if self.fusion.waiting_count():
            self._pump_wanted = True
        for problem in problems[:3]:  # a batch refused by a full window says so once or twice, not a thousand times
            self._error(event.topic, f"reading from {event.sensor} not fused: {problem}")

    def _report_refused_windows(self) -> None:
        for group, number, count in self.fusion.take_refused():
            self._error(self.topics.pattern("sensor"), f"fusion window {number} of group {group} ({count} readings) refused: "
                        f"{self.settings.fusion_queue_max} windows already wait (fusion_queue_max)")

    # -- placement ---------------------------------------------------------------------------

    def _place(self) -> None:
        """Closed fusion windows become jobs like any submitted one; then place what waits, and
        send each node everything placed on it in one message."""
        for request in self.fusion.ready_jobs():
            self._accept(request, self.topics.pattern("sensor"), bounded=False)
        if self.queue or self.frames.pending or self.groups:  # listing the live nodes is a pass over the fleet
            place(Placer(self.registry.alive(), self._rng), self.frames, self.groups, self.queue, self._requirements,
                  self._send_frame, self._send_part, self._send_job)
        if self._outbox:
            self._flush_outbox()

    def _send_frame(self, frame: Frame, node: Node) -> None:
        """A frame goes in the envelope, the job in its header; from now on it is a lease."""
        assert node.boot_id is not None
        now = self._now
        self._frame_seq += 1
        lease_id = f"f{self._run_id}-{self._frame_seq}"  # unique per coordinator run, cheaper than uuid4
        size, rects = self._plan(frame)
        if len(rects) > 1 or frame.config.stages:
            self.frames.sent(frame)
            self._begin_group(frame, node, lease_id, size, rects)
            return
        params = detect_params(frame.config, frame.camera, frame.captured)
        header = job_json(lease_id, DETECT_KIND, params, frame.camera, 1, node.boot_id, frame.arrived, now.wall, epoch=self.epoch)
        self._publish(self.topics.jobs(node.id), envelope.pack(header, frame.jpeg), qos=1)
        self.frames.sent(frame)
        lease = Lease(lease_id, None, submitted=frame.arrived, policy=FRAME, kind=DETECT_KIND, source=frame.camera, attempt=1)
        self.book.add(lease)
        self.book.hold(lease, node, now)
        node.sent(lease_id, self.settings.lease)

    def _send_job(self, lease: Lease, node: Node) -> None:
        assert node.boot_id is not None and lease.request is not None
        lease.attempt += 1
        lease.running_announced = False
        self.book.hold(lease, node, self._now)
        node.sent(lease.id, self.settings.lease)
        self._outbox.add(node.id, job_json(
            lease.id, lease.kind, lease.request.params, lease.source, lease.attempt, node.boot_id, lease.submitted,
            self._now.wall, lease.deadline, self.epoch,
        ))
        self._publish_state(lease, S.SCHEDULED)

    def _plan(self, frame: Frame) -> tuple[tuple[int, int], list[tuple[int, int, int, int] | None]]:
        """The frame's size and its parts: [None] (the whole frame, one job) unless it is tiled."""
        setting = frame.config.tiles or "auto"
        if setting == "off" and not frame.config.stages:
            return (0, 0), [None]
        size = jpeg_size(frame.jpeg)
        model_input = self._model_input(frame.model)
        if size is None or model_input is None:
            return size or (0, 0), [None]
        return size, plan_tiles(setting, size, model_input)

    def _model_input(self, model: str) -> tuple[int, int] | None:
        """The model's input size as the nodes that run it report it (kept until capabilities change)."""
        if model not in self._model_inputs:
            sizes = (n.caps.model_runtimes[model].input_size for n in self.registry.nodes.values()
                     if n.caps is not None and model in n.caps.model_runtimes)
            self._model_inputs[model] = next((size for size in sizes if size is not None), None)
        return self._model_inputs[model]

    def _begin_group(self, frame: Frame, node: Node, lease_id: str, size: tuple[int, int],
                     rects: list[tuple[int, int, int, int] | None]) -> None:
        """A tiled frame, or one whose camera has a pipeline: a group of parts, the first on `node`."""
        params = detect_params(frame.config, frame.camera, frame.captured)
        first = Stage(frame.model, params, rects, [None] * len(rects))
        group = FrameGroup(lease_id, frame, size, [first], list(frame.config.stages or ()), first_node=node.id)
        self.groups.add(group)
        self._send_part(group, node)

    def _send_part(self, group: FrameGroup, node: Node) -> None:
        """One part of a frame (a tile, a crop for a later stage): the frame's JPEG with the part's rectangle."""
        assert node.boot_id is not None
        now = self._now
        frame = group.frame
        lease_id, params = group.take_part()
        stage = group.stage
        if stage.placed == 1:
            stage.sent_at = now.wall
        header = job_json(lease_id, DETECT_KIND, params, frame.camera, 1, node.boot_id, frame.arrived, now.wall, epoch=self.epoch)
        self._publish(self.topics.jobs(node.id), envelope.pack(header, frame.jpeg), qos=1)
        lease = Lease(lease_id, None, submitted=frame.arrived, policy=PART, kind=DETECT_KIND, source=frame.camera, attempt=1)
        self.book.add(lease)
        self.book.hold(lease, node, now)
        node.sent(lease_id, self.settings.lease)
        self.groups.placed(lease_id, group)
        group.last_progress = now.mono

    def _part_done(self, lease: Lease, result: Result) -> None:
        """A part's result: kept; when its stage is complete, the next stage begins or the frame's result goes out."""
        found = self.groups.pop_part(lease.id)
        if found is None or found[0].ended:
            return  # its frame was lost already: let go
        group, stage_index, part = found
        group.last_progress = self._now.mono
        group.record(stage_index, part, result.node, result.output, result.timings, None if result.ok else result.error)
        stage = group.stages[stage_index]
        if not stage.complete or stage_index != len(group.stages) - 1:
            return
        stage.ended_at = self._now.wall
        frame = group.frame
        while group.failed is None and group.stage.complete:
            if not group.next_stage(lambda config: stage_params(config, frame.camera, frame.captured)):
                break
            group.stage.sent_at = group.stage.ended_at = self._now.wall  # a stage with no crops is over at once
        if group.failed is None and not group.stage.complete:
            return  # the next stage's parts wait for placement
        self._publish_group(group)

    def _publish_group(self, group: FrameGroup) -> None:
        """The frame's one result on `results/detections/{camera}`, counted done like an untiled frame's."""
        frame = group.frame
        now = self._now.wall
        ok = group.failed is None
        result = Result(
            job_id=group.id, kind=DETECT_KIND, node=group.first_node, source=frame.camera, attempt=1, ok=ok,
            output=group.output(now) if ok else None, error=group.failed,
            timings=Timings(captured=frame.captured, queued=frame.arrived, dispatched=group.stages[0].sent_at,
                            received=group.received, started=group.started, inferred=group.inferred, finished=group.finished,
                            published=now),
        )
        self._publish(self.topics.result(DETECT_KIND, frame.camera), encode(result), qos=1)
        self.groups.end(group)
        self.frames.count_done(frame.camera, was_lost=False)

    def _expire_groups(self) -> None:
        """A frame whose next part found no node for a whole lease (its model left the fleet) is lost."""
        limit = self._now.mono - self.settings.lease
        for group in list(self.groups.waiting()):
            if group.last_progress < limit:
                camera, model = group.frame.camera, group.stage.model
                log.info("frame %s of %s: a part of stage %d (%s) found no node within the lease; the frame is lost",
                         group.id, camera, len(group.stages) - 1, model)
                self._lose_group(group)
                if self._now.mono - self._frame_warned.get(camera, -1e9) > 60:
                    self._frame_warned[camera] = self._now.mono
                    reason = scheduler.never_runnable(self.registry.nodes.values(), DETECT_KIND, self._requirements(model))
                    self._error(self.topics.frames(camera), f"frames of {camera}: stage {len(group.stages) - 1} wants model {model!r}, "
                                f"which no live node with a free slot took within the {self.settings.lease:g} s lease"
                                + (f" ({reason})" if reason else "") + "; those frames are counted lost")

    def _flush_outbox(self) -> None:
        for node_id, payload in self._outbox.drain():
            self._publish(self.topics.jobs(node_id), payload, qos=1)

    # -- periodic work -----------------------------------------------------------------------

    def _on_tick(self, event: Tick) -> None:
        now = self._now
        # While we are cut off from the broker, or behind what it delivered, we hear nobody: silence then proves nothing.
        listening = self.connected and not self._behind
        expired = self.registry.expire(now.mono, self.settings.dead_after) if listening else []
        for change in expired:
            self._apply(change, f"sent no heartbeat for {self.settings.dead_after:g} s")
            status = NodeStatus(state="offline", boot_id=change.node.boot_id, ts=now.wall, reason=HEARTBEAT_TIMEOUT)
            self._publish(self.topics.status(change.node.id), encode(status), qos=1, retain=True)
        if listening and self.settings.forget_after_s:
            self._forget_nodes()
        self._forget_cameras()
        if self._ha_reannounce_due and now.mono - self._ha_announced_mono >= HA_REANNOUNCE_MIN_S:
            self._ha_reannounce_due = False
            self._ha_announced_mono = now.mono
            self._announce_all()
        if self.orphans and now.mono > self._recovery_until:
            for lease in list(self.orphans.values()):
                del self.orphans[lease.id]
                self._requeue(lease, "not running anywhere after coordinator restart", count_attempt=False)
        self.fusion.close_due(now.wall)
        self._report_refused_windows()
        self._sweep_queue()
        self._expire_placed()
        self._expire_groups()
        self._warn_unplaceable_frames()
        self._assign_direct()
        self._pump_wanted = False
        self._place()  # before the stats, which then count what this tick placed
        if now.mono - self._last_stats[0] >= self.settings.stats_interval_s:
            self._publish(self.topics.coordinator_stats, encode(self.stats(now)), qos=0)

    def _forget_nodes(self) -> None:
        """Nodes dead for `forget_after_s` leave the fleet: their retained birth certificate and
        status are cleared (a restarted coordinator would know them again), and so are their
        Home Assistant configs, which removes their devices there. An agent that comes back
        later joins as a new node."""
        gone = self.registry.forget(self._now.mono, self.settings.forget_after_s)
        if gone:
            self._kind_verdicts.clear()
            self._model_inputs.clear()
        for node in gone:
            log.info("node %s left the fleet (dead for %g s)", node.id, self.settings.forget_after_s)
            self._publish(self.topics.capabilities(node.id), b"", qos=1, retain=True)
            self._publish(self.topics.status(node.id), b"", qos=1, retain=True)
            self._discovery(self._ha_nodes.left(node.id))

    def _sweep_queue(self) -> None:
        """Fail queued jobs whose deadline passed or that no node can run."""
        now = self._now.wall
        for lease in self.queue:
            reason = self._unrunnable(lease.kind, lease.request)
            if reason is not None:
                self.queue.remove(lease)
                self._fail_unrunnable(lease, reason)
            elif lease.deadline is not None and now > lease.deadline:
                assert lease.request is not None
                self.queue.remove(lease)
                self._finish(lease, S.FAILED, f"deadline of {lease.request.deadline_s:g} s passed while queued")

    def _expire_placed(self) -> None:
        """Fail placed jobs whose deadline passed. The node keeps the slot in our books while its
        heartbeats list the job (it may still be running it); a result that comes later is ignored."""
        now = self._now.wall
        while self._deadlines and self._deadlines[0][0] < now:
            _, lease_id = heapq.heappop(self._deadlines)
            lease = self.book.get(lease_id)
            if lease is None or lease.queued or lease.node is None:
                continue  # finished, or queued (_sweep_queue fails it), or an orphan not yet adopted
            assert lease.request is not None
            where = "running" if lease.running_announced else "waiting for a worker"
            self._finish(lease, S.FAILED, f"deadline of {lease.request.deadline_s:g} s passed while {where} on node {lease.node}")

    def _warn_unplaceable_frames(self) -> None:
        """A camera whose model no known node has: say so on `errors`, once a minute."""
        now = self._now.mono
        for frame in list(self.frames.pending.values()):
            if now - self._frame_warned.get(frame.camera, -1e9) <= 60:
                continue
            if self._now.mono - self._started <= self.settings.dead_after:
                return
            reason = scheduler.never_runnable(self.registry.nodes.values(), DETECT_KIND, self._requirements(frame.model))
            if reason is not None:
                self._frame_warned[frame.camera] = now
                self._error(self.topics.frames(frame.camera), f"frames of {frame.camera} want model {frame.model!r}: {reason}")

    # -- the connection ----------------------------------------------------------------------

    def _on_connected(self, event: ConnectionRestored) -> None:
        """(Re)connected: every live node gets a full dead_after to be heard again; birth messages."""
        self.connected = True
        for node in self.registry.alive():
            node.last_seen = max(node.last_seen, self._now.mono)
        self._publish(self.topics.coordinator_status, b"online", qos=1, retain=True)
        self._announce_all()  # after a reconnect too, in case the broker lost its retained messages

    # -- Home Assistant ----------------------------------------------------------------------

    def _discovery(self, messages: list[Message]) -> None:
        for topic, config in messages:
            self._publish(topic, config, qos=1, retain=True)

    def _announce_all(self) -> None:
        """Every discovery config: fusion groups, the coordinator, the nodes and cameras known."""
        prefix = self.settings.ha_discovery_prefix
        if not prefix:
            return
        self._discovery(discovery_messages(prefix, self.topics, {name: group.config for name, group in self.fusion.groups.items()}))
        self._discovery(coordinator_messages(prefix, self.topics, self.settings.stats_interval_s))
        self._discovery(self._ha_nodes.all())
        for camera in list(self.frames.received):
            self._announce_camera(camera)

    def _on_ha_status(self, event: HomeAssistantStatus) -> None:
        """Home Assistant (re)started (its birth, `online`): it may have lost what it discovered, so
        everything again, as Zigbee2MQTT does."""
        if not event.online:
            return
        if self._now.mono - self._ha_announced_mono < HA_REANNOUNCE_MIN_S:
            self._ha_reannounce_due = True  # at most once a window: anyone who may write that topic could repeat it
            return
        self._ha_announced_mono = self._now.mono
        self._announce_all()

    def _on_ha_configs(self, event: HomeAssistantConfigs) -> None:
        """Our retained configs as the broker held them: those of fusion groups no longer in the
        settings (and entities the coordinator and the groups no longer have) are cleared now; a
        camera's are kept while the camera settings name it or it sends frames, and cleared when
        it sent none for `forget_after_s` since this start (_forget_cameras)."""
        prefix = self.settings.ha_discovery_prefix
        if not prefix:
            return
        groups = {name: group.config for name, group in self.fusion.groups.items()}
        wanted = {topic for topic, _ in discovery_messages(prefix, self.topics, groups)}
        wanted |= {topic for topic, _ in coordinator_messages(prefix, self.topics, self.settings.stats_interval_s)}
        named = {camera for camera in (*self._cameras.cameras, *self._cameras.camera_models) if camera != EVERY_CAMERA}
        stale: list[str] = []
        kept: dict[str, set[str]] = {}  # camera → the config topics its settings make, once per camera
        for topic, payload in sorted(event.configs.items()):
            owned = classify(self.topics, payload)
            if owned is None or topic in wanted:
                continue
            if owned.what != "camera":
                stale.append(topic)
                continue
            camera = owned.name
            if camera in self.frames.received or camera in self.direct.cameras or camera in named:
                if camera not in kept:
                    labels = self._cameras.resolve(camera).labels or ()
                    kept[camera] = {t for t, _ in camera_messages(prefix, self.topics, camera, labels)}
                if topic not in kept[camera]:
                    stale.append(topic)  # a label count its settings no longer keep
            else:
                if topic not in (unseen := self._ha_unseen.setdefault(camera, [])):  # read again at a reconnect
                    unseen.append(topic)
        if stale:
            log.info("Home Assistant: clearing %d retained configs of fusion groups and entities no longer configured", len(stale))
        self._discovery([(topic, b"") for topic in stale])
        self._forget_cameras()

    def _forget_cameras(self) -> None:
        """Cameras with retained configs that the settings do not name and that sent no frame
        for `forget_after_s` since this start leave Home Assistant, as nodes do (nothing before)."""
        if not self._ha_unseen or not self.settings.forget_after_s or self._now.mono - self._started < self.settings.forget_after_s:
            return
        for camera, topics in sorted(self._ha_unseen.items()):
            if camera in self.frames.received or camera in self.direct.cameras:
                continue  # announced again by its first frame
            log.info("Home Assistant: camera %s sent no frame for %g s and is not in the camera settings; its entities are removed",
                     camera, self.settings.forget_after_s)
            self._discovery([(topic, b"") for topic in topics])
        self._ha_unseen.clear()

    def _on_cleared(self, event: NodeCleared) -> None:
        """A node's retained capabilities or status removed (our own clearing coming back): nothing to do."""

    def _on_disconnected(self, event: ConnectionLost) -> None:
        self.connected = False

    _handlers: ClassVar[dict[type, Callable[[CoordinatorCore, Any], None]]] = {
        Submitted: _on_submit,
        ResultIn: _on_result,
        Declined: _on_declined,
        HeartbeatIn: _on_heartbeat,
        CapabilitiesIn: _on_capabilities,
        StatusIn: _on_status,
        FrameIn: _on_frame,
        CameraOfferIn: _on_camera_offer,
        CameraCountsIn: _on_camera_counts,
        ReadingsIn: _on_readings,
        SnapshotIn: _on_snapshot,
        NodeCleared: _on_cleared,
        HomeAssistantStatus: _on_ha_status,
        HomeAssistantConfigs: _on_ha_configs,
        EndedElsewhere: _on_ended_elsewhere,
        Tick: _on_tick,
        ConnectionRestored: _on_connected,
        ConnectionLost: _on_disconnected,
    }
