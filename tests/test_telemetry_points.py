"""Messages → line protocol: the documented schema, low-cardinality tags, times from the message."""

from __future__ import annotations

import math
import re
import time

import orjson
import pytest
from influxdb_client import Point
from pydantic import ValidationError

from edgehive.agents.fusion.job import run_fusion
from edgehive.coordinator.fusion import FusionWindows, GroupConfig
from edgehive.schemas import CoordinatorMember, CoordinatorStats, ErrorReport, Heartbeat, JobState, Result, Topics
from edgehive.schemas.fusion import FusionParams
from edgehive.schemas.messages import JobStateName
from edgehive.schemas.sensors import SensorReading, parse_reading
from edgehive.telemetry.lineprotocol import line
from edgehive.telemetry.points import (
    coordinator_lines,
    error_lines,
    heartbeat_lines,
    job_state_lines,
    member_lines,
    parsers,
    reading_lines,
    result_lines,
    stamp,
)

T0 = 1_795_000_000.123456


def parse_line(text: str) -> tuple[str, dict[str, str], str, int]:
    """(measurement, tags, raw fields, timestamp): the head ends at the first unescaped space."""
    head_end = next(i for i, c in enumerate(text) if c == " " and text[i - 1] != "\\")
    fields, _, ts = text[head_end + 1:].rpartition(" ")
    measurement, *tags = re.split(r"(?<!\\),", text[:head_end])
    return measurement, dict(t.split("=", 1) for t in tags), fields, int(ts)


def by_measurement(lines: list[str]) -> dict[str, list[tuple[dict[str, str], str, int]]]:
    out: dict[str, list[tuple[dict[str, str], str, int]]] = {}
    for text in lines:
        m, tags, fields, ts = parse_line(text)
        out.setdefault(m, []).append((tags, fields, ts))
    return out


@pytest.mark.parametrize("tags, fields", [
    ({"node": "pi-1"}, {"cpu_pct": 12.5, "in_flight": 3, "throttled": True, "name": 'say "hi"\\'}),
    ({"camera": "front door", "label": "a,b=c"}, {"score": 1.0, "count": 0, "nan": math.nan, "inf": math.inf, "none": None}),
    ({"unit": "°C", "empty": "", "none": None, "tricky": "end\\"}, {"value": -0.000123, "big": 1e21, "neg": -7}),
    ({}, {"only": False}),
])
def test_our_line_protocol_is_byte_for_byte_what_influxdb_client_point_writes(tags: dict, fields: dict) -> None:  # type: ignore[type-arg]
    point = Point("meas ure,ment")
    for k, v in tags.items():
        point.tag(k, v)
    for k, v in fields.items():
        point.field(k, v)
    point.time(1_795_000_000_123_456_789)
    assert line("meas ure,ment", tags, fields, 1_795_000_000_123_456_789) == point.to_line_protocol()


def test_a_point_without_any_field_value_is_no_line() -> None:
    assert line("m", {"a": "b"}, {"x": None, "y": math.nan}, 1) is None


def heartbeat(**extra: object) -> Heartbeat:
    values: dict[str, object] = {"node": "pi-1", "boot_id": "b1", "seq": 7, "ts": T0, "cpu_pct": 40.0, "mem_pct": 55.5, "temp_c": 61.2, "throttled": True,
                                     "gpu_pct": None, "in_flight": 2, "queued": 1, "jobs_done": 10, "jobs_failed": 1, "service_s": 0.0123,
                                     "service_by_kind": {"sleep": 0.5, "detections": 0.009}, "held": ["j1", "j2", "j3"]}
    values.update(extra)
    return Heartbeat(**values)  # type: ignore[arg-type]


def test_heartbeat_is_one_point_per_node_plus_service_time_per_kind_at_the_beat_time() -> None:
    got = by_measurement(heartbeat_lines(heartbeat()))
    [(tags, fields, ts)] = got["heartbeat"]
    assert tags == {"node": "pi-1"}
    assert ts == round(T0 * 1e6) * 1000
    assert fields == ("cpu_pct=40,draining=0i,held=3i,in_flight=2i,jobs_done=10i,jobs_failed=1i,mem_pct=55.5,queued=1i,seq=7i,"
                      "service_ms=12.3,temp_c=61.2,throttled=1i")  # no gpu_pct: unknown on this node
    kinds = {tags["kind"]: fields for tags, fields, _ in got["heartbeat_kind"]}
    assert kinds == {"sleep": "service_ms=500", "detections": "service_ms=9"}


def result(kind: str = "sleep", job_id: str = "job-1", source: str | None = None, ok: bool = True, output: object = None, **timings: float) -> Result:
    t = {"queued": T0, "dispatched": T0 + 0.002, "received": T0 + 0.003, "started": T0 + 0.004, "finished": T0 + 0.504, "published": T0 + 0.505}
    t.update(timings)
    return Result(job_id=job_id, kind=kind, node="pi-1", source=source or job_id, ok=ok, output=output,
                  error=None if ok else "boom", timings=t)  # type: ignore[arg-type]


def test_a_job_result_has_its_id_as_a_field_never_a_tag_and_latencies_from_its_timings() -> None:
    [text] = result_lines(result(), arrival=T0 + 9)
    measurement, tags, fields, ts = parse_line(text)
    assert measurement == "job"
    assert tags == {"kind": "sleep", "node": "pi-1", "status": "ok"}  # source == job id: not a tag
    assert fields == 'attempt=1i,e2e_ms=505,job_id="job-1",run_ms=500,wait_ms=2'
    assert ts // 1000 == round((T0 + 0.505) * 1e6), "time is the result's published time, not the arrival"


def test_two_jobs_finishing_in_the_same_microsecond_stay_two_points_and_one_job_always_maps_to_the_same_point() -> None:
    a = result_lines(result(job_id="job-a"), arrival=0)
    b = result_lines(result(job_id="job-b"), arrival=0)
    assert parse_line(a[0])[3] != parse_line(b[0])[3]
    assert result_lines(result(job_id="job-a"), arrival=123) == a, "a replayed message must become the very same point"
    s1 = job_state_lines(JobState(job_id="x1", state=JobStateName.SCHEDULED, ts=T0, kind="sleep", attempt=1, node="pi-1"))
    s2 = job_state_lines(JobState(job_id="x2", state=JobStateName.SCHEDULED, ts=T0, kind="sleep", attempt=1, node="pi-1"))
    assert parse_line(s1[0])[3] != parse_line(s2[0])[3]
    assert abs(parse_line(s1[0])[3] - stamp(T0)) < 1000, "the tie-break stays within the microsecond"


def test_a_failed_result_is_a_failed_job_with_its_error() -> None:
    [text] = result_lines(result(ok=False, kind="detections", source="door"), arrival=0)
    _, tags, fields, _ = parse_line(text)
    assert tags == {"kind": "detections", "node": "pi-1", "status": "failed", "source": "door"}
    assert 'error="boom"' in fields


def detections_output(*objects: tuple[str, float]) -> dict:  # type: ignore[type-arg]
    return {"model": "face", "width": 640, "height": 480, "inference_ms": 3.25,
            "detections": [{"label": label, "score": score, "box": [1, 2, 3, 4], "box_norm": [0.1, 0.1, 0.2, 0.2]} for label, score in objects]}


def test_detections_become_one_vision_point_per_frame_and_one_detection_point_per_label() -> None:
    lines = result_lines(result(kind="detections", job_id="f-9", source="door", captured=T0 - 0.1,
                                output=detections_output(("face", 0.9), ("face", 0.7), ("person", 0.5))), arrival=0)
    got = by_measurement(lines)
    [(job_tags, _, ts)] = got["job"]
    assert job_tags["source"] == "door"
    [(tags, fields, vision_ts)] = got["vision"]
    assert tags == {"camera": "door", "model": "face", "node": "pi-1"} and vision_ts == ts
    assert "inference_ms=3.25" in fields and "objects=3i" in fields and "e2e_ms=605" in fields  # from capture, not from queueing
    labels = {tags["label"]: fields for tags, fields, _ in got["detection"]}
    assert labels == {"face": "count=2i,score_max=0.9,score_mean=0.8", "person": "count=1i,score_max=0.5,score_mean=0.5"}
    assert all(tags["camera"] == "door" and "job" not in "".join(tags) for tags, _, _ in got["detection"])


def test_a_detection_result_whose_output_is_not_a_detection_output_is_refused() -> None:
    with pytest.raises(ValidationError):
        result_lines(result(kind="detections", source="door", output={"model": "face"}), arrival=0)


def kalman(**extra: object) -> dict:  # type: ignore[type-arg]
    out = {"method": "kalman", "group": "room", "quantity": "temperature", "unit": "°C", "window": 4, "estimate": 21.3, "variance": 0.04,
           "used": ["t1", "t2"], "rejected": [{"sensor": "t3", "reason": "stuck", "count": 5}], "readings": 12,
           "window_start": T0 - 2, "window_end": T0, "state": {"estimate": 21.3, "variance": 0.01, "timestamp": T0}}
    out.update(extra)
    return out


def test_a_kalman_result_is_a_fusion_point_at_the_window_end_and_a_point_per_rejected_sensor() -> None:
    got = by_measurement(result_lines(result(kind="fusion", job_id="fz-1", source="room", output=kalman()), arrival=0))
    [(tags, fields, ts)] = got["fusion"]
    assert tags == {"group": "room", "quantity": "temperature", "unit": "°C"}
    assert ts == stamp(T0) + 4  # the window's end, its number in the nanoseconds
    assert "estimate=21.3" in fields and "stddev=0.2" in fields and "used=2i" in fields and "rejected=5i" in fields and "window=4i" in fields
    assert got["fusion_rejected"] == [({"group": "room", "sensor": "t3", "reason": "stuck"}, "count=5i", ts)]


def test_count_windows_cut_from_one_batch_end_at_one_instant_and_each_stays_its_own_point() -> None:
    """A batch of readings without times is stamped with one arrival time by the coordinator, so
    every count window cut from it starts and ends then. InfluxDB keeps one point per series and
    time: without the window number in the time, the last window would overwrite the others."""
    fw = FusionWindows({"room": GroupConfig(quantity="temperature", window_count=2)}, 100, 1000, 0.25, None)
    for value in (20.0, 20.2, 20.4, 20.1, 20.3, 20.5):
        fw.add("t1", "temperature", SensorReading(value=value, unit="°C"), T0)
    lines: list[str] = []
    outputs: list[tuple[str, dict[str, object]]] = []
    while jobs := fw.ready_jobs():
        [job] = jobs
        output = run_fusion(FusionParams.model_validate(job.params))
        assert output["window_end"] == T0
        fw.finished(job.id, job.params, output)
        outputs.append((job.id, output))
        lines += result_lines(result(kind="fusion", job_id=job.id, source="room", output=output), arrival=0)
    fused = by_measurement(lines)["fusion"]
    assert [re.search(r"window=(\d+)i", fields)[1] for _, fields, _ in fused] == ["1", "2", "3"]  # type: ignore[index]
    assert len({(tuple(tags.items()), ts) for tags, _, ts in fused}) == 3, "three windows, three points"
    again = [text for job_id, output in outputs for text in result_lines(result(kind="fusion", job_id=job_id, source="room", output=output), arrival=9)]
    assert again == lines, "a window's result written twice (a replay) is the same point"


def test_an_imu_result_is_an_orientation_point_and_an_unknown_method_is_refused() -> None:
    imu = {"method": "imu", "group": "arm", "window": 2, "roll": 1.5, "pitch": -2.0, "yaw": 90.0, "samples": 50,
           "window_start": T0 - 1, "window_end": T0, "state": {"quaternion": [1.0, 0.0, 0.0, 0.0], "timestamp": T0}}
    got = by_measurement(result_lines(result(kind="fusion", source="arm", output=imu), arrival=0))
    assert got["orientation"] == [({"group": "arm"}, "pitch=-2,roll=1.5,samples=50i,window=2i,yaw=90", stamp(T0) + 2)]
    with pytest.raises(ValueError, match="unknown method"):
        result_lines(result(kind="fusion", source="arm", output={"method": "magic"}), arrival=0)


def test_job_states_carry_state_kind_node_as_tags_and_the_reason_as_a_field() -> None:
    [text] = job_state_lines(JobState(job_id="j-7", state=JobStateName.FAILED, ts=T0, kind="sleep", attempt=3, reason="no node can run it"))
    m, tags, fields, _ = parse_line(text)
    assert (m, tags) == ("job_state", {"kind": "sleep", "state": "FAILED"})
    assert fields == 'attempt=3i,job_id="j-7",reason="no node can run it"'


def stats(**extra: object) -> CoordinatorStats:
    values: dict[str, object] = {"ts": T0, "uptime_s": 12.5, "nodes_online": 2, "nodes_known": 3, "queued": 4, "in_flight": 1, "queued_by_kind": {"sleep": 4},
                                     "submitted": 10, "done": 5, "failed": 1, "retried": 0, "rejected": 0, "duplicates": 0, "jobs_per_s": 2.5,
                                     "frames_in": {"door": 10, "yard": 3}, "frames_done": {"door": 8, "yard": 3}, "frames_dropped": {"door": 2}}
    values.update(extra)
    return CoordinatorStats(**values)  # type: ignore[arg-type]


def test_coordinator_stats_numbers_are_fields_and_dicts_are_points_per_key_zero_filled_within_a_family() -> None:
    got = by_measurement(coordinator_lines(stats()))
    [(tags, fields, ts)] = got["coordinator"]
    assert tags == {} and ts == stamp(T0)
    numbers = {k for k, v in stats().model_dump().items() if isinstance(v, (int, float)) and k not in ("v", "ts")}
    written = dict(f.split("=") for f in fields.split(","))
    assert set(written) == numbers
    assert {k: written[k] for k in ("nodes_online", "queued", "jobs_per_s", "uptime_s")} == {
        "nodes_online": "2i", "queued": "4i", "jobs_per_s": "2.5", "uptime_s": "12.5"}
    keyed = {tags["key"]: fields for tags, fields, _ in got["coordinator_keyed"]}
    assert keyed == {"door": "frames_done=8i,frames_dropped=2i,frames_in=10i,frames_lost=0i",
                     "yard": "frames_done=3i,frames_dropped=0i,frames_in=3i,frames_lost=0i",  # never dropped or lost: 0, not missing
                     "sleep": "queued_by_kind=4i"}


def test_counters_the_coordinator_adds_later_are_written_without_a_change_here() -> None:
    class Later(CoordinatorStats):
        later_queued: int
        later_windows: dict[str, int]
        later_overflow: dict[str, int]

    got = by_measurement(coordinator_lines(Later(**stats().model_dump(), later_queued=3, later_windows={"room": 9}, later_overflow={})))
    assert "later_queued=3i" in got["coordinator"][0][1]
    keyed = {tags["key"]: fields for tags, fields, _ in got["coordinator_keyed"]}
    assert keyed["room"] == "later_overflow=0i,later_windows=9i"


def test_readings_use_their_own_time_and_a_bare_number_or_a_batch_is_stamped_once_on_arrival() -> None:
    [text] = reading_lines("t1", "temperature", parse_reading("temperature", b'{"v":1,"value":21.5,"unit":"C","ts":1795000000.5,"seq":4}'), 9)
    assert text == "sensor,quantity=temperature,sensor=t1,unit=°C seq=4i,value=21.5 1795000000500000000"
    [bare] = reading_lines("t2", "humidity", parse_reading("humidity", b"48"), arrival=1795000001.0)
    assert bare == "sensor,quantity=humidity,sensor=t2,unit=% value=48 1795000001000000000"
    batch = parsers(Topics("edgehive/v1"), clock=lambda: 1795000002.0)["edgehive/v1/sensors/+/+"][1](
        "edgehive/v1/sensors/t3/temperature", b'[{"v":1,"value":20.5},{"v":1,"value":20.6},{"v":1,"value":20.7,"ts":1795000000.25}]')
    assert batch == ["sensor,quantity=temperature,sensor=t3,unit=°C value=20.5 1795000002000000000",
                     "sensor,quantity=temperature,sensor=t3,unit=°C value=20.6 1795000002000000001",  # a batch stays three points
                     "sensor,quantity=temperature,sensor=t3,unit=°C value=20.7 1795000000250000000"]
    [imu] = reading_lines("m1", "imu", parse_reading("imu", b'{"v":1,"accel":[0,0,9.8],"gyro":[0.1,0,0],"ts":1795000000}'), 0)
    assert imu == "imu,sensor=m1 accel_x=0,accel_y=0,accel_z=9.8,gyro_x=0.1,gyro_y=0,gyro_z=0 1795000000000000000"


def test_error_reports_are_counted_per_source() -> None:
    [text] = error_lines(ErrorReport(ts=T0, source="coordinator", topic="edgehive/v1/jobs/submit", reason="kind: field required", size=3))
    m, tags, fields, _ = parse_line(text)
    assert (m, tags) == ("error", {"source": "coordinator"}) and 'reason="kind: field required"' in fields


def test_every_subscription_parses_its_topic_and_refuses_garbage() -> None:
    topics = Topics("edgehive/v1")
    table = parsers(topics, clock=lambda: 1795000000.0)
    by_kind = {kind: (pattern, parse) for pattern, (kind, parse) in table.items()}
    assert set(by_kind) == {"heartbeat", "result", "job_state", "coordinator_stats", "sensor", "errors", "coordinator_member"}
    beat = heartbeat().model_dump_json().encode()
    assert by_kind["heartbeat"][1](topics.heartbeat("pi-1"), beat)[0].startswith("heartbeat,node=pi-1 ")
    assert by_kind["sensor"][1](topics.sensor("t9", "pressure"), b"1013.2") == ["sensor,quantity=pressure,sensor=t9,unit=hPa value=1013.2 1795000000000000000"]
    for kind, (pattern, parse) in by_kind.items():
        topic = pattern.replace("+", "x")
        for garbage in (b"",) * (kind != "coordinator_member") + (b"\xff\xfe", b"{}", b"[1,2]", b'{"v":2}', orjson.dumps({"v": 1, "ts": "soon"})):
            with pytest.raises(ValueError):  # pydantic's ValidationError is a ValueError too
                parse(topic, garbage)
    with pytest.raises(ValueError):
        by_kind["sensor"][1](topics.sensor("t9", "temperature"), b'{"v":1,"value":70,"unit":"F"}')
    with pytest.raises(ValueError, match="invalid sensor"):
        by_kind["sensor"][1]("edgehive/v1/sensors/bad id/temperature", b"21")


def test_stamp_is_microsecond_exact_for_current_epoch_seconds() -> None:
    now = time.time()
    assert abs(stamp(now) - now * 1e9) < 1000


def test_a_coordinator_s_role_is_one_point_tagged_by_its_id_and_a_cleared_status_none() -> None:
    member = CoordinatorMember(id="head-b", run="r2", role="standby", epoch=3, ts=T0, synced=True)
    [text] = member_lines(member)
    assert text.startswith("coordinator_member,coordinator=head-b ")
    assert 'role="standby"' in text and "active=0i" in text and "epoch=3i" in text and "synced=1i" in text
    parse = parsers(Topics("t/v1"))["t/v1/coordinator/members/+"][1]
    assert parse("t/v1/coordinator/members/head-b", member.model_dump_json().encode()) == [text]
    assert parse("t/v1/coordinator/members/head-b", b"") == []
