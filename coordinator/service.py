"""The coordinator process: the broker connection, the disk, and the one thread that owns the core.

Threads, and what each may touch:

- The MQTT client's network thread owns the core (coordinator/core.py) and is the only thread
  that changes the coordinator's state, so there is no lock. Each message is parsed and
  checked at the door (coordinator/ingest.py) and queued as an event; after each read burst
  the queued events go to the core as one step, and what it returns is published at once, from
  this thread, in the write that follows the read. The same thread runs the periodic work (a
  tick every half heartbeat, at most 0.5 s) between reads.
- The writer thread (coordinator/writer.py) does all disk I/O: journal records and fusion log
  lines from each step, then the acknowledgements of the messages that step handled. The bus
  holds those back (`defer_acks`) until then, so a submission the broker saw acknowledged is
  in the journal, and a slow disk never stalls the network thread.

Roles (coordinator/leader.py): any number of coordinators may run, one is active. A standby
runs no core: it keeps what a takeover needs (coordinator/standby.py) and writes the active
one's streamed journal to its own disk. At takeover it builds the core from its own files, as a
restarted coordinator does, with the events the standby kept. The active one steps its core
only while the election lets it place work; while fenced (its own claim not echoed within
the margin) it keeps the events it receives and steps them once the echo is back, or drops
them if a higher claim deposed it, and stands by again.

A message handed from one thread to another costs a wake-up, which on a busy 2-core machine is
0.1–0.4 ms per hop (BENCHMARKS.md): the path of a job (submission, placement, result, relay)
therefore stays on one thread, and only the disk, whose acknowledgements nobody waits on, is
handed off.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import orjson

from edgehive import gctune
from edgehive.bus import MqttBus, Outgoing, PendingAcks
from edgehive.haretained import RetainedConfigs
from edgehive.schemas import CoordinatorMember, JobState, JobStateName, LeaderClaim, Result, Topics, decode, encode, parse_claim
from edgehive.schemas.kinds import FUSION_KIND
from edgehive.signals import Stop

from .core import CoordinatorCore
from .events import (
    CameraOfferIn,
    CapabilitiesIn,
    ConnectionLost,
    ConnectionRestored,
    EndedElsewhere,
    Event,
    HeartbeatIn,
    HomeAssistantConfigs,
    JournalEnded,
    JournalRecord,
    JournalReplace,
    NodeCleared,
    Now,
    ResultIn,
    ResultsIn,
    StatusIn,
    Submitted,
    Tick,
)
from .fusion import FusionWindows
from .fusion_log import FusionWrite
from .ha_sweep import config_patterns, ours
from .ingest import Ingest
from .journal import JobJournal
from .leader import Election, Role, Timing
from .settings import CoordinatorSettings
from .standby import Standby, StreamIn, encode_stream, parse_stream, submission_key, submission_key_of
from .writer import StateWriter, WriteBatch

log = logging.getLogger(__name__)

_TICK = Tick()
# The coordinator is behind its input when more than this is left unread (our buffer and the
# socket's): four reads' worth, ~40 ms of heartbeats from 5,000 nodes, never a healthy loop's
# leftover; or when its last step took longer than SLOW_STEP of a heartbeat period.
BEHIND_BYTES = 256 * 1024
SLOW_STEP = 0.25
BIG_BURST = 64  # events in one step; a 64 KiB read holds ~250 heartbeats
# After a read that brought a few heartbeats and nothing else, the next read waits this long, so
# a big fleet's heartbeats (spread evenly over the second) are taken in tens per wake-up instead
# of one: each wake-up (select, recv, paho's loop, a core step) cost more than the heartbeat it
# read. A job or result arriving in that pause waits for it, once: the pause follows only steps
# that had no job-path message and sent nothing, so a busy coordinator never pauses.
COALESCE_S = 0.002
FENCED_KEPT = 200_000  # events kept while fenced; beyond, the oldest go (a takeover elsewhere covers them)
FINAL_STATES = (JobStateName.DONE, JobStateName.FAILED)
READINGS_KEPT = 200_000  # readings messages a standby keeps at most (and for standby_readings_s)


def _parse_member(topic: str, payload: bytes) -> CoordinatorMember | None:
    return decode(CoordinatorMember, payload) if payload else None


class Coordinator:
    def __init__(self, settings: CoordinatorSettings) -> None:
        self.settings = settings
        self.topics = Topics(settings.prefix)
        self.id = settings.coordinator_name
        self.run = secrets.token_hex(4)
        journal_path = Path(settings.state_dir) / f"jobs-{settings.prefix.replace('/', '_')}.jsonl" if settings.state_dir else None
        self._fusion_path = journal_path.with_name(journal_path.name.replace("jobs-", "fusion-").replace(".jsonl", ".json")) if journal_path else None
        self._epoch_path = journal_path.with_name(journal_path.name.replace("jobs-", "leader-").replace(".jsonl", ".json")) if journal_path else None
        self.fusion = self._new_fusion()
        self.core: CoordinatorCore | None = None  # None while standing by
        cameras = settings.camera_policy
        self.ingest = Ingest(self.topics, cameras, settings.sensor_max_future_s, settings.sensor_max_age_s)
        lease = settings.leader_lease
        self.election = Election(self.id, self.run, Timing(lease_s=lease, renew_s=lease / 4, settle_s=lease / 4, margin_s=lease / 4))
        self.election.highest = self._stored_epoch()
        self.standby = Standby(settings.standby_readings_s, READINGS_KEPT)
        self.bus = MqttBus(
            settings.broker, self.topics, f"edgehive-coordinator-{settings.prefix.replace('/', '-')}-{self.id}"[:128],
            source="coordinator",
            will=Outgoing(self.topics.coordinator_status, b"offline", qos=1, retain=True),
            clean_session=False,  # on Mosquitto, submissions (and, to a standby, the journal stream) made while we restart are queued for us
            max_payload_bytes=settings.max_payload_bytes,
            defer_acks=True,
        )
        self.writer = StateWriter(JobJournal(journal_path, on_error=self._report_journal_problem), self.fusion.log, self.bus)
        self._events: list[Event] = []  # queued by the door, taken by the next step (network thread only)
        self._streamed: list[StreamIn] = []  # the active one's journal stream, while we stand by
        self._finals: list[str] = []  # jobs whose final state the active one published, seen while we stand by
        self._fenced: list[Event] = []  # kept while the active core may not place work
        self._slow_step = False
        self._standbys: dict[str, str] = {}  # standby id → run, while one is there: the journal is streamed
        self._sync_wanted = False
        self._announced: tuple[str, int, bool] | None = None
        self._announced_at = 0.0
        self._stopping = False  # set by stop(): nothing more is decided or announced
        # Only the active coordinator reads and clears stale Home Assistant configs (coordinator/ha_sweep.py).
        ha_prefix = settings.ha_discovery_prefix
        self._ha_configs = RetainedConfigs(self.bus, config_patterns(ha_prefix), lambda topic: ours(ha_prefix, self.topics, topic),
                                           f"{self.topics.coordinator_member(self.id)}/ha-probe",
                                           lambda found: self._events.append(HomeAssistantConfigs(found)))
        self._core_tick_s = min(0.5, settings.heartbeat_s / 2)  # the core's periodic work (coordinator/core.py _on_tick)
        self._core_ticked = 0.0
        self._watching = False  # subscribed to jobs/+/state (and fusion results): see _watch

    def _stored_epoch(self) -> int:
        """The highest epoch this coordinator held before: a broker that lost the retained claim
        must not make us claim an epoch the agents would take for a deposed leader's."""
        try:
            return int(orjson.loads(self._epoch_path.read_bytes())["epoch"]) if self._epoch_path and self._epoch_path.exists() else 0
        except (OSError, orjson.JSONDecodeError, KeyError, TypeError, ValueError) as error:
            log.warning("leader epoch file %s unreadable (%s); starting from the broker's claim", self._epoch_path, error)
            return 0

    def _store_epoch(self, epoch: int) -> None:
        if self._epoch_path is None:
            return
        try:
            self._epoch_path.parent.mkdir(parents=True, exist_ok=True)
            self._epoch_path.write_bytes(orjson.dumps({"epoch": epoch}))
        except OSError as error:
            log.warning("leader epoch could not be written to %s: %s", self._epoch_path, error)

    def _new_fusion(self) -> FusionWindows:
        s = self.settings
        return FusionWindows(s.fusion_group_map, s.fusion_queue_max, s.fusion_window_max_readings, s.fusion_grace_s, self._fusion_path)

    # -- the network thread ------------------------------------------------------------------

    def _enqueue(self, topic: str, event: Event) -> None:
        self._events.append(event)

    def _enqueue_results(self, topic: str, value: ResultIn | ResultsIn) -> None:
        """One result, or an array of them: its good items are queued one by one, its bad ones refused on `errors`."""
        if isinstance(value, ResultIn):
            self._events.append(value)
            return
        self._events += value.results
        for reason, item in value.refused:
            self.bus.report_error(topic, reason, item)

    def _enqueue_fleet(self, topic: str, event: CapabilitiesIn | StatusIn | NodeCleared | CameraOfferIn) -> None:
        """Capabilities, statuses and direct cameras' offers are also remembered whatever our role (Standby.remember)."""
        self.standby.remember(event)
        self._events.append(event)

    def _after_burst(self) -> None:
        """After each read burst: one step for everything it brought. A burst of heartbeats alone,
        that asked nothing to be sent, is followed by a short pause before the next read, so that
        a big fleet's heartbeats are read many at a time rather than one wake-up each (see
        COALESCE_S)."""
        if self._step(self.bus.take_acks()):
            time.sleep(COALESCE_S)

    def _tick(self) -> None:
        if self._stopping:
            return
        now = time.monotonic()
        decision = self.election.tick(now, time.time(), caught_up=not self._slow_step and self.bus.unread_bytes() == 0)
        if decision.publish is not None:
            self.bus.publish(self.topics.coordinator_leader, encode(decision.publish), qos=1, retain=True)
        if decision.deposed:
            self._stand_down()
        if decision.became_active:
            self._take_over()
        self._announce(force=now - self._announced_at >= self.settings.stats_interval_s)
        self._ha_configs.again()
        if self.core is not None and now - self._core_ticked >= self._core_tick_s * 0.9:
            self._core_ticked = now
            self._events.append(_TICK)
        self._step(None)

    def _connected(self) -> None:
        self.election.connected(time.monotonic())
        self.standby.reconnected()
        self._announced = None
        self._announce()
        self._events.append(ConnectionRestored())
        self._read_ha_configs()
        problem = self.writer.journal.problem
        if problem:  # found before we were connected (at recovery), or still unhealed: say it now
            self._report_journal_problem(problem)

    def _read_ha_configs(self) -> None:
        """The active coordinator, connected, reads its retained Home Assistant configs (again)."""
        if self.core is not None and self.settings.ha_discovery_prefix and self.bus.connected.is_set() and not self._stopping:
            self._ha_configs.start()

    def _disconnected(self) -> None:
        self._ha_configs.stop()  # started again at the next connect
        self.election.disconnected(time.monotonic())
        self._events.append(ConnectionLost())

    def _step(self, acks: PendingAcks | None) -> bool:
        """One step of the core; True when it took only a few heartbeats and sent nothing."""
        events, self._events = self._events, []
        if self._stopping:
            if acks is not None:
                self.bus.ack(acks)
            return False
        if self.core is None:
            self._stand_by_step(events, acks)
            return False
        started = time.monotonic()
        if not self.election.placing(started):
            if not self._fenced:
                echo = self.election.echo_at
                log.warning("coordinator %s fenced: its claim has not come back from the broker for %s; placing nothing until it does",
                            self.id, "ever" if echo is None else f"{started - echo:.2f} s")
            self._keep_while_fenced(events)
            events = []
        elif self._fenced:
            log.warning("coordinator %s: its claim came back; placing again (%d events kept meanwhile)", self.id, len(self._fenced))
            events, self._fenced = self._fenced + events, []
            self._slow_step = True  # what waited is stale: judge no node by it
        journal: Sequence[JournalRecord] = ()
        fusion = None
        quiet = False
        settled: list[str] = []
        if events:
            # The unread count is a system call: asked only where it can matter, at a tick (where
            # silence is judged) or after a big burst; a burst of a few messages came from a read
            # that emptied the socket (at 5,000 nodes the call was a tenth of the steady CPU).
            behind = self._slow_step or ((len(events) > BIG_BURST or events[-1] is _TICK) and self.bus.unread_bytes() > BEHIND_BYTES)
            actions = self.core.step(events, Now(time.time(), started), behind)
            self._slow_step = time.monotonic() - started > SLOW_STEP * self.settings.heartbeat_s
            for topic, reason in actions.errors:
                self.bus.report_error(topic, reason)
            publish = self.bus.publish
            for topic, payload, qos, retain in actions.publish:
                publish(topic, payload, qos, retain)
            journal = actions.journal
            if self._sync_wanted:
                self._sync_wanted = False
                self.fusion.rewrite_next()
                journal = [JournalReplace(self.core.open_jobs())]
                # With the copy, the jobs that ended lately: a standby may hold their submissions
                # (a deposed coordinator reads the submissions it missed once it stands by, and it
                # no longer reads our final states, see _watch); the copy settles them.
                settled = [submission_key_of(job_id) for job_id in self.core.finished.ids()]
            fusion = self.fusion.take_state()
            quiet = not actions.publish and len(events) < BIG_BURST and all(type(event) is HeartbeatIn for event in events)
            if self._watching and not self.core.orphans:
                self._watch(False)
            if self._standbys:
                self._stream(events, journal, fusion, settled)
        self._write(journal, fusion, acks)
        return quiet

    def _write(self, journal: Sequence[JournalRecord], fusion: FusionWrite | None, acks: PendingAcks | None) -> None:
        writer = self.writer
        if writer.durable and (journal or fusion is not None or writer.acks_pending()):
            writer.put(WriteBatch(journal, fusion, acks))
        elif acks is not None:
            self.bus.ack(acks)  # nothing to wait for: acknowledged in the write that follows this read

    def _stream(self, events: Sequence[Event], journal: Sequence[JournalRecord], fusion: FusionWrite | None,
                settled: Sequence[str] = ()) -> None:
        """What this step wrote, and the submissions it handled, to the standbys (QoS 1)."""
        handled = [submission_key(e.request) for e in events if isinstance(e, Submitted)]
        handled += settled
        if journal or fusion is not None or handled:
            payload = encode_stream(self.id, self.election.epoch, journal, fusion, handled)
            self.bus.publish(self.topics.coordinator_journal, payload, qos=1)

    def _keep_while_fenced(self, events: list[Event]) -> None:
        kept = self._fenced
        kept += [e for e in events if e is not _TICK or not kept or kept[-1] is not _TICK]
        if len(kept) > FENCED_KEPT:
            del kept[: len(kept) - FENCED_KEPT]

    # -- standing by -------------------------------------------------------------------------

    def _stand_by_step(self, events: list[Event], acks: PendingAcks | None) -> None:
        now = time.monotonic()
        try:
            self._apply_as_standby(events, acks, now)
        finally:
            # A standby claims only when caught up: judged by its own steps, not by the last one it
            # took while active (a step a SIGSTOP cut in two looked seconds long, and a deposed
            # coordinator that kept that verdict never claimed again).
            self._slow_step = time.monotonic() - now > SLOW_STEP * self.settings.heartbeat_s

    def _apply_as_standby(self, events: list[Event], acks: PendingAcks | None, now: float) -> None:
        records: list[JournalRecord] = []
        fusion_lines: FusionWrite | None = None
        standby = self.standby
        streamed, self._streamed = self._streamed, []
        finals, self._finals = self._finals, []
        for stream in streamed:
            records += standby.apply(stream, now)
            if stream.fusion is not None:
                if fusion_lines is not None and not stream.fusion.rewrite:  # two in one burst: one write
                    fusion_lines = FusionWrite(fusion_lines.lines + stream.fusion.lines, fusion_lines.rewrite)
                else:
                    fusion_lines = stream.fusion
        for event in events:
            standby.offer(event, now)
        for job_id in finals:  # published, so ended, even if the stream saying so never left the active one
            standby.ended(job_id)
            records.append(JournalEnded(job_id))
        self._write(records, fusion_lines, acks)
        if any(isinstance(r, JournalReplace) for r in records):
            self._announce()

    def _watch(self, on: bool) -> None:
        """Subscribe to the job states (and fusion results) on the broker, or stop. Only a standby
        and an active coordinator that still holds orphans read them; the active one would
        otherwise get every state it publishes back, four per job: measured, that echo was most
        of the coordinator's read path under load (BENCHMARKS.md). So the active one stops
        reading them once it holds no orphans, and reads them again when it stands by."""
        if on == self._watching:
            return
        self._watching = on
        t = self.topics
        fusion_results = f"{t.prefix}/results/{FUSION_KIND}/+"
        if not on:
            self.bus.unsubscribe(t.pattern("job_state"))
            if self.fusion.groups:
                self.bus.unsubscribe(fusion_results)
            return
        self.bus.subscribe(t.pattern("job_state"), self._on_job_state, lambda tp, p: decode(JobState, p))
        if self.fusion.groups:
            self.bus.subscribe(fusion_results, self._on_fusion_result, lambda tp, p: decode(Result, p),
                               max_bytes=16 * self.settings.max_payload_bytes)

    def _on_stream(self, topic: str, stream: StreamIn) -> None:
        if self.core is None:  # the active one ignores the stream (its own, or a deposed leader's late one)
            self._streamed.append(stream)

    def _on_job_state(self, topic: str, state: JobState) -> None:
        if state.state not in FINAL_STATES:
            return
        if self.core is None:
            self._finals.append(state.job_id)
        elif state.job_id in self.core.orphans:  # we never publish a final state for an orphan: the one before us did
            self._events.append(EndedElsewhere(state.job_id))

    def _on_fusion_result(self, topic: str, result: Result) -> None:
        """A fusion window's result relayed by the coordinator before us, for a window we hold as an orphan."""
        if self.core is None or not self.core.orphans:
            return
        if result.job_id in self.core.orphans and result.ok:
            self._events.append(EndedElsewhere(result.job_id, result.output, has_output=True))

    def _on_claim(self, topic: str, claim: LeaderClaim | None) -> None:
        if self._stopping:
            return
        self.election.observe(claim, time.monotonic())
        if self.core is not None and self.election.role is not Role.ACTIVE:
            self._stand_down()

    def _on_member(self, topic: str, member: CoordinatorMember | None) -> None:
        """Another coordinator's status: a standby that has no full copy of the journal gets one."""
        if member is None or member.id == self.id:
            return
        if member.role == "standby":
            if self._standbys.get(member.id) != member.run or not member.synced:
                self._standbys[member.id] = member.run
                self._sync_wanted = self.core is not None
                if self._sync_wanted:
                    self._events.append(_TICK)  # a step soon, with the copy
        else:
            self._standbys.pop(member.id, None)

    def _on_status(self, topic: str, state: bytes) -> None:
        """`coordinator/status` went offline while we are active: a standby's will (one will per
        connection, and ours is this topic too); say `online` again."""
        if self.core is not None and state.strip() == b"offline" and self.election.role is Role.ACTIVE:
            self.bus.publish(self.topics.coordinator_status, b"online", qos=1, retain=True)

    def _take_over(self) -> None:
        """Active now: build the core from our own files, as after a restart, then hand it what
        the standby kept (the fleet, submissions never journaled, recent readings)."""
        if not self.writer.barrier():
            log.error("the writer did not finish within 10 s; taking over with the journal as it is on disk")
        if not self.standby.synced and self.election.holder is not None:
            log.warning("taking over without a full copy of the active coordinator's journal (it never sent one): "
                        "jobs it accepted before this coordinator connected are not known here")
        if self.fusion.log is not None:
            self.fusion.log.close()
        self.fusion = self._new_fusion()
        self.writer.fusion_log = self.fusion.log
        now = Now(time.time(), time.monotonic())
        core = CoordinatorCore(self.settings, self.fusion, started=now.mono, cameras=self.settings.camera_policy)
        core.epoch = self.election.epoch
        self._store_epoch(core.epoch)
        core.restore(self.writer.journal.recover(), now)
        self.core = core
        self._sync_wanted = bool(self._standbys)
        kept = self.standby.takeover()
        self._events = [*kept, ConnectionRestored(), *self._events]
        log.warning("coordinator %s is active (epoch %d)", self.id, self.election.epoch)
        self._read_ha_configs()

    def _stand_down(self) -> None:
        """Deposed: a higher claim exists. Drop everything at once; stand by for a full copy."""
        if self.core is None:
            return
        log.warning("coordinator %s deposed (a higher claim holds: epoch %d); standing by", self.id, self.election.highest)
        self.core = None
        self._ha_configs.stop()  # the active one clears what is stale, not us
        self._watch(True)
        self._fenced = []
        self._events = []
        self._slow_step = False
        self.standby.synced = False
        self._announce()

    def _announce(self, force: bool = False) -> None:
        """Our own retained status on coordinator/members/{id}, when it changed and again every
        stats_interval_s: a standby's sign of life, and for the sink (the Fleet dashboard's
        Coordinators table) a point in every time range."""
        if not self.bus.connected.is_set() or self._stopping:
            return
        active = self.core is not None
        role: Literal["active", "standby"] = "active" if active else "standby"
        epoch = self.election.epoch if active else self.election.highest
        state = (role, epoch, self.standby.synced)
        if state == self._announced and not force:
            return
        self._announced = state
        self._announced_at = time.monotonic()
        member = CoordinatorMember(id=self.id, run=self.run, role=role, epoch=epoch, ts=time.time(), synced=self.standby.synced)
        self.bus.publish(self.topics.coordinator_member(self.id), encode(member), qos=1, retain=True)

    def _report_journal_problem(self, problem: str) -> None:
        self.bus.report_error(self.topics.submit, problem, logged=True)  # the journal logged it (ERROR); nothing was rejected

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, connect_timeout_s: float | None = None) -> None:
        open_jobs = self.writer.journal.recover()  # opens it for what a standby writes; read again at takeover
        if open_jobs:
            log.info("journal holds %d open jobs; they are taken up if this coordinator becomes active", len(open_jobs))
        t, door, limit = self.topics, self.ingest, self.settings.max_payload_bytes
        self.bus.subscribe(t.coordinator_leader, self._on_claim, parse_claim)
        self.bus.subscribe(t.coordinator_journal, self._on_stream, parse_stream, max_bytes=64 * limit)
        self.bus.subscribe(t.pattern("coordinator_member"), self._on_member, _parse_member)
        self.bus.subscribe(t.coordinator_status, self._on_status)
        self._watch(True)
        self.bus.subscribe(t.pattern("capabilities"), self._enqueue_fleet, door.capabilities, max_bytes=limit)
        self.bus.subscribe(t.pattern("status"), self._enqueue_fleet, door.status, max_bytes=limit)
        self.bus.subscribe(t.pattern("heartbeat"), self._enqueue, door.heartbeat, qos=0, max_bytes=4 * limit)
        self.bus.subscribe(t.pattern("declined"), self._enqueue, door.declined, max_bytes=limit)
        self.bus.subscribe(t.pattern("frames"), self._enqueue, door.frame, qos=0, max_bytes=self.settings.max_frame_bytes)
        self.bus.subscribe(t.pattern("camera_direct"), self._enqueue_fleet, door.camera_offer, qos=1, max_bytes=limit)
        self.bus.subscribe(t.pattern("camera_counts"), self._enqueue, door.camera_counts, qos=1, max_bytes=limit)
        if self.fusion.groups:
            self.bus.subscribe(t.pattern("sensor"), self._enqueue, door.readings, qos=1, max_bytes=limit)
        self.bus.subscribe(t.submit, self._enqueue, door.submission, max_bytes=limit, refuse_retained=(
            "retained submissions are refused (a retained job would run again at every coordinator restart); "
            "publish without -r; the coordinator has cleared the retained copy"))
        self.bus.subscribe(t.pattern("node_result"), self._enqueue_results, door.result, max_bytes=16 * limit)
        self.bus.subscribe(t.pattern("node_snapshot"), self._enqueue, door.snapshot, qos=0, max_bytes=self.settings.max_frame_bytes)
        if self.settings.ha_discovery_prefix:  # Home Assistant's birth: every discovery config again
            self.bus.subscribe(f"{self.settings.ha_discovery_prefix}/status", self._enqueue, door.ha_status, max_bytes=limit)
        self.bus.on_connect(self._connected)
        self.bus.on_disconnect(self._disconnected)
        self.bus.after_read_burst(self._after_burst)
        # The election is looked at twice as often as the core's periodic work (which, over a large
        # fleet, costs a pass over the nodes): a lapsed claim or a settled one is acted on within
        # an eighth of a lease, so a takeover takes about 2.5 heartbeats and at most 3.
        self.bus.every(min(self._core_tick_s, self.election.timing.lease_s / 8), self._tick)
        self.writer.start()
        try:
            self.bus.start(timeout_s=connect_timeout_s)
        except BaseException:
            self.writer.stop()
            raise
        log.info("coordinator %s started on %s under %s; active once it holds coordinator/leader", self.id,
                 self.settings.broker.redacted(), self.settings.prefix)

    def stop(self) -> None:
        """Leave cleanly: the active one says `offline` and clears its claim, so a standby takes over at once."""
        self._stopping = True  # read on the network thread: a flag set once, no lock needed
        member = CoordinatorMember(id=self.id, run=self.run, role="offline", epoch=self.election.highest, ts=time.time())
        last = [Outgoing(self.topics.coordinator_member(self.id), encode(member), qos=1, retain=True)]
        if self.election.release():
            last = [Outgoing(self.topics.coordinator_status, b"offline", qos=1, retain=True), *last,
                    Outgoing(self.topics.coordinator_leader, b"", qos=1, retain=True)]
        self.bus.stop(last)
        self.writer.stop()

    def run_forever(self) -> None:
        """Start, block until SIGTERM or SIGINT (edgehive.signals: reliably), then stop."""
        stop = Stop().install()
        gctune.tune()  # a big fleet's heap made the cycle collector a noticeable share of the work (gctune.py)
        self.start()
        stop.wait()
        log.info("coordinator: %s, stopping", stop.signal_name)
        self.stop()
