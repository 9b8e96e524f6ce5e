"""What each message becomes in InfluxDB: measurements, tags, fields (docs/TELEMETRY.md has the table).

Rules that hold for every point:

- **Time comes from the message**, never from the sink's clock (a heartbeat's `ts`, a result's
  `published`, a job state's `ts`, a fusion window's end). The same message therefore always
  becomes the same point, and writing it twice (a replay after an outage, a batch whose reply
  was lost) overwrites it instead of adding a second one. Only a reading without a timestamp
  (a bare number from `mosquitto_pub -m 21.5`) is stamped on arrival, once.
- **Per-job points carry a tie-break** in the nanosecond digits that a float timestamp cannot
  hold anyway: the microsecond of the message plus a hash of the job id. Two jobs of the same
  kind finishing in the same microsecond on the same node (the coordinator stamps a burst of
  states with one clock reading) stay two points.
- **Fusion points carry the window number** in those digits (`window % 1000`): two windows of a
  group can end at the same instant (count windows cut from one batch of readings, which the
  coordinator stamps with one arrival time), and without it the later would overwrite the
  earlier. A window number is never reused, so the same result is still the same point.
- **Tags are low-cardinality**: node, kind, state, camera, model, label, group, sensor,
  quantity. A job id is a field, never a tag; a result's `source` is a tag only when it is not
  the job id (a camera or a sensor group, not an ad-hoc job).
- Booleans are written as integers 0/1 so that `mean()` and `max()` work on them in InfluxQL.
"""

from __future__ import annotations

import re
import time
import zlib
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from edgehive.schemas import CoordinatorMember, CoordinatorStats, ErrorReport, Heartbeat, JobState, Result, Topics, decode
from edgehive.schemas.base import IDENT_PATTERN
from edgehive.schemas.frigate import VERDICT_KIND, FrigateVerdict
from edgehive.schemas.fusion import FusionEstimate, FusionOrientation
from edgehive.schemas.kinds import DETECT_KIND, FUSION_KIND
from edgehive.schemas.sensors import ImuReading, SensorReading, parse_readings
from edgehive.schemas.vision import DetectionOutput

from .lineprotocol import FieldValue, line

_IDENT = re.compile(IDENT_PATTERN)

Lines = list[str]


def stamp(ts: float, salt: str = "") -> int:
    """Nanoseconds since the epoch: the message's microsecond, plus a tie-break from `salt`."""
    return round(ts * 1_000_000) * 1000 + (zlib.crc32(salt.encode()) % 1000 if salt else 0)


def _ms(start: float | None, end: float | None) -> float | None:
    return None if start is None or end is None else round((end - start) * 1000.0, 3)


def _add(out: Lines, measurement: str, tags: dict[str, str | None], fields: dict[str, FieldValue], ts_ns: int) -> None:
    text = line(measurement, tags, fields, ts_ns)
    if text is not None:
        out.append(text)


# -- nodes ------------------------------------------------------------------------------------


def heartbeat_lines(beat: Heartbeat) -> Lines:
    """`heartbeat` (one per beat) and `heartbeat_kind` (service time per job kind)."""
    ts = stamp(beat.ts)
    out: Lines = []
    _add(out, "heartbeat", {"node": beat.node}, {
        "cpu_pct": beat.cpu_pct, "mem_pct": beat.mem_pct, "temp_c": beat.temp_c, "gpu_pct": beat.gpu_pct,
        "throttled": int(beat.throttled), "draining": int(beat.draining), "in_flight": beat.in_flight,
        "queued": beat.queued, "held": len(beat.held), "jobs_done": beat.jobs_done, "jobs_failed": beat.jobs_failed,
        "seq": beat.seq, "service_ms": None if beat.service_s is None else round(beat.service_s * 1000.0, 3),
    }, ts)
    for kind, seconds in beat.service_by_kind.items():
        _add(out, "heartbeat_kind", {"node": beat.node, "kind": kind}, {"service_ms": round(seconds * 1000.0, 3)}, ts)
    return out


# -- jobs -------------------------------------------------------------------------------------


def result_time(result: Result, arrival: float) -> float:
    t = result.timings
    return t.published or t.finished or t.inferred or t.started or arrival


def result_lines(result: Result, arrival: float) -> Lines:
    """`job` for every result; `vision` + `detection` for detections; `fusion`/`fusion_rejected`
    or `orientation` for fusion. The output is checked against its kind's schema first."""
    t = result.timings
    ts = stamp(result_time(result, arrival), result.job_id)
    source = result.source if result.source != result.job_id else None
    out: Lines = []
    _add(out, "job", {"kind": result.kind, "node": result.node, "status": "ok" if result.ok else "failed", "source": source}, {
        "job_id": result.job_id, "attempt": result.attempt,
        "e2e_ms": _ms(t.captured or t.queued, t.published or t.finished),
        "wait_ms": _ms(t.queued, t.dispatched),
        "run_ms": _ms(t.started, t.finished),
        "error": result.error[:200] if result.error else None,
    }, ts)
    if result.ok and result.kind == DETECT_KIND:
        _detection_lines(out, result, DetectionOutput.model_validate(result.output), ts)
    elif result.ok and result.kind == FUSION_KIND:
        _fusion_lines(out, result.output)
    return out


def _detection_lines(out: Lines, result: Result, output: DetectionOutput, ts: int) -> None:
    t = result.timings
    _add(out, "vision", {"camera": result.source, "model": output.model, "node": result.node}, {
        "inference_ms": round(output.inference_ms, 3), "objects": len(output.detections), "width": output.width,
        "height": output.height, "e2e_ms": _ms(t.captured or t.queued, t.published or t.finished), "job_id": result.job_id,
    }, ts)
    by_label: dict[str, list[float]] = {}
    for detection in output.detections:
        by_label.setdefault(detection.label, []).append(detection.score)
    for label, scores in by_label.items():
        _add(out, "detection", {"camera": result.source, "model": output.model, "label": label},
             {"count": len(scores), "score_max": round(max(scores), 4), "score_mean": round(sum(scores) / len(scores), 4)}, ts)


def window_stamp(window_end: float, window: int) -> int:
    """A fusion window's point time: its end, plus its number in the nanosecond digits (see above)."""
    return stamp(window_end) + window % 1000


def _fusion_lines(out: Lines, output: Any) -> None:
    method = output.get("method") if isinstance(output, dict) else None
    if method == "imu":
        o = FusionOrientation.model_validate(output)
        _add(out, "orientation", {"group": o.group}, {"roll": o.roll, "pitch": o.pitch, "yaw": o.yaw, "samples": o.samples, "window": o.window},
             window_stamp(o.window_end, o.window))
        return
    if method != "kalman":
        raise ValueError(f"fusion output has unknown method {str(method)[:20]!r} (expected kalman or imu)")
    e = FusionEstimate.model_validate(output)
    ts = window_stamp(e.window_end, e.window)
    _add(out, "fusion", {"group": e.group, "quantity": e.quantity, "unit": e.unit}, {
        "estimate": e.estimate, "variance": e.variance, "stddev": e.variance ** 0.5, "readings": e.readings,
        "used": len(e.used), "rejected": sum(r.count for r in e.rejected), "window": e.window,
        "window_s": round(e.window_end - e.window_start, 6),
    }, ts)
    for rejection in e.rejected:
        _add(out, "fusion_rejected", {"group": e.group, "sensor": rejection.sensor, "reason": rejection.reason}, {"count": rejection.count}, ts)


def job_state_lines(state: JobState) -> Lines:
    out: Lines = []
    _add(out, "job_state", {"kind": state.kind, "state": state.state.value, "node": state.node},
         {"job_id": state.job_id, "attempt": state.attempt, "reason": state.reason[:200] if state.reason else None},
         stamp(state.ts, state.job_id))
    return out


# -- coordinator, errors ----------------------------------------------------------------------


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def coordinator_lines(stats: CoordinatorStats) -> Lines:
    """`coordinator`: every top-level number; `coordinator_keyed`: every dict of numbers, one
    point per key (camera, job kind, sensor group) with one field per dict.

    Generic on purpose: a counter the coordinator adds later (per camera, per group) shows up
    without a change here. Dicts of one family (`frames_in`, `frames_dropped`, …: the name up
    to the first `_`) are zero-filled for each other's keys, so a camera that never dropped a
    frame reads 0 dropped, not "no data".
    """
    ts = stamp(stats.ts)
    values = stats.model_dump()
    out: Lines = []
    _add(out, "coordinator", {}, {k: v for k, v in values.items() if _number(v) and k != "ts" and k != "v"}, ts)
    dicts = {k: v for k, v in values.items() if isinstance(v, dict) and all(_number(x) for x in v.values())}
    family_keys: dict[str, set[str]] = {}
    for name, mapping in dicts.items():
        family_keys.setdefault(name.split("_", 1)[0], set()).update(mapping)
    per_key: dict[str, dict[str, FieldValue]] = {}
    for name, mapping in dicts.items():
        for key in family_keys[name.split("_", 1)[0]]:
            per_key.setdefault(key, {})[name] = mapping.get(key, 0)
    for key, fields in sorted(per_key.items()):
        _add(out, "coordinator_keyed", {"key": key}, fields, ts)
    return out


def member_lines(member: CoordinatorMember) -> Lines:
    """`coordinator_member`: one coordinator's role (a standby repeats it every stats interval, the
    active one when it changes), so the Fleet dashboard shows which one is active."""
    out: Lines = []
    _add(out, "coordinator_member", {"coordinator": member.id}, {
        "role": member.role, "active": int(member.role == "active"), "epoch": member.epoch, "synced": int(member.synced),
    }, stamp(member.ts, member.run))
    return out


def error_lines(report: ErrorReport) -> Lines:
    out: Lines = []
    _add(out, "error", {"source": report.source}, {"topic": report.topic[:200], "reason": report.reason[:200], "size": report.size},
         stamp(report.ts, report.topic + report.reason + report.excerpt))
    return out


def frigate_lines(verdict: FrigateVerdict) -> Lines:
    """`frigate`: one point per Frigate event judged, at the verdict's time (tie-break: the event id)."""
    out: Lines = []
    _add(out, "frigate", {"camera": verdict.camera, "label": verdict.label, "node": verdict.node}, {
        "event_id": verdict.event_id, "ok": int(verdict.ok), "confirmed": int(verdict.confirmed), "score": verdict.score,
        "frigate_score": verdict.frigate_score, "elapsed_ms": round(verdict.elapsed_s * 1000.0, 3),
        "job_ms": None if verdict.job_s is None else round(verdict.job_s * 1000.0, 3),
        "error": verdict.error[:200] if verdict.error else None,
    }, stamp(verdict.ts, verdict.event_id))
    return out


# -- sensors ----------------------------------------------------------------------------------


def reading_lines(sensor: str, quantity: str, reading: SensorReading | ImuReading, arrival: float, index: int = 0) -> Lines:
    """`sensor` for a scalar reading, `imu` for an IMU sample. A reading without a ts is stamped
    on arrival, plus its `index` in a batch in nanoseconds, so that a batch stays distinct points."""
    ts = stamp(reading.ts) if reading.ts else stamp(arrival) + index
    out: Lines = []
    if isinstance(reading, ImuReading):
        (ax, ay, az), (gx, gy, gz) = reading.accel, reading.gyro
        _add(out, "imu", {"sensor": sensor}, {"accel_x": ax, "accel_y": ay, "accel_z": az, "gyro_x": gx, "gyro_y": gy, "gyro_z": gz,
                                              "seq": reading.seq}, ts)
    else:
        _add(out, "sensor", {"sensor": sensor, "quantity": quantity, "unit": reading.unit}, {"value": reading.value, "seq": reading.seq}, ts)
    return out


# -- topic → parser ---------------------------------------------------------------------------

Parser = Callable[[str, bytes], Lines]


def _model(model: type[BaseModel], convert: Callable[[Any], Lines]) -> Parser:
    return lambda topic, payload: convert(decode(model, payload))


def parsers(topics: Topics, clock: Callable[[], float] = time.time) -> dict[str, tuple[str, Parser]]:
    """Subscription pattern → (topic kind, parser returning lines); every parser raises on bad
    input (pydantic.ValidationError, ValueError) so that the bus reports it on `errors`."""

    def result(topic: str, payload: bytes) -> Lines:
        # `results/frigate/{camera}` shares the results tree but carries the Frigate bridge's
        # verdict, not a job's result: read as a result it would be refused on `errors`.
        if topic.rsplit("/", 2)[-2] == VERDICT_KIND:
            return frigate_lines(decode(FrigateVerdict, payload))
        return result_lines(decode(Result, payload), clock())

    def member(topic: str, payload: bytes) -> Lines:
        return member_lines(decode(CoordinatorMember, payload)) if payload else []  # empty: a cleared retained status

    def reading(topic: str, payload: bytes) -> Lines:
        # The subscription fixed the shape (prefix/sensors/+/+); only the two ids need a check.
        sensor, quantity = topic.rsplit("/", 2)[-2:]
        if not (_IDENT.fullmatch(sensor) and _IDENT.fullmatch(quantity)):
            raise ValueError(f"invalid sensor or quantity id in topic {topic[:120]!r}")
        arrival = clock()
        return [text for i, r in enumerate(parse_readings(quantity, payload)) for text in reading_lines(sensor, quantity, r, arrival, i)]

    return {
        topics.pattern("heartbeat"): ("heartbeat", _model(Heartbeat, heartbeat_lines)),
        topics.pattern("result"): ("result", result),
        topics.pattern("job_state"): ("job_state", _model(JobState, job_state_lines)),
        topics.coordinator_stats: ("coordinator_stats", _model(CoordinatorStats, coordinator_lines)),
        topics.pattern("sensor"): ("sensor", reading),
        topics.errors: ("errors", _model(ErrorReport, error_lines)),
        topics.pattern("coordinator_member"): ("coordinator_member", member),
    }

