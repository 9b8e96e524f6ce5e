"""`edgehive frigate`: Frigate's events, as Frigate publishes them (the payloads of its
docs/integrations/mqtt.md, sent by the real mosquitto_pub), judged by a real coordinator and a
real agent running real models on real photos, on both brokers; the verdict on
`results/frigate/{camera}`, the Home Assistant configs read with mosquitto_sub, and the
sub-label calls as a local HTTP server received them."""

from __future__ import annotations

import http.server
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import orjson
import pytest
from harness import AuthAmqtt, AuthMosquitto, Fleet, Recorder, call_failed, run_fleet, wait_nodes_online, wait_until
from pydantic import ValidationError
from vision_fixtures import REFERENCE_FACE, box_iou, models_dir, photo  # noqa: F401  (fixture)

from edgehive.bus import describe_validation_error
from edgehive.frigate.api import FrigateApi
from edgehive.frigate.events import SnapshotParser, parse_event
from edgehive.frigate.sublabel import SubLabels
from edgehive.schemas.frigate import FrigateVerdict

# The `after` object of Frigate's documented `frigate/events` message (docs/integrations/mqtt.md).
DOC_AFTER: dict[str, Any] = {
    "id": "1607123955.475377-mxklsc", "camera": "front_door", "frame_time": 1607123962.082975,
    "snapshot": {"frame_time": 1607123965.975463, "box": [415, 489, 528, 700], "area": 12728, "region": [260, 446, 660, 846],
                 "score": 0.77546, "attributes": []},
    "label": "person", "sub_label": ["John Smith", 0.79], "top_score": 0.958984375, "false_positive": False,
    "start_time": 1607123955.475377, "end_time": None, "score": 0.87890625, "box": [432, 496, 544, 854], "area": 40096,
    "ratio": 1.251397, "region": [218, 440, 693, 915], "current_zones": ["yard", "driveway"], "entered_zones": ["yard", "driveway"],
    "thumbnail": None, "has_snapshot": False, "has_clip": False, "active": True, "stationary": False, "motionless_count": 0,
    "position_changes": 2, "attributes": {"face": 0.86}, "current_attributes": [{"label": "face", "box": [442, 506, 534, 524], "score": 0.86}],
    "current_estimated_speed": 0.77, "average_estimated_speed": 14.31, "velocity_angle": 180,
    "recognized_license_plate": "ABC12345", "recognized_license_plate_score": 0.933451,
}

PIPELINES = {
    "frigate.front_door": {"model": "objects", "tiles": "off", "stages": [{"model": "face-far", "on": ["person"]}]},
    "frigate.yard": {"model": "objects", "tiles": "off"},
    "frigate.porch": {"model": "objects", "tiles": "off"},
}


def event(kind: str, event_id: str, camera: str, label: str = "person", **changes: Any) -> bytes:
    """A `frigate/events` message in Frigate's documented shape: `after` is the doc's, with these changes."""
    after = {**DOC_AFTER, "id": event_id, "camera": camera, "label": label, **changes}
    before = {**after, "false_positive": kind == "new"}  # Frigate's first message follows the object's false-positive phase
    return orjson.dumps({"type": kind, "before": before, "after": after})


def jpeg(name: str) -> bytes:
    return cv2.imencode(".jpg", photo(name), [cv2.IMWRITE_JPEG_QUALITY, 92])[1].tobytes()


def frigate_pub(fleet: Fleet, topic: str, payload: bytes, retain: bool = False, tmp: Path | None = None) -> None:
    """The real mosquitto_pub, QoS 1 (it waits for the broker's acknowledgement, so messages keep their order)."""
    args = ["mosquitto_pub", "-p", str(fleet.broker.port), "-q", "1", "-t", topic]
    if retain:
        args.append("-r")
    if tmp is not None:  # binary: from a file, as Frigate's JPEG would be sent
        path = tmp / f"payload-{abs(hash(payload))}.bin"
        path.write_bytes(payload)
        args += ["-f", str(path)]
    else:
        args += ["-m", payload.decode()]
    subprocess.run(args, check=True, timeout=30)


class Recorded(http.server.BaseHTTPRequestHandler):
    """Frigate's `POST /api/events/{id}/sub_label`, recorded; ids starting with `missing` get Frigate's 404."""

    calls: list[tuple[str, dict[str, Any]]]

    def do_POST(self) -> None:
        body = orjson.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
        self.calls.append((self.path, body))
        event_id = self.path.split("/")[3]
        found = not event_id.startswith("missing")
        message = f"Event {event_id} sub label set to {body['subLabel']}" if found else f"Event {event_id} not found."
        reply = orjson.dumps({"success": found, "message": message})
        self.send_response(200 if found else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def frigate_api() -> Iterator[tuple[str, list[tuple[str, dict[str, Any]]]]]:
    """A local HTTP server standing in for Frigate's API: (its URL, the calls it received)."""
    calls: list[tuple[str, dict[str, Any]]] = []
    handler = type("Handler", (Recorded,), {"calls": calls})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", calls
    server.shutdown()
    server.server_close()


def verdicts(recorder: Recorder, camera: str) -> list[dict[str, Any]]:
    return recorder.json(f"results/frigate/{camera}")


def verdict_of(recorder: Recorder, camera: str, event_id: str, timeout_s: float = 60) -> dict[str, Any]:
    found = wait_until(lambda: [v for v in verdicts(recorder, camera) if v["event_id"] == event_id], timeout_s, f"the verdict on {event_id}")
    FrigateVerdict.model_validate_json(orjson.dumps(found[0]))  # the documented schema holds
    return found[0]


def bridge_online(recorder: Recorder) -> None:
    wait_until(lambda: any(s.get("raw") == "online" for s in recorder.json("frigate/status")), 30, "the bridge online")


def ha_configs(port: int, wanted: set[str]) -> dict[str, dict[str, Any]]:
    """Retained discovery configs read with the real mosquitto_sub, until every topic in `wanted` came."""
    configs: dict[str, dict[str, Any]] = {}
    with subprocess.Popen(["mosquitto_sub", "-p", str(port), "-t", "homeassistant/#", "-v", "-W", "30"], stdout=subprocess.PIPE, text=True) as sub:
        assert sub.stdout is not None
        try:
            for line in sub.stdout:
                topic, payload = line.rstrip("\n").split(" ", 1)
                configs[topic] = orjson.loads(payload)
                if wanted <= set(configs):
                    break
        finally:
            sub.kill()
    assert wanted <= set(configs), f"only {sorted(configs)} within 30 s"
    return configs


@pytest.mark.integration
def test_frigate_events_get_a_second_opinion_from_the_fleet(
    fleet: Fleet, recorder: Recorder, models_dir: Path, prefix: str, tmp_path: Path, frigate_api: tuple[str, list[Any]]
) -> None:
    url, calls = frigate_api
    fleet.coordinator(EDGEHIVE_CAMERAS=orjson.dumps(PIPELINES).decode())
    fleet.agent("pi-1", EDGEHIVE_MODELS_DIR=str(models_dir), EDGEHIVE_MODELS="objects,face-far", EDGEHIVE_WORKERS="1", EDGEHIVE_SLOTS="1")
    wait_nodes_online(recorder, 1, timeout_s=60)
    # The astronaut's snapshot is retained before the bridge even starts (it gets it on subscribing), then
    # her event comes: confirmed, with her face. (A generous max age: a slow start must not make it stale.)
    frigate_pub(fleet, "frigate/front_door/person/snapshot", jpeg("astronaut"), retain=True, tmp=tmp_path)
    fleet.frigate(EDGEHIVE_FRIGATE_URL=url, EDGEHIVE_FRIGATE_SNAPSHOT_MAX_AGE_S="600")
    bridge_online(recorder)
    frigate_pub(fleet, "frigate/events", event("new", "1607123955.475377-mxklsc", "front_door"))
    astronaut = verdict_of(recorder, "front_door", "1607123955.475377-mxklsc")
    assert astronaut["ok"] is True and astronaut["confirmed"] is True, astronaut
    assert astronaut["label"] == "person" and astronaut["frigate_score"] == 0.958984375 and astronaut["node"] == "pi-1"
    assert astronaut["score"] >= 0.5 and [d["label"] for d in astronaut["detections"]] == ["person"]
    assert astronaut["models"] == ["objects", "face-far"] and astronaut["source"] == "frigate.front_door"
    [face] = astronaut["stages"][0]["detections"]
    assert face["label"] == "face" and box_iou(face["box"], REFERENCE_FACE) >= 0.5
    assert astronaut["sub_label"] == "confirmed" and astronaut["elapsed_s"] >= astronaut["job_s"] > 0

    # A "person" whose snapshot comes after the event and shows a cup of coffee: not confirmed.
    frigate_pub(fleet, "frigate/events", event("new", "1607123999.000001-coffee", "yard"))
    frigate_pub(fleet, "frigate/yard/person/snapshot", jpeg("coffee"), retain=True, tmp=tmp_path)
    coffee = verdict_of(recorder, "yard", "1607123999.000001-coffee")
    assert coffee["ok"] is True and coffee["confirmed"] is False and "score" not in coffee, coffee
    assert [d["label"] for d in coffee["detections"]] == ["coffee cup"] and coffee["sub_label"] == "unconfirmed"

    # Frigate's updates (a better snapshot) do not re-judge an event; the next event of the camera is judged.
    frigate_pub(fleet, "frigate/front_door/person/snapshot", jpeg("hubble_deep_field"), retain=True, tmp=tmp_path)
    frigate_pub(fleet, "frigate/events", event("update", "1607123955.475377-mxklsc", "front_door"))
    frigate_pub(fleet, "frigate/events", event("end", "1607123955.475377-mxklsc", "front_door", end_time=1607123970.0))
    frigate_pub(fleet, "frigate/events", event("new", "1607124100.000002-deep", "front_door"))
    deep = verdict_of(recorder, "front_door", "1607124100.000002-deep")
    assert deep["ok"] is True and deep["confirmed"] is False and deep["detections"] == [] and deep["stages"] == [{"model": "face-far", "detections": []}]
    assert [v["event_id"] for v in verdicts(recorder, "front_door")] == ["1607123955.475377-mxklsc", "1607124100.000002-deep"]

    # A snapshot the agent cannot decode: the job fails, and the verdict says why.
    frigate_pub(fleet, "frigate/porch/dog/snapshot", b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8, retain=True, tmp=tmp_path)
    frigate_pub(fleet, "frigate/events", event("new", "1607124200.000003-broken", "porch", label="dog"))
    broken = verdict_of(recorder, "porch", "1607124200.000003-broken")
    assert broken["ok"] is False and broken["confirmed"] is False and "corrupt JPEG" in broken["error"], broken

    # Frigate's API got one sub label per judged event, with edgehive's score when confirmed.
    wait_until(lambda: len(calls) >= 3, 30, "three sub-label calls")
    by_path = dict(calls)
    assert by_path["/api/events/1607123955.475377-mxklsc/sub_label"] == {"subLabel": "confirmed", "subLabelScore": round(astronaut["score"], 4)}
    assert by_path["/api/events/1607123999.000001-coffee/sub_label"] == {"subLabel": "unconfirmed"}
    assert by_path["/api/events/1607124100.000002-deep/sub_label"] == {"subLabel": "unconfirmed"}
    assert len(calls) == 3  # none for the broken snapshot's failed job

    # Home Assistant: a binary sensor and a score per Frigate camera, on the bridge's device.
    uid = f"edgehive_{prefix.replace('-', '_').replace('/', '_')}_frigate"
    wanted = {f"homeassistant/binary_sensor/{uid}_{camera}_confirmed/config" for camera in ("front_door", "yard", "porch")}
    wanted |= {f"homeassistant/sensor/{uid}_{camera}_score/config" for camera in ("front_door", "yard", "porch")}
    configs = ha_configs(fleet.broker.port, wanted)
    confirmed = configs[f"homeassistant/binary_sensor/{uid}_front_door_confirmed/config"]
    assert confirmed["name"] == "front_door confirmed" and confirmed["state_topic"] == f"{prefix}/results/frigate/front_door"
    assert confirmed["availability_topic"] == f"{prefix}/frigate/status" and "value_json.confirmed" in confirmed["value_template"]
    assert (confirmed["payload_on"], confirmed["payload_off"]) == ("ON", "OFF") and confirmed["unique_id"] == f"{uid}_front_door_confirmed"
    score = configs[f"homeassistant/sensor/{uid}_yard_score/config"]
    assert score["state_topic"] == f"{prefix}/results/frigate/yard" and "value_json.score" in score["value_template"]
    assert confirmed["device"] == score["device"] and confirmed["device"]["name"] == f"edgehive Frigate bridge ({prefix})"
    assert fleet.alive("frigate") and "Traceback" not in fleet.log("frigate")


@pytest.mark.integration
def test_bad_frigate_input_is_reported_and_each_event_still_gets_its_verdict(fleet: Fleet, recorder: Recorder, tmp_path: Path) -> None:
    """No fleet behind it: every event ends in a verdict that says why, every bad message in an error report."""
    fleet.frigate(EDGEHIVE_FRIGATE_CAMERAS="front_door,yard,porch", EDGEHIVE_FRIGATE_MAX_SNAPSHOT_BYTES="4096",
                  EDGEHIVE_FRIGATE_SNAPSHOT_WAIT_S="1", EDGEHIVE_FRIGATE_JOB_TIMEOUT_S="2")
    bridge_online(recorder)

    def reasons() -> list[str]:
        return [e["reason"] for e in recorder.json("errors")]

    frigate_pub(fleet, "frigate/events", b'{"type": "new", "after": {"id": "x"')  # cut short
    frigate_pub(fleet, "frigate/events", orjson.dumps({"type": "new", "before": None, "after": {**DOC_AFTER, "camera": "front door!"}}))
    frigate_pub(fleet, "frigate/events", event("new", "1607125000.1-garage", "garage"))  # not one of EDGEHIVE_FRIGATE_CAMERAS
    frigate_pub(fleet, "frigate/front_door/person/snapshot", b"GIF89a not a jpeg", tmp=tmp_path)
    frigate_pub(fleet, "frigate/yard/person/snapshot", jpeg("astronaut"), tmp=tmp_path)  # over 4096 bytes
    frigate_pub(fleet, "frigate/events", event("new", "1607125000.2-big", "yard"))
    frigate_pub(fleet, "frigate/events", event("new", "1607125000.3-none", "porch"))  # its snapshot never comes
    wait_until(lambda: any("no snapshot on frigate/porch/person/snapshot" in r for r in reasons()), 30, "the missing snapshot reported")
    found = reasons()
    assert any("JSON" in r or "EOF" in r for r in found), found
    assert any("'front door!'" in r and "camera" in r for r in found), found
    assert any("'garage'" in r and "EDGEHIVE_FRIGATE_CAMERAS" in r for r in found), found
    assert any("not a JPEG" in r for r in found), found
    assert any("exceeds the 4096-byte limit" in r for r in found), found

    big = verdict_of(recorder, "yard", "1607125000.2-big")
    assert big["ok"] is False and "was refused" in big["error"] and "4096" in big["error"]
    none = verdict_of(recorder, "porch", "1607125000.3-none")
    assert none["ok"] is False and none["confirmed"] is False and "no snapshot" in none["error"]

    # A good snapshot, but no coordinator: the job times out into a verdict, not into silence.
    frigate_pub(fleet, "frigate/front_door/person/snapshot", b"\xff\xd8\xff\xe0tiny", tmp=tmp_path)
    frigate_pub(fleet, "frigate/events", event("new", "1607125000.4-lost", "front_door"))
    lost = verdict_of(recorder, "front_door", "1607125000.4-lost")
    assert lost["ok"] is False and "no result from the fleet within 2 s" in lost["error"] and lost["job_s"] > 0
    # Started mid-event: an `update` of an event never seen is judged like a `new` one; an `end` is not.
    # (Both on one camera, whose snapshots go one at a time: a verdict on the ended one would come first.)
    frigate_pub(fleet, "frigate/yard/person/snapshot", b"\xff\xd8\xff\xe0tiny", tmp=tmp_path)
    frigate_pub(fleet, "frigate/events", event("end", "1607125000.5-ended", "yard", end_time=1607125001.0))
    frigate_pub(fleet, "frigate/events", event("update", "1607125000.6-midway", "yard"))
    assert verdict_of(recorder, "yard", "1607125000.6-midway")["ok"] is False  # no fleet: timed out, but judged
    assert [v["event_id"] for v in verdicts(recorder, "yard")] == ["1607125000.2-big", "1607125000.6-midway"]
    assert fleet.alive("frigate")
    assert verdicts(recorder, "garage") == []

    # The cameras named in EDGEHIVE_FRIGATE_CAMERAS were announced at start; when Home Assistant
    # comes back (its retained configs lost, say), announcing itself brings them back.
    uid = f"edgehive_{recorder.prefix.replace('-', '_').replace('/', '_')}_frigate"
    topic = f"homeassistant/binary_sensor/{uid}_porch_confirmed/config"
    assert ha_configs(fleet.broker.port, {topic})[topic]["state_topic"] == f"{recorder.prefix}/results/frigate/porch"
    subprocess.run(["mosquitto_pub", "-p", str(fleet.broker.port), "-q", "1", "-r", "-n", "-t", topic], check=True, timeout=30)
    frigate_pub(fleet, "homeassistant/status", b"online")
    assert ha_configs(fleet.broker.port, {topic})[topic]["name"] == "porch confirmed"


ACCOUNTS = "coordinator:pw-coordinator sink:pw-sink pi-1:pw-pi-1:agent frigate:pw-frigate:frigate bridge:pw-bridge:frigate-bridge"


@pytest.fixture(params=["mosquitto", "amqtt"])
def secure(request: pytest.FixtureRequest, prefix: str) -> Iterator[AuthMosquitto | AuthAmqtt]:
    """Either broker with accounts and the ACL's roles, Frigate and the bridge among them."""
    broker = AuthMosquitto(ACCOUNTS, prefix) if request.param == "mosquitto" else AuthAmqtt(ACCOUNTS, prefix)
    broker.start()
    yield broker
    broker.close()


@pytest.mark.integration
def test_with_broker_accounts_frigate_and_the_bridge_log_in_with_their_own_roles(
    secure: AuthMosquitto | AuthAmqtt, prefix: str, models_dir: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    watcher = Recorder(secure.url_for("sink"), prefix)
    fleets = run_fleet(secure, prefix, tmp_path, lambda: call_failed(request))
    fleet = next(fleets)
    try:
        fleet.coordinator(EDGEHIVE_MQTT_URL=secure.url_for("coordinator"), EDGEHIVE_CAMERAS=orjson.dumps(PIPELINES).decode())
        fleet.agent("pi-1", EDGEHIVE_MQTT_URL=secure.url_for("pi-1"), EDGEHIVE_MODELS_DIR=str(models_dir), EDGEHIVE_MODELS="objects,face-far")
        fleet.frigate(EDGEHIVE_MQTT_URL=secure.url_for("bridge"))
        wait_nodes_online(watcher, 1, timeout_s=60)
        bridge_online(watcher)
        snapshot = tmp_path / "snapshot.jpg"
        snapshot.write_bytes(jpeg("astronaut"))
        for args in (["-r", "-t", "frigate/front_door/person/snapshot", "-f", str(snapshot)],
                     ["-t", "frigate/events", "-m", event("new", "1607123955.475377-secure", "front_door").decode()]):
            done = secure.mqtt("mosquitto_pub", "-q", "1", *args, user="frigate")
            assert done.returncode == 0, done.stderr
        verdict = verdict_of(watcher, "front_door", "1607123955.475377-secure")
        assert verdict["ok"] is True and verdict["confirmed"] is True and verdict["models"] == ["objects", "face-far"], verdict
        assert not [e for e in watcher.json("errors") if "not authorised" in e.get("reason", "").lower()]
    finally:
        watcher.close()
        next(fleets, None)


def test_frigate_documented_event_parses_and_bad_ones_say_why() -> None:
    parsed = parse_event("frigate/events", orjson.dumps({"type": "update", "before": DOC_AFTER, "after": DOC_AFTER}))
    assert (parsed.type, parsed.after.id, parsed.after.camera, parsed.after.label) == ("update", "1607123955.475377-mxklsc", "front_door", "person")
    assert parsed.after.best_score == 0.958984375
    with pytest.raises(ValueError, match="empty event"):
        parse_event("frigate/events", b"")
    for payload, reason in ((b"[1]", "should be an object"), (orjson.dumps({"type": "moved", "after": DOC_AFTER}), "'new', 'update' or 'end'"),
                            (orjson.dumps({"type": "new"}), "after: Field required"), (b'{"type": "new", "after": {"id"', "Invalid JSON")):
        with pytest.raises(ValidationError) as caught:
            parse_event("frigate/events", payload)
        assert reason in describe_validation_error(caught.value)  # what the errors topic says


def test_a_snapshot_is_checked_and_its_refusal_told() -> None:
    refused: list[tuple[str, str, str]] = []
    parse = SnapshotParser(100, lambda *item: refused.append(item))
    assert parse("frigate/door/person/snapshot", b"\xff\xd8\xff" + b"\x00" * 50) is not None
    assert parse("frigate/door/person/snapshot", b"") is None  # a cleared retained snapshot: nothing to say
    with pytest.raises(ValueError, match="not a JPEG"):
        parse("frigate/door/Car/snapshot", b"PNG....")
    with pytest.raises(ValueError, match="exceeds the 100-byte limit"):
        parse("frigate/door/person/snapshot", b"\xff\xd8\xff" + b"\x00" * 200)
    assert [(c, lbl) for c, lbl, _ in refused] == [("door", "car"), ("door", "person")]


def test_sub_label_calls_report_frigate_errors_and_an_absent_frigate(frigate_api: tuple[str, list[Any]]) -> None:
    url, calls = frigate_api
    reports: list[tuple[str, str]] = []
    labels = SubLabels(FrigateApi(url, 5.0), lambda where, reason: reports.append((where, reason)))
    assert labels.post("1607123955.475377-mxklsc", "confirmed", 0.87) is True
    assert labels.post("missing-1", "confirmed", None) is False
    assert calls == [("/api/events/1607123955.475377-mxklsc/sub_label", {"subLabel": "confirmed", "subLabelScore": 0.87}),
                     ("/api/events/missing-1/sub_label", {"subLabel": "confirmed"})]
    assert reports[0][0] == f"{url}/api/events/missing-1/sub_label" and "404" in reports[0][1] and "not found" in reports[0][1]
    with socket_closed() as dead:
        absent = SubLabels(FrigateApi(dead, 2.0), lambda where, reason: reports.append((where, reason)))
        assert absent.post("1607123955.475377-mxklsc", "confirmed", 0.9) is False
    assert "did not answer" in reports[1][1] and "EDGEHIVE_FRIGATE_URL" in reports[1][1]


class socket_closed:
    """The URL of a port nobody listens on."""

    def __enter__(self) -> str:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *exc: object) -> None:
        pass


def test_the_compose_override_adds_the_bridge_with_its_own_account_and_keeps_the_fleets() -> None:
    """deploy/frigate.compose.yml, as docs/DEPLOY.md runs it on top of docker-compose.yml."""
    import json

    import jsonschema
    import yaml

    from edgehive.broker.accounts import parse_users
    from edgehive.cli import settings_model

    root = Path(__file__).resolve().parents[1]
    override = yaml.safe_load((root / "deploy" / "frigate.compose.yml").read_text())
    base = yaml.safe_load((root / "docker-compose.yml").read_text())
    schema = json.loads((Path(__file__).with_name("data") / "compose-spec.json").read_text())
    assert list(jsonschema.Draft201909Validator(schema).iter_errors(override)) == []
    bridge = override["services"]["frigate-bridge"]
    assert bridge["command"] == ["frigate"] and bridge["healthcheck"]["test"] == ["CMD", "edgehive", "healthcheck", "mqtt"]
    fields = {f"EDGEHIVE_{name.upper()}" for name in settings_model("frigate").model_fields}
    assert set(bridge["environment"]) <= fields
    users = override["services"]["broker"]["environment"]["EDGEHIVE_BROKER_USERS"]
    assert users.startswith(base["services"]["broker"]["environment"]["EDGEHIVE_BROKER_USERS"] + " ")  # the fleet's accounts stay
    roles = {account.name: account.role for account in parse_users(users)}
    assert roles["frigate"] == "frigate" and roles["frigate-bridge"] == "frigate-bridge"
    assert bridge["environment"]["EDGEHIVE_MQTT_URL"].startswith("mqtt://frigate-bridge:")


@pytest.mark.integration
def test_the_sink_writes_verdicts_as_points_and_does_not_refuse_them(fleet: Fleet, recorder: Recorder, tmp_path: Path) -> None:
    """`results/frigate/{camera}` lies in the results tree the sink reads, but is a verdict, not a
    job's result: the sink writes it as a `frigate` point instead of reporting it on `errors`."""
    file = tmp_path / "telemetry.lp"
    fleet.sink(EDGEHIVE_TELEMETRY_FILE=str(file), EDGEHIVE_SPOOL_DIR=str(tmp_path / "spool"), EDGEHIVE_SINK_FLUSH_S="0.2")
    fleet.frigate(EDGEHIVE_FRIGATE_SNAPSHOT_WAIT_S="1")
    bridge_online(recorder)
    wait_until(lambda: file.exists() and b"\nsink," in b"\n" + file.read_bytes(), 30, "the sink writing")
    frigate_pub(fleet, "frigate/events", event("new", "1607126000.1-alone", "yard"))  # no snapshot: ok false, said why
    verdict = verdict_of(recorder, "yard", "1607126000.1-alone")
    assert verdict["ok"] is False
    line = wait_until(lambda: next((t for t in file.read_text().splitlines() if t.startswith("frigate,")), None), 30, "a frigate point")
    assert line.startswith("frigate,camera=yard,label=person ") and 'event_id="1607126000.1-alone"' in line
    assert "ok=0i" in line and "confirmed=0i" in line and 'error="no snapshot' in line
    assert not [e for e in recorder.json("errors") if e["source"].startswith("sink")], recorder.json("errors")
