"""The coordinator's core driven by events alone: no broker, no threads, the clock in the test's hands.

Each test feeds the parsed messages a fleet would send and checks what users would see: job
states, what each node is sent, results relayed byte for byte, error reports, the journal and
the stats."""

from __future__ import annotations

import orjson
from core_rig import Rig

from edgehive.coordinator.core import HEARTBEAT_TIMEOUT
from edgehive.coordinator.events import ConnectionLost, ConnectionRestored, EndedElsewhere, Submitted, Tick
from edgehive.coordinator.fusion import GroupConfig
from edgehive.schemas import JobRequest


def test_a_job_is_accepted_placed_run_and_done_with_its_result_relayed_once() -> None:
    rig = Rig()
    rig.node("pi-1")
    accepted = rig.submit("j1", params={"seconds": 0.1})
    assert rig.state_names("j1", accepted) == ["REQUESTED", "SCHEDULED"]
    [job] = rig.sent("pi-1", accepted)
    assert (job["id"], job["kind"], job["params"], job["attempt"], job["boot_id"]) == ("j1", "sleep", {"seconds": 0.1}, 1, "b1")
    assert rig.states("j1")[1]["node"] == "pi-1"

    rig.beat("pi-1", held=["j1"], running=["j1"])
    assert rig.state_names("j1")[-1] == "RUNNING"
    done, payload = rig.result("pi-1", "j1", output={"slept_s": 0.1})
    assert rig.state_names("j1", done) == ["DONE"]
    assert rig.relayed("sleep", "j1") == [payload]
    assert rig.journal() == [("accepted", "j1"), ("ended", "j1")]
    assert rig.holder("j1") is None and rig.core.registry.nodes["pi-1"].free_slots == 1
    assert rig.stats()["done"] == 1 and rig.stats()["in_flight"] == 0


def test_a_job_done_before_any_heartbeat_is_announced_running_from_its_result() -> None:
    rig = Rig()
    rig.node("pi-1")
    rig.submit("quick")
    rig.result("pi-1", "quick")
    assert rig.state_names("quick") == ["REQUESTED", "SCHEDULED", "RUNNING", "DONE"]


def test_jobs_placed_together_on_one_node_travel_in_one_message() -> None:
    rig = Rig()
    rig.node("pi-1", slots=4)
    actions = rig.step(*(Submitted(rig.topics.submit, JobRequest(kind="sleep", id=f"b{i}")) for i in range(3)))
    to_node = [m for m in actions.publish if m.topic == rig.topics.jobs("pi-1")]
    assert len(to_node) == 1 and [j["id"] for j in orjson.loads(to_node[0].payload)] == ["b0", "b1", "b2"]


def test_a_lapsed_lease_moves_the_job_to_another_node_without_using_an_attempt() -> None:
    rig = Rig()
    rig.node("pi-1")
    rig.node("pi-2")
    rig.submit("j1")
    first = rig.holder("j1")
    assert first is not None
    other = "pi-2" if first == "pi-1" else "pi-1"

    rig.advance(rig.settings.lease + 0.1)
    moved = rig.beat(first, held=[])  # the node never got it
    requeued = [s for s in rig.states("j1", moved) if s["state"] == "REQUESTED"]
    assert requeued and "never confirmed it within the 2 s lease" in requeued[0]["reason"]
    assert rig.sent_ids(other, moved) == ["j1"] and rig.sent(other, moved)[0]["attempt"] == 1
    assert rig.holder("j1") == other
    assert rig.core.registry.nodes[first].suspect
    rig.beat(first, held=["j1"])  # the stale dispatch got there after all: the node hears us
    assert not rig.core.registry.nodes[first].suspect


def test_a_suspect_node_gets_one_probe_per_lease_until_it_confirms_one() -> None:
    rig = Rig()
    rig.node("pi-1", slots=4)
    rig.submit("j1")
    rig.advance(rig.settings.lease + 0.1)
    rig.beat("pi-1", held=[])  # lapsed: pi-1 is suspect, j1 waits (no other node can run it)
    rig.submit("j2")
    assert rig.sent_ids("pi-1") == ["j1"] and rig.core.queue
    rig.advance(rig.settings.lease + 0.1)
    rig.beat("pi-1", held=[])
    assert rig.sent_ids("pi-1") == ["j1", "j1"]  # a lease later: one probe, the job that waits longest
    assert rig.sent("pi-1")[-1]["attempt"] == 1  # a lapse uses no attempt
    rig.beat("pi-1", held=["j1"])  # it got the probe: full service again
    assert rig.sent_ids("pi-1")[2:] == ["j2"] and not rig.core.registry.nodes["pi-1"].suspect


def test_a_dead_node_s_jobs_are_requeued_and_its_frames_counted_lost() -> None:
    rig = Rig()
    rig.node("pi-1", slots=2, kinds=("sleep", "detections"), models=("face",))
    rig.frame("door")
    rig.submit("j1")
    frame_id = next(i for i in rig.sent_ids("pi-1") if i != "j1")
    rig.node("pi-2", slots=2, kinds=("sleep",))
    died = rig.offline("pi-1", reason="lost connection")
    assert "re-queued: node pi-1 went offline (lost connection)" in [s.get("reason") for s in rig.states("j1", died)]
    assert rig.sent_ids("pi-2", died) == ["j1"] and rig.sent("pi-2", died)[0]["attempt"] == 2
    stats = rig.stats()
    assert stats["frames_lost"] == {"door": 1} and stats["frames_in"] == {"door": 1}
    assert rig.holder(frame_id) is None and rig.core.registry.nodes["pi-1"].jobs == set()


def test_silence_kills_a_node_only_while_the_coordinator_is_connected() -> None:
    rig = Rig()
    rig.node("pi-1")
    rig.node("pi-2")
    rig.submit("j1")
    holder = rig.holder("j1")
    assert holder is not None
    rig.step(ConnectionLost())
    rig.advance(10 * rig.settings.dead_after)
    cut_off = rig.tick()
    assert not [m for m in cut_off.publish if m.topic.endswith("/status")]
    assert rig.core.registry.nodes["pi-1"].alive and rig.core.registry.nodes["pi-2"].alive
    assert rig.holder("j1") == holder
    rig.step(ConnectionRestored())  # back: every live node gets a full dead_after to be heard again
    silent = "pi-2" if holder == "pi-1" else "pi-1"
    rig.advance(rig.settings.dead_after * 0.6)
    rig.beat(holder, held=["j1"])
    rig.advance(rig.settings.dead_after * 0.6)
    tick = rig.tick()
    statuses = [orjson.loads(m.payload) for m in tick.publish if m.topic == rig.topics.status(silent)]
    assert [(s["state"], s["reason"]) for s in statuses] == [("offline", HEARTBEAT_TIMEOUT)]
    assert rig.core.registry.nodes[holder].alive and not rig.core.registry.nodes[silent].alive
    # Our own verdict echoed back by the broker kills nobody, even after the node came back.
    rig.beat(silent)
    rig.offline(silent, reason=HEARTBEAT_TIMEOUT)
    assert rig.core.registry.nodes[silent].alive


def test_a_late_result_from_the_node_the_job_left_counts_and_one_from_a_stranger_is_refused() -> None:
    rig = Rig()
    rig.node("pi-1")
    rig.node("pi-2")
    rig.node("pi-3", kinds=("other",))
    rig.submit("j1")
    first = rig.holder("j1")
    assert first is not None
    second = "pi-2" if first == "pi-1" else "pi-1"
    rig.advance(rig.settings.lease + 0.1)
    rig.beat(first, held=[])
    assert rig.holder("j1") == second

    refused, _ = rig.result("pi-3", "j1")
    assert rig.errors(refused) == [f"result for job j1 from node pi-3, but the job is placed on node {second}: refused"]
    assert rig.relayed("sleep", "j1") == [] and "DONE" not in rig.state_names("j1")

    late, payload = rig.result(first, "j1")  # the node it left finished it first: as good as any
    assert rig.state_names("j1", late) == ["RUNNING", "DONE"] and rig.states("j1", late)[-1]["node"] == first
    assert rig.relayed("sleep", "j1") == [payload]
    again, _ = rig.result(second, "j1")  # the second run's result is a duplicate, not a second outcome
    assert again.publish == [] and rig.stats()["duplicates"] == 1
    assert rig.holder("j1") is None


def test_only_the_newest_frame_per_camera_waits_and_every_frame_is_accounted_for() -> None:
    rig = Rig()
    rig.node("pi-1", kinds=("detections",), models=("face",))
    for _ in range(5):
        rig.frame("door")
    first = rig.sent_ids("pi-1")
    assert len(first) == 1  # one slot: the first frame went, four more came while it ran; the newest waits
    rig.result("pi-1", first[0], kind="detections", source="door")
    second = rig.sent_ids("pi-1")[1]
    rig.advance(rig.settings.lease + 0.1)
    rig.beat("pi-1", held=[])  # never got the second: counted lost, not retried
    stats = rig.stats()
    assert stats["frames_in"] == {"door": 5} and stats["frames_done"] == {"door": 1}
    assert stats["frames_dropped"] == {"door": 3} and stats["frames_lost"] == {"door": 1}
    late, payload = rig.result("pi-1", second, kind="detections", source="door")  # it came after all
    assert rig.relayed("detections", "door", late) == [payload]
    stats = rig.stats()
    assert stats["frames_done"] == {"door": 2} and stats["frames_lost"] == {"door": 0}
    assert stats["frames_in"]["door"] == stats["frames_done"]["door"] + stats["frames_dropped"]["door"] + stats["frames_lost"]["door"]
    assert rig.states(first[0]) == [] and rig.states(second) == []  # frames have no job states
    assert rig.journal() == []  # nor journal lines


def test_a_frame_result_from_a_node_it_was_not_sent_to_is_refused() -> None:
    rig = Rig()
    rig.node("pi-1", kinds=("detections",), models=("face",))
    rig.node("pi-2", kinds=("detections",), models=("face",))
    rig.frame("door")
    sent_to = "pi-1" if rig.sent_ids("pi-1") else "pi-2"
    frame_id = rig.sent_ids(sent_to)[0]
    stranger = "pi-2" if sent_to == "pi-1" else "pi-1"
    refused, _ = rig.result(stranger, frame_id, kind="detections", source="door")
    assert rig.errors(refused) == [f"result for job {frame_id} from node {stranger}, but the job is placed on node {sent_to}: refused"]
    assert rig.relayed("detections", "door") == []


def test_a_job_that_keeps_losing_its_node_fails_after_max_attempts() -> None:
    rig = Rig(max_attempts=2)
    rig.node("pi-1")
    rig.submit("j1")
    rig.offline("pi-1", reason="crash")
    assert rig.states("j1")[-1]["reason"] == "re-queued: node pi-1 went offline (crash)"
    rig.node("pi-1", boot="b2")  # restarted
    assert rig.sent("pi-1")[-1]["attempt"] == 2
    rig.offline("pi-1", reason="crash", boot="b2")
    final = rig.states("j1")[-1]
    assert final["state"] == "FAILED" and final["reason"] == "node pi-1 went offline (crash); gave up after 2 attempts"
    assert rig.journal() == [("accepted", "j1"), ("ended", "j1")] and rig.stats()["failed"] == 1


def test_a_hand_back_moves_the_job_without_an_attempt_and_pauses_the_node() -> None:
    rig = Rig()
    rig.node("pi-1")
    rig.node("pi-2")
    rig.submit("j1")
    first = rig.holder("j1")
    assert first is not None
    other = "pi-2" if first == "pi-1" else "pi-1"
    handed = rig.decline(first, "j1")
    assert rig.sent(other, handed)[0]["attempt"] == 1
    assert rig.core.registry.nodes[first].free_slots == 0  # paused until its next heartbeat
    rig.advance(rig.settings.heartbeat_s)
    rig.tick()
    assert rig.core.registry.nodes[first].free_slots == 1


def test_a_resubmitted_id_is_answered_with_its_state_and_never_runs_twice() -> None:
    rig = Rig()
    rig.node("pi-1")
    rig.submit("j1")
    rig.submit("j2")  # waits for pi-1's only slot
    repeat = rig.submit("j2")
    assert rig.state_names("j2", repeat) == ["REQUESTED"] and rig.journal().count(("accepted", "j2")) == 1
    rig.result("pi-1", "j1")
    again = rig.submit("j1")
    assert rig.state_names("j1", again) == ["DONE"] and rig.sent_ids("pi-1", again) == []
    assert rig.sent_ids("pi-1") == ["j1", "j2"] and rig.stats()["submitted"] == 2


def test_a_job_no_node_can_run_is_failed_and_reported() -> None:
    rig = Rig()
    rig.node("pi-1")
    refused = rig.submit("odd", kind="transmogrify")
    assert rig.state_names("odd", refused) == ["REQUESTED", "FAILED"]
    assert rig.errors(refused) == ["job odd (transmogrify) refused: no node can run this job (pi-1 does not run kind 'transmogrify')"]


def test_a_full_queue_refuses_the_next_submission() -> None:
    rig = Rig(queue_max=1)
    rig.node("pi-1")
    rig.submit("j1")  # runs
    rig.submit("j2")  # waits
    refused = rig.submit("j3")
    assert rig.states("j3", refused) == [{"v": 1, "job_id": "j3", "state": "FAILED", "ts": rig.now.wall, "kind": "sleep", "attempt": 0,
                                         "reason": "queue full (1 jobs waiting)"}]
    assert rig.errors(refused) == ["job j3 refused: queue full (1 jobs waiting)"] and rig.stats()["rejected"] == 1
    assert ("accepted", "j3") not in rig.journal()


def test_recovered_jobs_are_adopted_by_the_node_that_runs_them_or_requeued() -> None:
    rig = Rig()
    rig.core.restore([(JobRequest(kind="sleep", id="kept"), rig.now.wall - 5, 1), (JobRequest(kind="sleep", id="gone"), rig.now.wall - 5, 1)], rig.now)
    rig.node("pi-1", slots=2)
    rig.beat("pi-1", held=["kept"])
    adopted = [s for s in rig.states("kept") if s["state"] == "RUNNING"]
    assert adopted and adopted[0]["reason"] == "adopted after coordinator restart" and adopted[0]["node"] == "pi-1"
    rig.advance(rig.settings.dead_after + rig.settings.heartbeat_s + 1)
    rig.beat("pi-1", held=["kept"])
    rig.tick()
    assert "re-queued: not running anywhere after coordinator restart" in [s.get("reason") for s in rig.states("gone")]
    assert rig.sent("pi-1")[-1]["id"] == "gone" and rig.sent("pi-1")[-1]["attempt"] == 1


def test_fusion_windows_are_journaled_jobs_that_carry_the_prior_and_survive_a_dead_node() -> None:
    rig = Rig(fusion_groups={"room": GroupConfig(quantity="temperature", window_count=2)})
    rig.node("pi-1", kinds=("fusion",))
    rig.node("pi-2", kinds=("fusion",))
    rig.readings("t1", "temperature", 20.0, 21.0)  # closes window 1
    rig.readings("t1", "temperature", 22.0, 23.0)  # window 2 waits: one window per group at a time
    first = rig.core.book.get("fusion-room-1")
    assert first is not None and first.node is not None and rig.core.book.get("fusion-room-2") is None
    assert ("accepted", "fusion-room-1") in rig.journal()
    [job] = [j for j in rig.sent(first.node) if j["id"] == "fusion-room-1"]
    assert job["params"]["prior"] is None and [r[1] for r in job["params"]["readings"]] == [20.0, 21.0]

    dead = first.node
    rig.offline(dead, reason="crash")  # the window runs again elsewhere, with the same prior
    other = "pi-2" if dead == "pi-1" else "pi-1"
    assert rig.holder("fusion-room-1") == other
    [again] = [j for j in rig.sent(other) if j["id"] == "fusion-room-1"]
    assert again["params"]["prior"] is None and again["params"]["readings"] == job["params"]["readings"] and again["attempt"] == 2
    rig.result(other, "fusion-room-1", kind="fusion", source="room", attempt=2, output={"state": {"x": 20.5}})
    second = rig.core.book.get("fusion-room-2")
    assert second is not None and second.node is not None
    [job] = [j for j in rig.sent(second.node) if j["id"] == "fusion-room-2"]
    assert job["params"]["prior"] == {"x": 20.5}  # the posterior of window 1
    assert rig.stats()["fusion_fused"] == {"room": 1}


def test_a_coordinator_behind_its_input_declares_no_node_dead_and_lapses_no_lease() -> None:
    """Heartbeats it has not read yet are not silence: a long step (a burst placed over a large
    fleet) must not kill the nodes whose heartbeats wait in its socket."""
    rig = Rig()
    rig.node("pi-1")
    rig.submit("j1")
    rig.advance(rig.settings.dead_after + rig.settings.lease)  # the coordinator was busy: nothing read meanwhile
    rig.core.step([Tick()], rig.now, behind=True)
    assert rig.core.registry.nodes["pi-1"].alive
    rig.core.step([rig.heartbeat("pi-1", running=[])], rig.now, behind=True)  # sent before the node got j1
    assert rig.core.registry.nodes["pi-1"].alive and rig.holder("j1") == "pi-1"
    assert all("never confirmed" not in (s.get("reason") or "") for s in rig.states("j1"))
    rig.tick()  # caught up: the heartbeat it read counts as hearing from the node
    assert rig.core.registry.nodes["pi-1"].alive
    rig.advance(rig.settings.lease + 0.1)
    rig.beat("pi-1", held=[])  # and a lease later, listening, still not listed: now it has lapsed
    assert any("never confirmed" in (s.get("reason") or "") for s in rig.states("j1"))
    rig.advance(rig.settings.dead_after + 0.1)
    rig.tick()
    assert not rig.core.registry.nodes["pi-1"].alive  # silent while we listen: dead




def test_a_site_that_hands_up_sends_a_job_it_cannot_run_to_the_hub_instead_of_failing_it() -> None:
    rig = Rig(hand_up=True)
    rig.node("pi-1")
    rig.submit("j1", requires={"tags": ["till"]})  # nobody here has the till
    handed = [m for m in rig.log.publish if m.topic == rig.topics.hub_submit]
    assert len(handed) == 1 and orjson.loads(handed[0].payload)["id"] == "j1"
    assert rig.state_names("j1") == ["REQUESTED", "REQUESTED"] and "handed up to the hub" in rig.states("j1")[-1]["reason"]
    assert rig.journal() == [("accepted", "j1"), ("ended", "j1")] and rig.stats()["handed_up"] == 1
    assert rig.errors() == [] and rig.holder("j1") is None
    rig.submit("j2")  # one it can run stays here
    assert rig.sent_ids("pi-1") == ["j2"]
    plain = Rig()
    plain.node("pi-1")
    plain.submit("j1", requires={"tags": ["till"]})  # without hand_up: FAILED with the reason, as before
    assert plain.state_names("j1")[-1] == "FAILED" and not [m for m in plain.log.publish if m.topic == plain.topics.hub_submit]


def test_every_dispatch_carries_the_epoch_of_the_coordinator_that_placed_it() -> None:
    rig = Rig()
    rig.core.epoch = 7
    rig.node("pi-1", slots=2, models=("face",), kinds=("sleep", "detections"))
    rig.submit("j1")
    rig.frame("door")
    sent = rig.sent("pi-1")
    assert len(sent) == 2 and {job["epoch"] for job in sent} == {7}  # the job and the frame


def test_an_orphan_the_coordinator_before_a_takeover_finished_is_closed_without_a_second_final_state() -> None:
    rig = Rig()
    rig.core.restore([(JobRequest(kind="sleep", id="done-before"), rig.now.wall - 5, 1), (JobRequest(kind="sleep", id="open"), rig.now.wall - 5, 1)], rig.now)
    rig.node("pi-1", slots=2)
    rig.step(EndedElsewhere("done-before"))
    rig.advance(rig.settings.dead_after + rig.settings.heartbeat_s + 1)
    rig.beat("pi-1")
    rig.tick()
    assert rig.states("done-before") == [] and ("ended", "done-before") in rig.journal()
    assert rig.sent_ids("pi-1") == ["open"]  # only the one nobody finished runs again
