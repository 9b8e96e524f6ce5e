"""The election and self-fencing state machine (coordinator/leader.py), with a clock of our own.

A small simulated broker keeps the retained claim and delivers every published claim to every
connected coordinator (itself included) after a delay; links can be cut. Coordinators tick
every `TICK` as the service does. The safety property checked throughout: at no instant do
two coordinators place work, and a coordinator cut off stops placing before any other is
even claiming.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from edgehive.coordinator.leader import Election, Role, Timing, rank
from edgehive.schemas import LeaderClaim

HB = 1.0
TIMING = Timing(lease_s=2 * HB, renew_s=HB / 2, settle_s=HB / 2, margin_s=HB / 2)
TICK = TIMING.lease_s / 8  # as the service ticks the election (coordinator/service.py); steps between ticks check placing too
DT = 0.05


@dataclass
class Node:
    election: Election
    linked: bool = True
    placing_at: list[float] = field(default_factory=list)
    claiming_at: list[float] = field(default_factory=list)
    next_tick: float = 0.0


@dataclass
class Sim:
    """Coordinators and a broker with a retained claim; every delivery takes `delay` seconds."""

    delay: float = 0.02
    now: float = 0.0
    nodes: dict[str, Node] = field(default_factory=dict)
    retained: LeaderClaim | None = None
    in_flight: list[tuple[float, str, LeaderClaim | None]] = field(default_factory=list)  # (due, to, claim)

    def add(self, name: str, run: str = "r1") -> Election:
        election = Election(name, run, TIMING)
        self.nodes[name] = Node(election, next_tick=self.now)
        self.connect(name)
        return election

    def connect(self, name: str) -> None:
        node = self.nodes[name]
        node.linked = True
        node.election.connected(self.now)
        if self.retained is not None:
            self.in_flight.append((self.now + self.delay, name, self.retained))

    def cut(self, name: str) -> None:
        """The link is gone both ways, as a partition: nothing in or out; the process runs on."""
        self.nodes[name].linked = False
        self.in_flight = [m for m in self.in_flight if m[1] != name]

    def publish(self, claim: LeaderClaim | None) -> None:
        self.retained = claim
        for name, node in self.nodes.items():
            if node.linked:
                self.in_flight.append((self.now + self.delay, name, claim))

    def run(self, seconds: float) -> None:
        end = self.now + seconds
        while self.now < end - 1e-9:
            self.now = round(self.now + DT, 6)
            due = [m for m in self.in_flight if m[0] <= self.now]
            self.in_flight = [m for m in self.in_flight if m[0] > self.now]
            for _, name, claim in due:
                if name in self.nodes:  # not killed meanwhile
                    self.nodes[name].election.observe(claim, self.now)
            for node in self.nodes.values():
                election = node.election
                if self.now >= node.next_tick:
                    node.next_tick = self.now + TICK
                    decision = election.tick(self.now, 1_800_000_000 + self.now)
                    if decision.publish is not None and node.linked:
                        self.publish(decision.publish)
                if election.placing(self.now):
                    node.placing_at.append(self.now)
                if election.role is Role.CLAIMING:
                    node.claiming_at.append(self.now)
            placing = [name for name, node in self.nodes.items() if node.election.placing(self.now)]
            assert len(placing) <= 1, f"two coordinators place work at t={self.now}: {placing}"

    def active(self) -> list[str]:
        return [name for name, node in self.nodes.items() if node.election.role is Role.ACTIVE]


def test_a_lone_coordinator_claims_epoch_1_and_places_once_its_claim_settled() -> None:
    sim = Sim()
    a = sim.add("a")
    sim.run(0.6)
    assert a.role is Role.CLAIMING and not a.placing(sim.now)  # listening for a retained claim, then claimed
    sim.run(1.0)
    assert a.role is Role.ACTIVE and a.epoch == 1 and a.placing(sim.now)
    assert sim.retained is not None and sim.retained.id == "a" and sim.retained.epoch == 1


def test_a_second_coordinator_stands_by_while_the_claim_is_renewed() -> None:
    sim = Sim()
    a = sim.add("a")
    sim.run(2.0)
    b = sim.add("b")
    sim.run(20.0)
    assert a.role is Role.ACTIVE and b.role is Role.STANDBY and b.holder is not None and b.holder.id == "a"
    assert not sim.nodes["b"].claiming_at


def test_when_the_active_one_dies_the_standby_places_within_three_heartbeats_with_a_higher_epoch() -> None:
    sim = Sim()
    sim.add("a")
    sim.run(2.0)
    b = sim.add("b")
    sim.run(3.0)
    del sim.nodes["a"]  # SIGKILL: no release, no more renewals
    died = sim.now
    sim.run(5.0)
    assert b.role is Role.ACTIVE and b.epoch == 2 and sim.retained is not None and sim.retained.id == "b"
    first = sim.nodes["b"].placing_at[0]
    assert first - died <= 3 * HB  # the figure the README promises (with this tick)


def test_partition_the_active_one_stops_placing_before_the_standby_even_claims() -> None:
    sim = Sim()
    a = sim.add("a")
    sim.run(2.0)
    sim.add("b")
    sim.run(3.0)
    sim.cut("a")  # a keeps running, and would place if it did not fence itself
    sim.run(6.0)
    stopped = sim.nodes["a"].placing_at[-1]
    claimed = sim.nodes["b"].claiming_at[0]
    assert stopped < claimed, (stopped, claimed)
    assert sim.nodes["b"].election.role is Role.ACTIVE
    assert not a.placing(sim.now)  # cut off, it still thinks it is active but places nothing

    sim.connect("a")  # the partition heals: a sees b's higher claim and is deposed
    sim.run(1.0)
    assert a.role is Role.STANDBY and sim.nodes["b"].election.role is Role.ACTIVE


def test_a_slow_echo_within_the_margin_never_lets_two_place() -> None:
    """Deliveries late by almost the margin: the standby may see a renewal earlier than the
    active sees its echo; the active still stops first (the Sim asserts it at every step)."""
    sim = Sim(delay=TIMING.margin_s * 0.8)
    sim.add("a")
    sim.run(4.0)
    sim.add("b")
    sim.run(3.0)
    sim.cut("a")
    sim.run(6.0)
    assert sim.nodes["a"].placing_at[-1] < sim.nodes["b"].claiming_at[0]


def test_the_deposed_leader_is_told_once_and_stops_at_once() -> None:
    a = Election("a", "r1", TIMING)
    a.connected(0.0)
    a.tick(1.0, 1.0)
    a.observe(a._mine(1.0), 1.0)
    assert a.tick(1.6, 1.6).became_active and a.placing(1.6)
    a.observe(LeaderClaim(id="b", run="x", epoch=2, lease_s=2.0, ts=1.7), 1.7)
    assert not a.placing(1.7) and a.role is Role.STANDBY
    assert a.tick(1.8, 1.8).deposed and not a.tick(2.0, 2.0).deposed


def test_simultaneous_claims_the_higher_id_wins_and_the_other_stands_by() -> None:
    sim = Sim()
    a = sim.add("a")
    b = sim.add("b")
    sim.run(5.0)
    assert a.epoch == b.epoch == 1
    assert b.role is Role.ACTIVE and a.role is Role.STANDBY
    assert rank(LeaderClaim(id="b", run="1", epoch=1, lease_s=1, ts=0)) > rank(LeaderClaim(id="a", run="9", epoch=1, lease_s=1, ts=0))


def test_a_released_claim_is_taken_over_at_once_without_waiting_for_the_lease() -> None:
    sim = Sim()
    a = sim.add("a")
    sim.run(2.0)
    b = sim.add("b")
    sim.run(2.0)
    assert a.release()
    sim.publish(None)  # the stopping coordinator clears the retained claim
    del sim.nodes["a"]
    released = sim.now
    sim.run(2.0)
    assert b.role is Role.ACTIVE and sim.nodes["b"].placing_at[0] - released < TIMING.lease_s


def test_a_restarted_coordinator_waits_out_its_own_previous_claim() -> None:
    """Same id, new run: the old claim might still be held by a twin; it is timed like any other."""
    sim = Sim()
    sim.add("a", run="r1")
    sim.run(2.0)
    del sim.nodes["a"]
    restarted = sim.now
    a2 = sim.add("a", run="r2")
    sim.run(1.0)
    assert a2.role is Role.STANDBY
    sim.run(3.0)
    assert a2.role is Role.ACTIVE and a2.epoch == 2 and sim.nodes["a"].placing_at[0] - restarted >= TIMING.lease_s


def test_a_standby_behind_its_input_does_not_claim() -> None:
    b = Election("b", "r1", TIMING)
    b.connected(0.0)
    b.observe(LeaderClaim(id="a", run="r", epoch=3, lease_s=2.0, ts=0), 0.1)
    assert b.tick(5.0, 5.0, caught_up=False).publish is None and b.role is Role.STANDBY
    claim = b.tick(5.1, 5.1).publish
    assert claim is not None and claim.epoch == 4 and b.role is Role.CLAIMING


def test_a_lower_claim_that_overwrote_ours_is_answered_by_a_renewal_at_once() -> None:
    a = Election("a", "r1", TIMING)
    a.connected(0.0)
    a.tick(1.0, 1.0)
    a.observe(a._mine(1.0), 1.0)
    a.tick(1.6, 1.6)
    a.observe(a._mine(1.6), 1.6)
    assert a.tick(1.7, 1.7).publish is None  # renewed 0.1 s ago
    a.observe(LeaderClaim(id="z", run="x", epoch=1, lease_s=2.0, ts=1.7), 1.75)  # the same epoch: the id breaks the tie
    assert a.role is Role.STANDBY  # z outranks a
    c = Election("c", "r1", TIMING)
    c.connected(0.0)
    c.observe(LeaderClaim(id="x", run="x", epoch=5, lease_s=2.0, ts=0), 0.0)
    c.tick(3.0, 3.0)  # x's claim lapsed: c claims epoch 6
    c.observe(c._mine(3.0), 3.0)
    c.tick(3.6, 3.6)
    c.observe(c._mine(3.6), 3.6)
    c.observe(LeaderClaim(id="x", run="x", epoch=5, lease_s=2.0, ts=3.7), 3.7)  # x wakes up and renews its stale claim
    assert c.role is Role.ACTIVE and c.tick(3.71, 3.71).publish is not None


def test_a_disconnected_leader_stops_placing_and_publishes_nothing() -> None:
    a = Election("a", "r1", TIMING)
    a.connected(0.0)
    a.tick(1.0, 1.0)
    a.observe(a._mine(1.0), 1.0)
    a.tick(1.6, 1.6)
    assert a.placing(1.6)
    a.disconnected(1.7)
    assert not a.placing(1.7) and a.tick(5.0, 5.0).publish is None


def test_timings_that_would_fence_the_holder_by_design_are_refused() -> None:
    with pytest.raises(ValueError, match="renewed more often"):
        Timing(lease_s=1.0, renew_s=0.6, settle_s=0.1, margin_s=0.5)


def test_the_acl_lets_coordinators_write_the_leadership_topics_and_agents_only_read_them() -> None:
    """broker/acl, as Mosquitto's image renders it and the embedded broker applies it."""
    from edgehive.broker.accounts import filter_allows, filters_for, parse_users
    from edgehive.schemas import Topics

    coordinator, agent = parse_users("coordinator:pw pi-1:pw:agent")
    t = Topics("edgehive/v1")
    new = [t.coordinator_leader, t.coordinator_journal, t.coordinator_member("head-b")]
    for topic in new:
        assert any(filter_allows(f, topic) for f in filters_for(coordinator, t.prefix, "write")), topic
        assert not any(filter_allows(f, topic) for f in filters_for(agent, t.prefix, "write")), topic
    assert any(filter_allows(f, t.coordinator_leader) for f in filters_for(agent, t.prefix, "read"))


def test_an_agent_ignores_work_from_an_epoch_lower_than_any_it_has_seen(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    """The claim on coordinator/leader and every dispatch raise the agent's epoch; a job without
    one (an older coordinator, mosquitto_pub) is always taken. Not connected: jobs go straight in."""
    from edgehive.agents.agent import Agent
    from edgehive.agents.settings import AgentSettings
    from edgehive.schemas import Job

    monkeypatch.setenv("EDGEHIVE_NODE_ID", "pi-1")
    monkeypatch.setenv("EDGEHIVE_MODELS_DIR", str(tmp_path))
    agent = Agent(AgentSettings(workers=4, slots=8))
    try:
        def job(job_id: str, epoch: int | None) -> Job:
            return Job(id=job_id, kind="sleep", params={"seconds": 30}, source=job_id, attempt=1, boot_id=agent.boot_id,
                       submitted=0.0, dispatched=0.0, epoch=epoch)

        agent._on_claim("leader", LeaderClaim(id="head-b", run="r", epoch=3, lease_s=2.0, ts=0.0))
        for job_id, epoch in (("from-deposed", 2), ("current", 3), ("no-epoch", None), ("newer", 5), ("late", 4)):
            agent._on_job(job(job_id, epoch))
        assert sorted(agent.runner.held_ids()) == ["current", "newer", "no-epoch"] and agent.epoch == 5
        agent._on_claim("leader", None)  # a cleared claim (a coordinator stopped) lowers nothing
        assert agent.epoch == 5
    finally:
        agent.runner.cancel_all("test over")
        agent.runner.shutdown()
