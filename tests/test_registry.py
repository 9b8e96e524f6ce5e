"""The node registry: birth, death by will or silence, and boot ids that keep stale messages harmless."""

from __future__ import annotations

from typing import Any

from edgehive.coordinator.registry import NodeRegistry
from edgehive.schemas import Capabilities, Heartbeat, NodeStatus, parse_status


def caps(node: str, boot: str) -> Capabilities:
    """A node's birth certificate for one boot."""
    return Capabilities(node=node, boot_id=boot, ts=0.0, version="0.1.0", arch="aarch64", board="Pi", os="Linux",
                        python="3.11", cores=4, ram_mb=4096, kinds=["sleep"], workers=2, slots=4)


def beat(node: str, boot: str, seq: int = 1, **overrides: Any) -> Heartbeat:
    """One heartbeat of one boot."""
    fields: dict[str, Any] = dict(node=node, boot_id=boot, seq=seq, ts=0.0, cpu_pct=5.0, mem_pct=20.0,
                                  in_flight=0, queued=0, jobs_done=0, jobs_failed=0)
    fields.update(overrides)
    return Heartbeat(**fields)


def status(state: str, boot: str | None) -> NodeStatus:
    """`online` / `offline`, with the boot id the agent (or its will) carries."""
    return NodeStatus(state=state, boot_id=boot)  # type: ignore[arg-type]


def born(reg: NodeRegistry, node: str = "pi", boot: str = "b1", now: float = 100.0) -> None:
    """The birth sequence: capabilities then `online`, both retained."""
    reg.on_capabilities(caps(node, boot), now)
    reg.on_status(node, status("online", boot), now)


def test_birth_makes_node_alive() -> None:
    """Capabilities plus `online` is enough: a restarted coordinator needs nothing more."""
    reg = NodeRegistry()
    first = reg.on_capabilities(caps("pi", "b1"), 100.0)
    assert not first.node.alive  # capabilities alone do not mean the node is up
    change = reg.on_status("pi", status("online", "b1"), 100.0)
    assert change.revived and not change.died and not change.vacated
    node = reg.nodes["pi"]
    assert node.alive and node.boot_id == "b1" and node.caps is not None and node.caps.boot_id == "b1"
    assert node.free_slots == 4
    assert reg.alive() == [node]


def test_bare_online_from_a_person_works() -> None:
    """`mosquitto_pub -m online` (no boot id) marks the node alive too."""
    reg = NodeRegistry()
    reg.on_capabilities(caps("pi", "b1"), 1.0)
    reg.on_status("pi", parse_status(b"online"), 1.0)
    assert reg.nodes["pi"].alive


def test_offline_same_boot_kills_and_voids_its_holdings() -> None:
    """The will (or a clean `offline`) of the running boot kills it; what it held must be re-queued
    (the lease book does that when a change says `vacated`)."""
    reg = NodeRegistry()
    born(reg)
    change = reg.on_status("pi", status("offline", "b1"), 101.0)
    assert change.died and change.vacated
    assert not reg.nodes["pi"].alive
    assert reg.alive() == []
    again = reg.on_status("pi", status("offline", "b1"), 102.0)
    assert not again.died and not again.vacated  # a repeated offline reports nothing new


def test_stale_will_after_restart_is_ignored() -> None:
    """The broker may fire boot b1's will after b2 is already up; b2 must stay alive with its jobs."""
    reg = NodeRegistry()
    born(reg, boot="b1")
    born(reg, boot="b2", now=105.0)
    reg.nodes["pi"].jobs = {"j9"}
    change = reg.on_status("pi", status("offline", "b1"), 106.0)
    assert not change.died and not change.vacated
    node = reg.nodes["pi"]
    assert node.alive and node.boot_id == "b2" and node.jobs == {"j9"}


def test_offline_from_unknown_boot_is_ignored() -> None:
    """An `offline` naming a boot this coordinator never saw cannot be about the live node."""
    reg = NodeRegistry()
    born(reg, boot="b2")
    assert not reg.on_status("pi", status("offline", "b0"), 101.0).died
    assert reg.nodes["pi"].alive


def test_new_boot_heartbeat_voids_old_holdings() -> None:
    """A heartbeat from a new boot means the agent restarted: jobs held by the old boot are gone."""
    reg = NodeRegistry()
    born(reg, boot="b1")
    reg.on_heartbeat(beat("pi", "b1"), 101.0)
    change = reg.on_heartbeat(beat("pi", "b2"), 102.0)
    assert change.vacated and not change.died
    node = reg.nodes["pi"]
    assert node.alive and node.boot_id == "b2"
    assert node.heartbeat is not None and node.heartbeat.boot_id == "b2"


def test_old_boot_messages_after_restart_are_ignored() -> None:
    """Late messages of a retired boot change nothing: not the heartbeat, the caps, or liveness."""
    reg = NodeRegistry()
    born(reg, boot="b1")
    reg.on_heartbeat(beat("pi", "b2", seq=1), 102.0)
    reg.nodes["pi"].jobs = {"new-job"}
    for change in (
        reg.on_heartbeat(beat("pi", "b1", seq=99, cpu_pct=99.0), 103.0),
        reg.on_capabilities(caps("pi", "b1"), 103.0),
        reg.on_status("pi", status("online", "b1"), 103.0),
        reg.on_status("pi", status("offline", "b1"), 103.0),
    ):
        assert not change.died and not change.vacated
    node = reg.nodes["pi"]
    assert node.alive and node.boot_id == "b2" and node.jobs == {"new-job"}
    assert node.heartbeat is not None and node.heartbeat.boot_id == "b2" and node.heartbeat.cpu_pct == 5.0
    assert node.last_seen == 102.0


def test_new_boot_capabilities_replace_old_ones() -> None:
    """A restarted agent's new capabilities take over, and its earlier holdings are void."""
    reg = NodeRegistry()
    born(reg, boot="b1")
    change = reg.on_capabilities(caps("pi", "b2"), 110.0)
    assert change.vacated
    assert reg.nodes["pi"].caps is not None and reg.nodes["pi"].caps.boot_id == "b2"


def test_heartbeat_revives_dead_node() -> None:
    """A node declared dead by silence comes back with its next heartbeat."""
    reg = NodeRegistry()
    born(reg)
    reg.expire(200.0, 3.0)
    assert not reg.nodes["pi"].alive
    change = reg.on_heartbeat(beat("pi", "b1"), 201.0)
    assert change.revived and reg.nodes["pi"].alive and reg.nodes["pi"].last_seen == 201.0


def test_expire_kills_silent_nodes_only() -> None:
    """Heartbeats stopped for longer than dead_after means dead, with jobs to re-queue; others live on."""
    reg = NodeRegistry()
    born(reg, "quiet", now=100.0)
    born(reg, "chatty", now=100.0)
    reg.nodes["chatty"].jobs = {"c1"}
    reg.on_heartbeat(beat("chatty", "b1"), 109.0)
    assert reg.expire(103.0, 3.0) == []  # exactly at dead_after: not yet
    changes = reg.expire(110.0, 3.0)
    assert [(c.node.id, c.died, c.vacated) for c in changes] == [("quiet", True, True)]
    assert not reg.nodes["quiet"].alive and reg.nodes["chatty"].alive
    assert reg.nodes["chatty"].jobs == {"c1"}
    assert reg.expire(500.0, 1000.0) == []  # a dead node is not reported dead again


def test_dead_node_has_no_free_slots() -> None:
    """The scheduler must never see room on a dead or draining node."""
    reg = NodeRegistry()
    born(reg)
    reg.on_heartbeat(beat("pi", "b1", draining=True), 101.0)
    assert reg.nodes["pi"].free_slots == 0
    reg.on_heartbeat(beat("pi", "b1", seq=2), 102.0)
    assert reg.nodes["pi"].free_slots == 4
    reg.on_status("pi", status("offline", "b1"), 103.0)
    assert reg.nodes["pi"].free_slots == 0


def test_node_back_from_silence_gets_one_probe_until_it_confirms() -> None:
    """Heartbeats return before our messages reach it (a healed partition): one probe, no more."""
    reg = NodeRegistry()
    born(reg)
    node = reg.nodes["pi"]
    reg.expire(200.0, 3.0)
    reg.on_heartbeat(beat("pi", "b1"), 201.0)
    assert node.alive and node.suspect and node.free_slots == 1  # the probe
    node.jobs.add("probe-1")  # what the lease book records when it places the probe
    node.sent("probe-1", lease=1e9)
    assert node.free_slots == 0  # no second job until a lease has passed
    assert not node.confirm({"other"})
    assert node.confirm({"probe-1"}) and not node.suspect
    assert node.free_slots == 3


def test_lapsed_lease_makes_node_suspect_and_the_lapsed_job_confirms_it() -> None:
    """A job moved away after its lease lapsed still proves the node hears us when it shows up."""
    reg = NodeRegistry()
    born(reg)
    node = reg.nodes["pi"]
    node.sent("j1", lease=1.0)
    node.jobs.discard("j1")  # re-queued elsewhere
    node.mark_suspect("j1", retry_after=1e12)
    assert node.free_slots == 0
    assert node.confirm({"j1"}) and node.free_slots == 4


def test_new_boot_clears_suspicion() -> None:
    """A restarted agent made a fresh connection: nothing to probe."""
    reg = NodeRegistry()
    born(reg)
    reg.nodes["pi"].mark_suspect("j1", retry_after=1e12)
    reg.on_heartbeat(beat("pi", "b2"), 101.0)
    assert not reg.nodes["pi"].suspect and reg.nodes["pi"].free_slots == 4


def test_retired_boots_are_bounded_and_the_newest_kept() -> None:
    """An agent in a restart loop must not grow the registry for ever; recent boots stay retired."""
    from edgehive.coordinator.registry import MAX_RETIRED_BOOTS

    reg = NodeRegistry()
    for i in range(MAX_RETIRED_BOOTS + 50):
        reg.on_heartbeat(beat("pi", f"b{i}"), 100.0 + i)
    retired = reg.nodes["pi"].retired_boots
    assert len(retired) == MAX_RETIRED_BOOTS
    assert f"b{MAX_RETIRED_BOOTS + 48}" in retired and "b0" not in retired


def test_a_node_dead_for_forget_after_leaves_the_registry_and_a_live_one_never_does() -> None:
    reg = NodeRegistry()
    born(reg, "gone", now=100.0)
    born(reg, "live", now=100.0)
    reg.on_status("gone", status("offline", "b1"), 150.0)  # its will
    reg.on_heartbeat(beat("live", "b1"), 1000.0)
    assert reg.forget(160.0, 60.0) == []  # heard from until 100: dead, but not yet for 60 s
    assert [n.id for n in reg.forget(161.0, 60.0)] == ["gone"] and set(reg.nodes) == {"live"}
    reg.on_capabilities(caps("ghost", "b9"), 2000.0)  # known only from its retained birth certificate (a restart)
    assert reg.forget(2050.0, 60.0) == [] and [n.id for n in reg.forget(2061.0, 60.0)] == ["ghost"]
    assert "live" in reg.nodes  # silent since 1000, but nobody declared it dead: expire() decides that first
