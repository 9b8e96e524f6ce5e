"""The protocol's message models: wire round trips, strictness, and the checked-in JSON Schemas."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from pydantic import BaseModel, ValidationError

from edgehive.schemas import (
    MODELS,
    Capabilities,
    CoordinatorMember,
    CoordinatorStats,
    ErrorReport,
    FrameMeta,
    Heartbeat,
    Job,
    JobRequest,
    JobState,
    JobStateName,
    LeaderClaim,
    NodeStatus,
    Requirements,
    Result,
    Timings,
    decode,
    encode,
    parse_status,
)
from edgehive.schemas.export import EXTRA_MODELS, render_all
from edgehive.schemas.fusion import FusionParams
from edgehive.schemas.sensors import ReadingError, parse_readings

REPO = Path(__file__).resolve().parents[1]
SCHEMA_DIR = REPO / "schemas" / "json"


def samples() -> dict[str, BaseModel]:
    """One fully populated, valid instance per entry of MODELS (nested parts included)."""
    return {
        "capabilities": Capabilities(
            node="pi-kitchen", boot_id="b-1", ts=1_800_000_000.5, version="0.1.0", arch="aarch64",
            board="Raspberry Pi 5 Model B Rev 1.0", os="Linux 6.6", python="3.11.2", cores=4, ram_mb=8048,
            accelerators=["edgetpu"], backends=["litert"], models=["face_detection_short_range"],
            kinds=["sleep", "detect"], workers=2, slots=4, tags=["camera", "outdoor"],
        ),
        "status": NodeStatus(state="offline", boot_id="b-1", ts=1_800_000_001.0, reason="will"),
        "heartbeat": Heartbeat(
            node="pi-kitchen", boot_id="b-1", seq=7, ts=1_800_000_002.0, cpu_pct=12.5, mem_pct=40.0,
            temp_c=61.5, throttled=True, gpu_pct=None, in_flight=1, queued=2, jobs_done=10, jobs_failed=1,
            service_s=0.012, service_by_kind={"detect": 0.009}, held=["j1", "j2"], draining=False,
        ),
        "job_request": JobRequest(
            kind="sleep", id="job-42", params={"seconds": 0.05, "nested": {"a": [1, 2]}},
            requires=Requirements(model="m1", accelerator="cuda", min_ram_mb=512, arch="aarch64", tags=["camera"], node="jetson-1"),
            priority=5, deadline_s=2.5, source="cam1",
        ),
        "job": Job(id="job-42", kind="sleep", params={"seconds": 0.05}, source="cam1", attempt=2, boot_id="b-1",
                   submitted=1_800_000_000.0, dispatched=1_800_000_000.1, deadline=1_800_000_010.0, epoch=3),
        "result": Result(job_id="job-42", kind="sleep", node="pi-kitchen", source="cam1", attempt=1, ok=True,
                         output={"slept_s": 0.05},
                         timings=Timings(queued=1.0, dispatched=2.0, received=3.0, started=4.0, finished=5.0)),
        "job_state": JobState(job_id="job-42", state=JobStateName.FAILED, ts=1_800_000_003.0, kind="sleep",
                              attempt=3, node="pi-kitchen", reason="max attempts"),
        "error": ErrorReport(ts=1.0, source="coordinator", topic="edgehive/v1/jobs/submit", reason="bad json",
                             excerpt="{not json", size=9),
        "coordinator_stats": CoordinatorStats(
            ts=1.0, uptime_s=10.0, nodes_online=2, nodes_known=3, queued=4, in_flight=1, queued_by_kind={"sleep": 4},
            submitted=10, done=5, failed=1, retried=2, rejected=3, duplicates=0, jobs_per_s=1.5,
            frames_in={"cam1": 20}, frames_done={"cam1": 12}, frames_dropped={"cam1": 7}, frames_lost={"cam1": 1},
        ),
        "frame_meta": FrameMeta(captured=1_800_000_000.25, model="face"),
        "leader_claim": LeaderClaim(id="head-1", run="a1b2c3", epoch=4, lease_s=2.0, ts=1_800_000_000.5),
        "coordinator_member": CoordinatorMember(id="head-2", run="d4e5f6", role="standby", epoch=4, ts=1_800_000_000.5, synced=True),
    }


def valid_payload(name: str) -> dict[str, Any]:
    """A valid JSON dict for `name`, to be mutated by the strictness tests."""
    return json.loads(encode(samples()[name]))


def test_samples_cover_every_model() -> None:
    """A new model added to MODELS must also get a round-trip sample here."""
    made = samples()
    assert set(made) == set(MODELS)
    for name, model in MODELS.items():
        assert type(made[name]) is model


@pytest.mark.parametrize("name", sorted(MODELS))
def test_round_trip(name: str) -> None:
    """What one side encodes, the other decodes to an equal message."""
    original = samples()[name]
    wire = encode(original)
    assert isinstance(wire, bytes)
    back = decode(MODELS[name], wire)
    assert back == original
    assert decode(MODELS[name], wire.decode()) == original  # str payloads work too


@pytest.mark.parametrize("name", sorted(MODELS))
def test_encode_carries_version_and_omits_nulls(name: str) -> None:
    """Every JSON message carries "v": 1; null fields are left out to keep it compact."""
    wire = encode(samples()[name])
    assert json.loads(wire)["v"] == 1
    assert b"null" not in wire
    compact = json.dumps(json.loads(wire), separators=(",", ":"), ensure_ascii=False).encode()
    assert wire == compact


@pytest.mark.parametrize("name", sorted(MODELS))
def test_unknown_fields_are_refused(name: str) -> None:
    """A typo such as `prority` must surface as an error, not be silently dropped."""
    payload = valid_payload(name)
    payload["prority"] = 3
    with pytest.raises(ValidationError, match="prority"):
        decode(MODELS[name], json.dumps(payload))


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("version", [0, 2, "1", None])
def test_version_must_be_one(name: str, version: Any) -> None:
    """A v2 message must never be misread as v1."""
    payload = valid_payload(name)
    payload["v"] = version
    with pytest.raises(ValidationError):
        decode(MODELS[name], json.dumps(payload))


def test_unknown_field_in_nested_part_is_refused() -> None:
    """Nested parts (requirements, timings) are just as strict as messages."""
    payload = valid_payload("job_request")
    payload["requires"]["gpu"] = True
    with pytest.raises(ValidationError, match="gpu"):
        decode(JobRequest, json.dumps(payload))
    payload = valid_payload("result")
    payload["timings"]["ended"] = 1.0
    with pytest.raises(ValidationError, match="ended"):
        decode(Result, json.dumps(payload))


def test_job_request_from_design_example() -> None:
    """The exact request shape the README documents is accepted, with optional fields defaulted."""
    request = decode(JobRequest, b'{"v": 1, "kind": "sleep", "params": {"seconds": 0.05}}')
    assert (request.kind, request.params, request.id, request.priority, request.deadline_s) == ("sleep", {"seconds": 0.05}, None, 0, None)
    full = decode(JobRequest, b'{"v": 1, "kind": "sleep", "id": "j1", "params": {}, "requires": {}, "priority": 0, "deadline_s": null}')
    assert full.id == "j1"
    assert full.requires == Requirements()


def _timings() -> Timings:
    return Timings(started=1.0, finished=2.0)


def test_result_ok_with_error_is_refused() -> None:
    """A result cannot both succeed and carry an error."""
    with pytest.raises(ValidationError, match="successful result carries no error"):
        Result(job_id="j", kind="k", node="n", source="s", ok=True, error="boom", timings=_timings())


@pytest.mark.parametrize("error", [None, ""])
def test_result_failed_without_error_is_refused(error: str | None) -> None:
    """A failed result must say why."""
    with pytest.raises(ValidationError, match="must say why"):
        Result(job_id="j", kind="k", node="n", source="s", ok=False, error=error, timings=_timings())


def test_result_failed_with_error_is_accepted() -> None:
    """The valid failure shape round-trips, keeping the reason."""
    failed = Result(job_id="j", kind="k", node="n", source="s", ok=False, error="no model", timings=_timings())
    assert decode(Result, encode(failed)).error == "no model"


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize(
    ("name", "path"),
    [("heartbeat", ("cpu_pct",)), ("heartbeat", ("ts",)), ("capabilities", ("ts",)),
     ("job_request", ("deadline_s",)), ("result", ("timings", "finished")), ("coordinator_stats", ("jobs_per_s",))],
)
def test_non_finite_numbers_are_refused(bad: float, name: str, path: tuple[str, ...]) -> None:
    """NaN/inf poison averages and InfluxDB points; allow_inf_nan=False refuses them everywhere."""
    payload = valid_payload(name)
    target = payload
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = bad
    with pytest.raises(ValidationError):
        MODELS[name].model_validate(payload)
    # Python's json writes NaN/Infinity literals; the JSON path must refuse them as well.
    with pytest.raises(ValidationError):
        decode(MODELS[name], json.dumps(payload))


@pytest.mark.parametrize(("quantity", "payload", "why"), [
    ("temperature", b"-300", "value -300 °C is impossible for temperature (absolute zero is -273.15 °C)"),
    ("temperature", b'{"v":1,"value":-273.16,"unit":"degC"}', "value -273.16 °C is impossible for temperature (absolute zero is -273.15 °C)"),
    ("humidity", b"150", "value 150 % is impossible for humidity (relative humidity is 0 to 100 %)"),
    ("humidity", b'{"v":1,"value":-5,"unit":"%RH"}', "value -5 % is impossible for humidity (relative humidity is 0 to 100 %)"),
    ("pressure", b"-1013", "value -1013 hPa is impossible for pressure (a pressure is above 0 hPa)"),
    ("pressure", b'{"v":1,"value":0,"unit":"mbar"}', "value 0 hPa is impossible for pressure (a pressure is above 0 hPa)"),
    # Other temperature units are refused for their unit, before any range: nothing is guessed.
    ("temperature", b'{"v":1,"value":-300,"unit":"F"}', "unit 'F' is not a unit of temperature (expected °C)"),
    ("temperature", b'{"v":1,"value":0,"unit":"K"}', "unit 'K' is not a unit of temperature (expected °C)"),
    ("pressure", b'[{"v":1,"value":1013},{"v":1,"value":-2}]', "reading 1 of the batch: value -2 hPa is impossible for pressure (a pressure is above 0 hPa)"),
])
def test_physically_impossible_readings_are_refused_with_the_range(quantity: str, payload: bytes, why: str) -> None:
    with pytest.raises(ReadingError) as error:
        parse_readings(quantity, payload)
    assert str(error.value) == why


@pytest.mark.parametrize(("quantity", "payload", "value"), [
    ("temperature", b"-273.15", -273.15), ("temperature", b'{"v":1,"value":-273.15,"unit":"C"}', -273.15),
    ("temperature", b"1.8e19", 1.8e19),  # hot, but no law of physics says impossible: fusion's gating deals with it
    ("humidity", b"0", 0.0), ("humidity", b'{"v":1,"value":100,"unit":"%RH"}', 100.0),
    ("pressure", b"0.001", 0.001), ("pressure", b"1e6", 1e6),
    ("co2", b"-5", -5.0),  # a quantity the system does not know takes any finite value
])
def test_boundary_readings_are_accepted(quantity: str, payload: bytes, value: float) -> None:
    [reading] = parse_readings(quantity, payload)
    assert reading.value == value  # type: ignore[union-attr]


def test_a_fusion_window_submitted_by_hand_gets_the_same_range_check() -> None:
    """A `fusion` job's params (jobs/submit) are a second door for readings: the agent that
    validates them refuses what the coordinator's door refuses, naming the row."""
    window = {"method": "kalman", "group": "room", "quantity": "humidity", "unit": "%", "window": 1,
              "window_start": 0.0, "window_end": 1.0, "readings": [["a", 40.0, 0.5], ["b", 0.0, 0.6], ["c", 100.0, 0.7]]}
    assert len(FusionParams.model_validate(window).root.readings) == 3  # the bounds themselves are possible
    with pytest.raises(ValidationError) as error:
        FusionParams.model_validate({**window, "readings": [["a", 40.0, 0.5], ["b", 150.0, 0.6]]})
    assert "readings[1]: value 150 % is impossible for humidity (relative humidity is 0 to 100 %)" in str(error.value)
    other_unit = {**window, "quantity": "co2", "unit": "ppm", "readings": [["a", -5.0, 0.5]]}
    assert FusionParams.model_validate(other_unit).root.readings[0].value == -5.0  # no bounds for co2


@pytest.mark.parametrize("payload", [b"online", b"offline", b"  ONLINE\n", b"Offline"])
def test_parse_status_bare_words(payload: bytes) -> None:
    """People type `mosquitto_pub -m online`; that must work, in any case and with whitespace."""
    status = parse_status(payload)
    assert status.state == payload.strip().lower().decode()
    assert status.boot_id is None


def test_parse_status_json() -> None:
    """The agent's own JSON form carries the boot id that tells a stale will from a live node."""
    status = parse_status(b'{"v": 1, "state": "offline", "boot_id": "b-7", "reason": "will"}')
    assert (status.state, status.boot_id, status.reason) == ("offline", "b-7", "will")


@pytest.mark.parametrize("payload", [b"maybe", b"", b'{"v": 1, "state": "asleep"}', b'{"state": "online", "x": 1}'])
def test_parse_status_refuses_garbage(payload: bytes) -> None:
    """Anything else is a validation error (reported on `errors`), never a silent state."""
    with pytest.raises(ValidationError):
        parse_status(payload)


@pytest.mark.parametrize(("field", "value"), [("cpu_pct", 100.5), ("cpu_pct", -1), ("mem_pct", 101), ("gpu_pct", 250),
                                              ("temp_c", 500), ("seq", -1), ("in_flight", -1), ("service_s", -0.1)])
def test_heartbeat_out_of_bounds_refused(field: str, value: float) -> None:
    """Impossible load figures would mislead the scheduler, so they are refused."""
    payload = valid_payload("heartbeat")
    payload[field] = value
    with pytest.raises(ValidationError, match=field):
        decode(Heartbeat, json.dumps(payload))


@pytest.mark.parametrize(("field", "value"), [("cpu_pct", 100), ("cpu_pct", 0), ("mem_pct", 100), ("temp_c", -40)])
def test_heartbeat_bounds_are_inclusive(field: str, value: float) -> None:
    """A fully loaded CPU (100 %) is a legitimate reading."""
    payload = valid_payload("heartbeat")
    payload[field] = value
    assert getattr(decode(Heartbeat, json.dumps(payload)), field) == value


@pytest.mark.parametrize("ident", ["has space", "a/b", "a+b", "a#b", "-leading", "", "x" * 65, "x\n", "é"])
def test_ids_that_cannot_be_topic_levels_are_refused(ident: str) -> None:
    """Ids become topic levels; anything that would break a topic is refused at the message."""
    payload = valid_payload("heartbeat")
    payload["node"] = ident
    with pytest.raises(ValidationError):
        decode(Heartbeat, json.dumps(payload))


def test_longest_id_is_accepted() -> None:
    """64 characters is the documented maximum."""
    payload = valid_payload("heartbeat")
    payload["node"] = "n" * 64
    assert decode(Heartbeat, json.dumps(payload)).node == "n" * 64


def test_job_state_terminal() -> None:
    """Only DONE and FAILED end a job."""
    assert {s for s in JobStateName if s.terminal} == {JobStateName.DONE, JobStateName.FAILED}


def test_exported_json_schemas_are_current() -> None:
    """Non-Python clients use schemas/json/; it must match the models exactly."""
    hint = "the JSON Schemas in schemas/json/ are stale: run `python -m edgehive.schemas.export` and commit the result"
    rendered = render_all()
    assert set(rendered) == {f"{name}.schema.json" for name in (*MODELS, *EXTRA_MODELS)}
    for name, text in rendered.items():
        path = SCHEMA_DIR / name
        assert path.is_file(), f"{path} is missing; {hint}"
        assert path.read_text() == text, f"{path} differs from the model; {hint}"
    extra = sorted(p.name for p in SCHEMA_DIR.glob("*.schema.json") if p.name not in rendered)
    assert not extra, f"schemas/json/ has files no model produces: {extra}; {hint}"


def test_exported_schema_forbids_unknown_fields() -> None:
    """The exported schema tells non-Python clients the same strictness the models enforce."""
    schema = json.loads(render_all()["job_request.schema.json"])
    assert schema["additionalProperties"] is False
    assert schema["properties"]["v"]["const"] == 1
    assert schema["$id"].endswith("/job_request.schema.json")


def test_fast_encoders_agree_with_the_models() -> None:
    """The coordinator's hand-built JSON for states and jobs must be exactly what the models accept and produce."""
    from edgehive.schemas import Job, JobState, JobStateName
    from edgehive.schemas.messages import job_json, job_state_json

    for node, reason in ((None, None), ("pi-1", "re-queued: node pi-2 died")):
        fast = job_state_json("job-1", JobStateName.SCHEDULED, 1795430000.25, "sleep", 2, node, reason)
        model = JobState(job_id="job-1", state=JobStateName.SCHEDULED, ts=1795430000.25, kind="sleep", attempt=2, node=node, reason=reason)
        assert decode(JobState, fast) == model
        assert fast == encode(model)
    for deadline in (None, 1795430009.5):
        fast = job_json("job-1", "sleep", {"seconds": 0.5}, "cam-1", 1, "boot-a", 1795430000.0, 1795430000.1, deadline)
        model = Job(id="job-1", kind="sleep", params={"seconds": 0.5}, source="cam-1", attempt=1, boot_id="boot-a",
                    submitted=1795430000.0, dispatched=1795430000.1, deadline=deadline)
        assert decode(Job, fast) == model
        assert fast == encode(model)  # byte for byte: same fields, same order


def test_fast_encoders_take_every_field_of_their_model() -> None:
    """A field added to Job or JobState must be added to its fast encoder too, or this fails."""
    import inspect

    from edgehive.schemas import Job, JobState
    from edgehive.schemas.messages import job_json, job_state_json

    for encoder, model in ((job_state_json, JobState), (job_json, Job)):
        arguments = list(inspect.signature(encoder).parameters)
        assert arguments == [name for name in model.model_fields if name != "v"], encoder.__name__


@pytest.mark.parametrize(("payload", "why"), [
    (b'{"v":1,"kind":"noop","params":{"echo":18446744073709551616}}', "64 bits"),
    (b'{"v":1,"kind":"noop","params":{"echo":-9223372036854775809}}', "64 bits"),
    (b'{"v":1,"kind":"noop","params":{"echo":1e309}}', "NaN and infinities"),
    (b'{"v":1,"kind":"noop","params":{"echo":[NaN]}}', "NaN and infinities"),
    (b'{"v":1,"kind":"noop","params":{"echo":-Infinity}}', "NaN and infinities"),
    (b'{"v":1,"kind":"noop","params":{"echo":' + b"[" * 40 + b"]" * 40 + b"}}", "deeper than"),
    (b'{"v":1,"kind":"noop","priority":"1"}', "priority"),
    (b'{"v":1,"kind":"noop","priority":true}', "priority"),
    (b'{"v":1,"kind":"noop","priority":1.5}', "priority"),
    (b'{"v":1,"kind":"noop","deadline_s":"5"}', "deadline_s"),
    (b'{"v":1,"kind":"noop","deadline_s":1e309}', "deadline_s"),
    (b'{"v":1,"kind":"noop","requires":{"min_ram_mb":"512"}}', "min_ram_mb"),
])
def test_job_requests_that_cannot_round_trip_or_need_guessing_are_refused(payload: bytes, why: str) -> None:
    """What our own encoder could not write back unchanged (it once wedged the journal), and
    values of the wrong JSON type, are refused instead of coerced."""
    with pytest.raises(ValidationError) as caught:
        decode(JobRequest, payload)
    assert why in str(caught.value)


def test_every_accepted_request_round_trips_through_our_encoder() -> None:
    payload = b'{"v":1,"kind":"noop","params":{"echo":[18446744073709551615,-9223372036854775808,1.5e308,"x",null,true,{"a":{}}]},"priority":3,"deadline_s":2}'
    request = decode(JobRequest, payload)
    assert orjson.loads(encode(request)) == orjson.loads(payload)
    assert orjson.loads(orjson.dumps(request.model_dump(exclude_none=True))) == orjson.loads(payload)


@pytest.mark.parametrize(("field", "value"), [("slots", 10**18), ("workers", 10**6), ("cores", 10**9), ("ram_mb", 10**12), ("kinds", ["k"] * 1000)])
def test_counts_a_node_announces_are_bounded(field: str, value: object) -> None:
    body = orjson.loads(encode(samples()["capabilities"]))
    body[field] = value
    with pytest.raises(ValidationError):
        decode(Capabilities, orjson.dumps(body))


def test_a_result_output_must_round_trip_too() -> None:
    body = orjson.loads(encode(samples()["result"]))
    body["output"] = {"n": 0}
    payload = orjson.dumps(body).replace(b'{"n":0}', b'{"n":100000000000000000000}')
    with pytest.raises(ValidationError, match="64 bits"):
        decode(Result, payload)


def test_a_typed_result_parses_its_kinds_output_and_refuses_another_kinds() -> None:
    """`Result[DetectionOutput]`: the label on a detection is an attribute, not a dict lookup,
    and a result whose output is not a detection is refused at the door, naming the field."""
    from edgehive.schemas.fusion import FusionEstimate, FusionOutput
    from edgehive.schemas.results import kind_output, output_as, parse_result
    from edgehive.schemas.vision import DetectionOutput

    body = orjson.loads(encode(samples()["result"]))
    body.update(kind="detections", output={"model": "objects", "width": 640, "height": 480, "inference_ms": 4.5, "detections": [
        {"label": "person", "score": 0.9, "box": [10, 20, 110, 220], "box_norm": [0.016, 0.042, 0.172, 0.458]}]})
    typed = parse_result(orjson.dumps(body), DetectionOutput)
    assert isinstance(typed.output, DetectionOutput) and typed.output.detections[0].label == "person"
    plain = decode(Result, orjson.dumps(body))
    assert plain.output == body["output"]  # the coordinator's view: JSON, untouched
    assert output_as(plain, DetectionOutput) == typed.output == kind_output(plain)
    with pytest.raises(ValidationError, match=r"output\.width"):
        parse_result(orjson.dumps({**body, "output": {"model": "objects", "height": 480, "inference_ms": 1.0}}), DetectionOutput)
    failed = {**body, "ok": False, "error": "no model"}
    del failed["output"]
    assert parse_result(orjson.dumps(failed), DetectionOutput).output is None

    fused = {**body, "kind": "fusion", "output": {"method": "kalman", "group": "room", "quantity": "temperature", "window": 3,
             "estimate": 21.2, "variance": 0.02, "used": ["t1"], "rejected": [], "readings": 5, "window_start": 1.0, "window_end": 2.0,
             "state": {"estimate": 21.2, "variance": 0.02, "timestamp": 2.0}}}
    estimate = parse_result(orjson.dumps(fused), FusionOutput).output  # type: ignore[arg-type]
    assert isinstance(estimate, FusionEstimate) and estimate.state.variance == 0.02
    assert kind_output(decode(Result, orjson.dumps(fused))) == estimate


def test_the_coordinators_window_params_name_every_field_of_both_window_models() -> None:
    """`window_params` writes the fusion params as a dict (no model on the coordinator's path);
    a field added to KalmanWindow or ImuWindow fails this until it is added there too."""
    import inspect

    from edgehive.schemas.fusion import ImuWindow, KalmanWindow, window_params

    arguments = set(inspect.signature(window_params).parameters)
    for model in (KalmanWindow, ImuWindow):
        assert arguments == set(model.model_fields), model.__name__


def test_builtin_kinds_have_one_name_each_and_a_model_per_output() -> None:
    from edgehive.schemas.kinds import BUILTIN_KINDS, NOOP_KIND
    from edgehive.schemas.results import OUTPUT_MODELS

    assert len(set(BUILTIN_KINDS)) == len(BUILTIN_KINDS) == 4
    assert set(OUTPUT_MODELS) == set(BUILTIN_KINDS) - {NOOP_KIND}  # noop echoes anything


def test_counters_and_sequence_numbers_stay_within_what_json_readers_keep_exact() -> None:
    """A reading numbered 2**70 would be carried into a fusion job that no encoder can write."""
    from edgehive.schemas.sensors import SensorReading

    with pytest.raises(ValidationError):
        decode(SensorReading, b'{"v":1,"value":1.0,"seq":1180591620717411303424}')
    body = orjson.loads(encode(samples()["coordinator_stats"]))
    body["done"] = 2**60
    with pytest.raises(ValidationError):
        decode(CoordinatorStats, orjson.dumps(body))


def test_the_node_topics_schemas_take_one_message_or_a_non_empty_array() -> None:
    """nodes/{node}/jobs and nodes/{node}/results carry one message or an array of them (the
    coordinator batches what it places at once, an agent what finished together): the exported
    schemas say so to non-Python clients, and refuse an empty array."""
    import jsonschema

    result = json.loads(encode(samples()["result"]))
    job = json.loads(encode(samples()["job"]))
    for name, one in (("node_results", result), ("node_jobs", job)):
        schema = json.loads(render_all()[f"{name}.schema.json"])
        validator = jsonschema.Draft202012Validator(schema)
        assert validator.is_valid(one) and validator.is_valid([one, one])
        assert not validator.is_valid([]), name
        assert not validator.is_valid([{**one, "prority": 3}]), name
