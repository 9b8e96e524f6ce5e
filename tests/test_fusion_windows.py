"""The coordinator's windowing of sensor groups, without a broker: how windows close, which
readings are late, the bound on waiting windows, the prior handed from window to window, and
the state that survives a coordinator restart."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from edgehive.coordinator.fusion import FusionWindows, GroupConfig, parse_groups
from edgehive.schemas.fusion import FilterState, FusionParams, ImuRow, ImuWindow, KalmanWindow, ScalarRow
from edgehive.schemas.sensors import ImuReading, SensorReading


def windows(tmp_path: Path | None = None, queue_max: int = 100, max_readings: int = 1000, **groups: GroupConfig) -> FusionWindows:
    return FusionWindows(groups, queue_max, max_readings, 0.25, tmp_path / "fusion.json" if tmp_path else None)


def temp(value: float) -> SensorReading:
    return SensorReading(value=value, unit="°C")


def test_time_windows_align_to_the_epoch_and_close_on_a_later_reading_or_the_clock() -> None:
    fw = windows(room=GroupConfig(quantity="temperature", window_s=2.0))
    assert fw.add("t1", "temperature", temp(20.0), 100.5) == []
    fw.add("t2", "temperature", temp(20.2), 101.9)
    assert fw.ready_jobs() == []  # [100, 102) still open
    fw.add("t1", "temperature", temp(20.4), 102.1)  # belongs to [102, 104): closes the first
    (job,) = fw.ready_jobs()
    p = job.params
    assert (job.kind, job.id, job.source) == ("fusion", "fusion-room-1", "room")
    assert (p["window"], p["window_start"], p["window_end"], p["prior"]) == (1, 100.0, 102.0, None)
    assert p["readings"] == [ScalarRow("t1", 20.0, 100.5), ScalarRow("t2", 20.2, 101.9)]
    fw.close_due(104.1)  # not yet: the grace for late readings
    fw.finished(job.id, p, {"state": {"estimate": 20.1}})
    assert fw.ready_jobs() == []
    fw.close_due(104.3)
    (second,) = fw.ready_jobs()
    assert second.params["window"] == 2 and second.params["prior"] == {"estimate": 20.1}


def test_a_reading_for_a_closed_window_is_late_and_counted() -> None:
    fw = windows(room=GroupConfig(quantity="temperature", window_s=1.0))
    fw.add("t1", "temperature", temp(20.0), 10.2)
    fw.add("t1", "temperature", temp(20.0), 11.2)
    problems = fw.add("t2", "temperature", temp(20.0), 10.9)
    assert problems and "older than a window already closed" in problems[0]
    assert fw.stats()["fusion_late"] == {"room": 1}


def test_count_windows_and_sensor_membership() -> None:
    fw = windows(room=GroupConfig(quantity="temperature", sensors=["t1", "t2"], window_count=3), any=GroupConfig(quantity="humidity"))
    for i, sensor in enumerate(["t1", "t9", "t2", "t1"]):
        fw.add(sensor, "temperature", temp(20 + i), 50.0 + i)
    fw.add("h7", "humidity", SensorReading(value=40.0, unit="%"), 50.0)
    assert fw.wants("t9", "temperature") == [] and [g.name for g in fw.wants("h7", "humidity")] == ["any"]
    (job,) = fw.ready_jobs()  # humidity uses the default 1 s time window, still open
    assert [ScalarRow(*r).sensor for r in job.params["readings"]] == ["t1", "t2", "t1"]
    assert job.params["window_start"] == 50.0 and job.params["window_end"] == 53.0


def test_imu_rows_carry_both_vectors() -> None:
    fw = windows(motion=GroupConfig(quantity="imu", window_count=1))
    fw.add("imu1", "imu", ImuReading(accel=(0.0, 0.0, 9.8), gyro=(0.1, 0.0, 0.0)), 7.0)
    (job,) = fw.ready_jobs()
    assert job.params["method"] == "imu" and job.params["readings"] == [ImuRow("imu1", 0.0, 0.0, 9.8, 0.1, 0.0, 0.0, 7.0)]


def test_the_jobs_the_coordinator_builds_parse_as_the_agents_params_field_for_field() -> None:
    """One contract (schemas/fusion.py): the params the coordinator writes, sent as JSON, are the
    KalmanWindow / ImuWindow the agent parses, rows read by name, the prior carried typed."""
    fw = windows(room=GroupConfig(quantity="temperature", window_count=2, config={"gate_chi2": 4.0}),
                 arm=GroupConfig(quantity="imu", window_count=1))
    fw.add("t1", "temperature", temp(20.0), 10.0)
    fw.add("t2", "temperature", temp(20.5), 10.5)
    fw.add("imu1", "imu", ImuReading(accel=(0.0, 0.0, 9.8), gyro=(0.1, 0.2, 0.3)), 11.0)
    room, arm = sorted(fw.ready_jobs(), key=lambda job: job.source, reverse=True)
    kalman = FusionParams.model_validate_json(orjson.dumps(room.params)).root
    assert isinstance(kalman, KalmanWindow)
    assert (kalman.group, kalman.quantity, kalman.unit, kalman.window, kalman.prior) == ("room", "temperature", "°C", 1, None)
    assert [(r.sensor, r.value, r.timestamp) for r in kalman.readings] == [("t1", 20.0, 10.0), ("t2", 20.5, 10.5)]
    assert kalman.config.gate_chi2 == 4.0
    imu = FusionParams.model_validate_json(orjson.dumps(arm.params)).root
    assert isinstance(imu, ImuWindow)
    assert [(r.sensor, r.gx, r.gy, r.gz, r.timestamp) for r in imu.readings] == [("imu1", 0.1, 0.2, 0.3, 11.0)]
    state = {"estimate": 20.2, "variance": 0.3, "timestamp": 10.5, "sensors": {"t1": {"noise_var": 0.2}}}
    fw.finished(room.id, room.params, {"state": state})
    fw.add("t1", "temperature", temp(20.1), 12.0)
    fw.add("t2", "temperature", temp(20.3), 12.5)
    (second,) = fw.ready_jobs()
    prior = FusionParams.model_validate_json(orjson.dumps(second.params)).root.prior
    assert isinstance(prior, FilterState) and prior.estimate == 20.2 and prior.sensors["t1"].noise_var == 0.2


def test_waiting_windows_are_bounded_and_refusals_are_named() -> None:
    fw = windows(queue_max=2, room=GroupConfig(quantity="temperature", window_count=1))
    for i in range(5):
        fw.add("t1", "temperature", temp(20.0), 1.0 + i)
    assert fw.waiting_count() == 2
    assert fw.take_refused() == [("room", 3, 1), ("room", 4, 1), ("room", 5, 1)] and fw.take_refused() == []
    stats = fw.stats()
    assert stats["fusion_overflow"] == {"room": 3} and stats["fusion_windows"] == {"room": 5} and stats["fusion_queued"] == 2
    (job,) = fw.ready_jobs()  # one per group in flight; the other keeps waiting
    assert job.params["window"] == 1 and fw.waiting_count() == 1


def test_a_window_holds_at_most_max_readings() -> None:
    fw = windows(max_readings=2, room=GroupConfig(quantity="temperature", window_s=10.0))
    results = [fw.add("t1", "temperature", temp(20.0), 1.0 + i) for i in range(3)]
    assert results[:2] == [[], []] and "already holds 2 readings" in results[2][0]


def test_failed_window_keeps_the_prior_and_the_state_survives_a_restart(tmp_path: Path) -> None:
    group = GroupConfig(quantity="temperature", window_count=1)
    fw = windows(tmp_path, room=group)
    fw.add("t1", "temperature", temp(20.0), 1.0)
    (first,) = fw.ready_jobs()
    fw.finished(first.id, first.params, {"state": {"estimate": 20.0, "timestamp": 1.0}})
    fw.add("t1", "temperature", temp(21.0), 2.0)
    (second,) = fw.ready_jobs()
    fw.finished(second.id, second.params, None)  # FAILED: the gap is skipped, the prior carries over
    fw.flush_state()
    fw.close()
    restarted = windows(tmp_path, room=group)
    restarted.add("t1", "temperature", temp(22.0), 3.0)
    (third,) = restarted.ready_jobs()
    assert third.params["window"] == 3 and third.params["prior"] == {"estimate": 20.0, "timestamp": 1.0}
    restarted.close()
    assert fw.stats()["fusion_failed"] == {"room": 1} and fw.stats()["fusion_fused"] == {"room": 1}


def test_a_recovered_job_holds_its_group_until_it_ends() -> None:
    fw = windows(room=GroupConfig(quantity="temperature", window_count=1))
    fw.adopt("fusion-room-7", {"group": "room", "window": 7})
    fw.add("t1", "temperature", temp(20.0), 1.0)
    assert fw.ready_jobs() == []
    fw.finished("fusion-room-7", {"group": "room"}, {"state": {"estimate": 1.0}})
    (job,) = fw.ready_jobs()
    assert job.params["window"] == 8 and job.params["prior"] == {"estimate": 1.0}


@pytest.mark.parametrize("text, message", [
    ('{"room": {"quantity": "temperature", "window_s": 1, "window_count": 5}}', "not both"),
    ('{"room": {"quantity": "temp erature"}}', "pattern"),
    ('{"room": {"quantity": "temperature", "colour": 1}}', "Extra inputs"),
])
def test_bad_group_configuration_is_refused(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_groups(text)


def test_groups_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "groups.json"
    path.write_text('{"room": {"quantity": "temperature", "sensors": ["t1"]}}')
    assert parse_groups(str(path))["room"].sensors == ["t1"]


def test_sequence_gaps_count_missing_readings_per_sensor_and_a_restart_is_not_a_gap() -> None:
    fw = windows(room=GroupConfig(quantity="temperature", window_s=60.0))
    for seq in (1, 2, 5, 6, 1, 2, 4):  # 3 and 4 lost; the sensor restarts at 1; 3 lost
        fw.add("t1", "temperature", SensorReading(value=20.0, unit="°C", seq=seq), 10.0)
    fw.add("t2", "temperature", SensorReading(value=20.0, unit="°C", seq=9), 10.0)
    fw.add("t3", "temperature", temp(20.0), 10.0)  # not numbered: nothing to count
    fw.add("h1", "humidity", SensorReading(value=40.0, unit="%", seq=1), 10.0)  # no group wants it
    fw.add("h1", "humidity", SensorReading(value=40.0, unit="%", seq=9), 10.0)
    assert fw.stats()["sensor_missing"] == {"t1": 3, "t2": 0}


def test_a_group_can_pin_its_windows_and_they_outrank_plain_jobs() -> None:
    fw = windows(motion=GroupConfig.model_validate({"quantity": "imu", "window_count": 1, "requires": {"tags": ["jetson"]}}),
                 room=GroupConfig(quantity="temperature", window_count=1))
    fw.add("imu1", "imu", ImuReading(accel=(0.0, 0.0, 9.8), gyro=(0.0, 0.0, 0.0)), 1.0)
    fw.add("t1", "temperature", temp(20.0), 1.0)
    jobs = {job.source: job for job in fw.ready_jobs()}
    assert jobs["motion"].requires is not None and jobs["motion"].requires.tags == ["jetson"] and jobs["room"].requires is None
    assert jobs["motion"].priority == jobs["room"].priority == 10


def test_windows_waiting_or_in_flight_come_back_after_a_restart_and_journaled_ones_are_adopted(tmp_path: Path) -> None:
    group = GroupConfig(quantity="temperature", window_count=1)
    fw = windows(tmp_path, room=group)
    for i in range(4):
        fw.add("t1", "temperature", temp(20.0 + i), 1.0 + i)
    (first,) = fw.ready_jobs()
    fw.finished(first.id, first.params, {"state": {"estimate": 20.0}})
    (second,) = fw.ready_jobs()  # window 2 in flight (a journaled job); 3 and 4 wait
    fw.flush_state()
    fw.close()  # the coordinator is killed here

    restarted = windows(tmp_path, room=group)
    assert restarted.waiting_count() == 3  # 2, 3 and 4: none of them ended
    restarted.adopt(second.id, second.params)  # the job journal still holds window 2
    assert restarted.waiting_count() == 2 and restarted.ready_jobs() == []
    restarted.finished(second.id, second.params, {"state": {"estimate": 21.0}})
    (third,) = restarted.ready_jobs()
    assert third.params["window"] == 3 and third.params["readings"] == [ScalarRow("t1", 22.0, 3.0)] and third.params["prior"] == {"estimate": 21.0}
    restarted.flush_state()  # compacts: a snapshot and the windows still pending
    restarted.close()
    again = windows(tmp_path, room=group)
    assert again.waiting_count() == 2 and [w.number for w in again.groups["room"].waiting] == [3, 4]
    again.close()


def test_readings_a_standby_kept_rebuild_only_the_window_still_open_and_the_end_survives_the_log(tmp_path: Path) -> None:
    """At a takeover the standby files again the readings it kept: those at or before the end of
    the group's last closed window (recorded in the log) are skipped without a word; the rest
    rebuild the window the old coordinator had open, under the same number."""
    room = GroupConfig(quantity="temperature", window_count=3)
    active = windows(tmp_path, room=room)
    sent = [(20.0 + i, 100.0 + i) for i in range(5)]  # window 1: the first three; window 2 open with two
    for value, ts in sent:
        assert active.add("t1", "temperature", temp(value), ts) == []
    active.flush_state()
    active.close()

    taking_over = windows(tmp_path, room=room)
    assert taking_over.groups["room"].last_end == 102.0 and taking_over.groups["room"].windows == 1
    for value, ts in sent:  # every kept reading, as the standby replays them
        assert taking_over.add("t1", "temperature", temp(value), ts, replayed=True) == []
    assert taking_over.late["room"] == 0
    assert taking_over.add("t1", "temperature", temp(25.0), 105.0) == []  # the third reading of window 2
    waiting = taking_over.groups["room"].waiting  # window 1 from the log (closed, not fused yet), window 2 rebuilt
    assert [w.number for w in waiting] == [1, 2]
    assert [[row[1] for row in w.readings] for w in waiting] == [[20.0, 21.0, 22.0], [23.0, 24.0, 25.0]]
