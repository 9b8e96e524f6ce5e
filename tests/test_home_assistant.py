"""Home Assistant MQTT discovery: what a Home Assistant on the same broker would read, taken
with the real mosquitto_sub (the configs are retained, so they arrive on subscribe)."""

from __future__ import annotations

import queue
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from harness import Fleet, MosquittoSub, Recorder, bus_url, wait_nodes_online, wait_until
from jinja2.sandbox import ImmutableSandboxedEnvironment

from edgehive import __version__
from edgehive.bus import MqttBus
from edgehive.fleetview import FleetView
from edgehive.schemas import Topics

pytestmark = pytest.mark.integration

DEMO_JPEG = Path(__file__).resolve().parent.parent / "sensors" / "demo" / "01-astronaut.jpg"


def retained(port: int, count: int, coordinator: bool = True) -> dict[str, dict]:
    """The configs of `count` distinct topics, read with the real mosquitto_sub. Counted by topic,
    not by message: a config published while mosquitto_sub subscribes may arrive twice (once
    retained, once live), as it does on amqtt. `coordinator=False` leaves out the coordinator's
    own entities (nodes online, queue, ...), which every fleet has."""
    configs: dict[str, dict] = {}
    with subprocess.Popen(["mosquitto_sub", "-p", str(port), "-t", "homeassistant/#", "-v", "-W", "20"],
                          stdout=subprocess.PIPE, text=True) as sub:
        assert sub.stdout is not None
        try:
            for line in sub.stdout:
                topic, payload = line.rstrip("\n").split(" ", 1)
                config = orjson.loads(payload)
                if coordinator or "_coordinator_" not in config["unique_id"]:
                    configs[topic] = config
                if len(configs) >= count:
                    break
        finally:
            sub.kill()
    assert len(configs) >= count, f"only {sorted(configs)} within 20 s"
    return configs


def coordinator_online(recorder: Recorder) -> None:
    wait_until(lambda: any(s.get("raw") == "online" for s in recorder.json("coordinator/status")), 20, "the coordinator")


def test_fused_groups_are_announced_to_home_assistant_by_mqtt_discovery(fleet: Fleet, recorder: Recorder, prefix: str) -> None:
    spec = orjson.dumps({"room": {"quantity": "temperature"}, "motion": {"quantity": "imu", "window_count": 10}}).decode()
    fleet.coordinator(EDGEHIVE_FUSION_GROUPS=spec)
    coordinator_online(recorder)
    configs = retained(fleet.broker.port, 4, coordinator=False)
    by_name = {c["name"]: c for c in configs.values()}
    assert set(by_name) == {"room temperature", "motion roll", "motion pitch", "motion yaw"}
    room = by_name["room temperature"]
    assert room["state_topic"] == f"{prefix}/results/fusion/room" and room["unit_of_measurement"] == "°C"
    assert room["device_class"] == "temperature" and room["state_class"] == "measurement" and "output.estimate" in room["value_template"]
    assert room["availability_topic"] == f"{prefix}/coordinator/status" and room["json_attributes_topic"] == room["state_topic"]
    assert by_name["motion pitch"]["state_topic"] == f"{prefix}/results/fusion/motion" and "output.pitch" in by_name["motion pitch"]["value_template"]
    assert len({c["unique_id"] for c in by_name.values()}) == 4 and len({str(c["device"]) for c in by_name.values()}) == 1
    assert all(topic == f"homeassistant/sensor/{c['unique_id']}/config" for topic, c in configs.items())


def test_a_camera_appears_in_home_assistant_when_its_first_frame_arrives(fleet: Fleet, recorder: Recorder, prefix: str) -> None:
    fleet.coordinator()
    coordinator_online(recorder)
    subprocess.run(["mosquitto_pub", "-p", str(fleet.broker.port), "-t", f"{prefix}/frames/door", "-f", str(DEMO_JPEG)], check=True)
    configs = retained(fleet.broker.port, 2, coordinator=False)
    camera = next(c for t, c in configs.items() if t.startswith("homeassistant/camera/"))
    objects = next(c for t, c in configs.items() if t.startswith("homeassistant/sensor/"))
    assert camera["topic"] == f"{prefix}/snapshots/door" and camera["name"] == "door detections"
    assert objects["state_topic"] == f"{prefix}/results/detections/door" and "detections | length" in objects["value_template"]
    assert camera["device"] == objects["device"] and camera["availability_topic"] == f"{prefix}/coordinator/status"


def test_a_camera_that_keeps_labels_gets_a_count_per_label(fleet: Fleet, recorder: Recorder, prefix: str) -> None:
    fleet.coordinator(EDGEHIVE_CAMERAS='{"driveway": {"labels": ["person", "Coffee cup"]}}')
    coordinator_online(recorder)
    subprocess.run(["mosquitto_pub", "-p", str(fleet.broker.port), "-t", f"{prefix}/frames/driveway", "-f", str(DEMO_JPEG)], check=True)
    configs = retained(fleet.broker.port, 4, coordinator=False)
    by_name = {c["name"]: c for c in configs.values()}
    assert set(by_name) == {"driveway detections", "driveway objects", "driveway person", "driveway coffee cup"}
    person, cup = by_name["driveway person"], by_name["driveway coffee cup"]
    assert person["state_topic"] == f"{prefix}/results/detections/driveway" and "'equalto', \"person\"" in person["value_template"]
    assert cup["unique_id"].endswith("_coffee_cup") and f"homeassistant/sensor/{cup['unique_id']}/config" in configs


# -- a device per node and one for the coordinator ---------------------------------------------

NODE_ENTITIES = {"Online", "CPU", "Memory", "Temperature", "Jobs per second", "Service time", "Jobs in flight", "Throttled"}
COORDINATOR_ENTITIES = {"Coordinator online", "Nodes online", "Queue", "Jobs in flight", "Jobs per second", "Failures"}
ORIGIN = {"name": "edgehive", "sw_version": __version__}
_JINJA = ImmutableSandboxedEnvironment()  # the environment Home Assistant renders templates in


def render(template: str, payload: bytes) -> str:
    """A template rendered as Home Assistant renders one on a message: `value` is the payload,
    `value_json` is defined only when the payload is JSON."""
    variables: dict[str, Any] = {"value": payload.decode(), "this": {"state": None}}
    try:
        variables["value_json"] = orjson.loads(payload)
    except orjson.JSONDecodeError:
        pass
    return _JINJA.from_string(template).render(**variables).strip()


def last_payload(recorder: Recorder, topic: str) -> bytes:
    """The newest payload that arrived on `topic`, as it came (what Home Assistant would read)."""
    return next(p for t, p, _ in reversed(list(recorder.messages)) if t == topic)


def fleet_with_a_node(fleet: Fleet, recorder: Recorder, **env: str) -> None:
    fleet.coordinator(**env)
    coordinator_online(recorder)
    fleet.agent("pi-1")
    wait_nodes_online(recorder, 1)


def fleet_configs(port: int) -> dict[str, dict]:
    """The retained configs of the coordinator's and pi-1's devices, keyed by topic."""
    return retained(port, len(NODE_ENTITIES) + len(COORDINATOR_ENTITIES))


def test_each_node_and_the_coordinator_are_home_assistant_devices_read_from_what_they_publish(
        fleet: Fleet, recorder: Recorder, prefix: str) -> None:
    fleet_with_a_node(fleet, recorder)
    recorder.publish("jobs/submit", orjson.dumps({"kind": "sleep", "id": "warm-up", "params": {"seconds": 0.05}}))
    recorder.wait_result("warm-up")
    beats = "nodes/pi-1/heartbeat"
    wait_until(lambda: any(b["jobs_done"] == 1 for b in recorder.json(beats)), 20, "a heartbeat counting the job")
    wait_until(lambda: any(s["done"] == 1 for s in recorder.json("coordinator/stats")), 20, "stats counting the job")
    configs = fleet_configs(fleet.broker.port)
    caps = recorder.json("nodes/pi-1/capabilities")[-1]
    fleet_id = "edgehive_" + prefix.replace("-", "_").replace("/", "_")
    node = {c["name"]: c for c in configs.values() if c["device"]["identifiers"] != [fleet_id]}
    coordinator = {c["name"]: c for c in configs.values() if c["device"]["identifiers"] == [fleet_id]}
    assert set(node) == NODE_ENTITIES and set(coordinator) == COORDINATOR_ENTITIES

    # What Home Assistant's MQTT discovery documents, on every config: where it is, who made it.
    for topic, config in configs.items():
        component = topic.split("/")[1]
        assert topic == f"homeassistant/{component}/{config['unique_id']}/config" and config["origin"] == ORIGIN
        assert config["default_entity_id"].startswith(f"{component}.") and "__" not in config["default_entity_id"]
    assert len({c["unique_id"] for c in configs.values()}) == len(configs)
    device = node["CPU"]["device"]
    assert all(c["device"] == device for c in node.values())
    assert device["name"] == "pi-1" and device["model"] == caps["board"] and device["sw_version"] == caps["version"] == __version__
    assert device["via_device"] == fleet_id and len(device["identifiers"]) == 1
    assert coordinator["Queue"]["device"]["sw_version"] == __version__ and coordinator["Queue"]["device"]["name"] == f"edgehive {prefix}"

    # The node's states come straight from its own heartbeat and status, rendered as Home Assistant would.
    beat_payload, status_payload = last_payload(recorder, f"{prefix}/{beats}"), last_payload(recorder, f"{prefix}/nodes/pi-1/status")
    beat = orjson.loads(beat_payload)
    for name in NODE_ENTITIES - {"Online"}:
        config = node[name]
        assert config["state_topic"] == f"{prefix}/{beats}" and config["expire_after"] >= 1
        (available,) = config["availability"]
        assert available["topic"] == f"{prefix}/nodes/pi-1/status" and render(available["value_template"], status_payload) == "online"
        assert render(available["value_template"], b"offline") == "offline"  # a bare status typed into mosquitto_pub
    values = {name: render(node[name]["value_template"], beat_payload) for name in NODE_ENTITIES - {"Online"}}
    assert float(values["CPU"]) == beat["cpu_pct"] and float(values["Memory"]) == beat["mem_pct"]
    assert float(values["Service time"]) == beat["service_s"] > 0 and int(values["Jobs in flight"]) == beat["in_flight"]
    assert float(values["Jobs per second"]) == beat["jobs_per_s"] >= 0
    assert values["Temperature"] == ("None" if beat.get("temp_c") is None else str(beat["temp_c"]))  # None: Home Assistant's unknown
    assert values["Throttled"] == "OFF" == node["Throttled"].get("payload_off", "OFF")
    online = node["Online"]
    assert online["state_topic"] == f"{prefix}/nodes/pi-1/status" and online["device_class"] == "connectivity"
    assert render(online["value_template"], status_payload) == online["payload_on"]

    # The coordinator's from coordinator/stats.
    stats_payload = last_payload(recorder, f"{prefix}/coordinator/stats")
    stats = orjson.loads(stats_payload)
    assert render(coordinator["Nodes online"]["value_template"], stats_payload) == "1"
    assert render(coordinator["Failures"]["value_template"], stats_payload) == str(stats["failed"])
    assert coordinator["Failures"]["state_class"] == "total_increasing"
    assert all(c["availability"] == [{"topic": f"{prefix}/coordinator/status"}] for n, c in coordinator.items() if n != "Coordinator online")
    assert coordinator["Coordinator online"]["payload_on"] == "online"


def test_every_config_is_published_again_when_home_assistant_comes_online(fleet: Fleet, recorder: Recorder, prefix: str) -> None:
    fleet_with_a_node(fleet, recorder)
    configs = fleet_configs(fleet.broker.port)
    port = str(fleet.broker.port)
    with MosquittoSub(port, "homeassistant/+/+/config", options=("-R",)) as live:  # -R: no retained copies, only new messages
        subprocess.run(["mosquitto_pub", "-p", port, "-t", "homeassistant/status", "-m", "online"], check=True)
        again: dict[str, dict] = {}
        while set(again) != set(configs):
            topic, payload = live.next_message()
            again[topic] = orjson.loads(payload)
    assert again == configs


def test_a_node_that_leaves_the_fleet_has_its_configs_removed(fleet: Fleet, recorder: Recorder, prefix: str) -> None:
    fleet_with_a_node(fleet, recorder, EDGEHIVE_FORGET_AFTER_S="1")
    node_topics = {t for t, c in fleet_configs(fleet.broker.port).items() if c["device"]["name"] == "pi-1"}
    assert len(node_topics) == len(NODE_ENTITIES)
    node_retained = {f"{prefix}/nodes/pi-1/capabilities", f"{prefix}/nodes/pi-1/status"}
    view_bus = MqttBus(bus_url(fleet.broker.url), Topics(prefix), "fleetview-test", source="test")
    view = FleetView(view_bus)  # what `edgehive up` shows, watching as the node leaves
    view_bus.start(timeout_s=10)
    try:
        wait_until(lambda: "pi-1" in view.nodes, 20, "edgehive's fleet view to list pi-1")
        with MosquittoSub(str(fleet.broker.port), "homeassistant/#", f"{prefix}/nodes/pi-1/+") as sub:
            fleet.kill("pi-1", signal.SIGKILL)  # gone for good: its will says offline, then a second of silence
            removed: set[str] = set()
            while removed != node_topics | node_retained:
                topic, payload = sub.next_message()
                if payload == "(null)":  # how mosquitto_sub prints an empty payload
                    removed.add(topic)
        wait_until(lambda: "pi-1" not in view.nodes, 20, "edgehive's fleet view to drop pi-1")
        assert view_bus.errors_reported == 0  # the empty retained messages are no bad input
    finally:
        view_bus.stop()
    assert "left the fleet" in fleet.log("coordinator")
    wait_until(lambda: recorder.json("coordinator/stats")[-1]["nodes_known"] == 0, 20, "the node forgotten")


# -- configs of cameras and fusion groups no longer configured ---------------------------------

def retained_now(port: int) -> dict[str, dict]:
    """Every config retained under homeassistant/ now, read with the real mosquitto_sub as Home
    Assistant reads them when it subscribes: the retained copies arrive before a probe published
    after the subscription is known to be in place."""
    probe, first, second = f"probe/{uuid.uuid4().hex[:8]}", uuid.uuid4().hex, uuid.uuid4().hex
    lines: queue.Queue[str] = queue.Queue()
    with subprocess.Popen(["mosquitto_sub", "-p", str(port), "-v", "-W", "60", "-t", probe, "-t", "homeassistant/#"],
                          stdout=subprocess.PIPE, text=True) as sub:
        assert sub.stdout is not None
        threading.Thread(target=lambda: [lines.put(line.rstrip("\n")) for line in sub.stdout or ()], daemon=True).start()
        configs: dict[str, dict] = {}

        def read_until(token: str, republish: bool) -> None:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                if republish or deadline - time.monotonic() > 19.9:
                    subprocess.run(["mosquitto_pub", "-p", str(port), "-t", probe, "-m", token], check=True)
                try:
                    while True:
                        topic, _, payload = lines.get(timeout=0.2).partition(" ")
                        if topic == probe and payload == token:
                            return
                        if topic != probe:
                            if payload == "(null)":  # how mosquitto_sub prints an empty payload: a config cleared
                                configs.pop(topic, None)
                            else:
                                configs[topic] = orjson.loads(payload)
                except queue.Empty:
                    continue
            raise AssertionError(f"probe {token} never came back")

        try:
            read_until(first, republish=True)  # subscribed
            read_until(second, republish=False)  # and every retained copy delivered
        finally:
            sub.kill()
    return configs


def test_configs_of_cameras_and_groups_taken_out_of_the_settings_are_removed(fleet: Fleet, recorder: Recorder, prefix: str) -> None:
    port = fleet.broker.port
    fleet.coordinator(EDGEHIVE_CAMERAS='{"a": {"labels": ["person"]}, "b": {"labels": ["car"]}}',
                      EDGEHIVE_FUSION_GROUPS='{"g": {"quantity": "temperature"}}')
    coordinator_online(recorder)
    for camera in ("a", "b"):
        subprocess.run(["mosquitto_pub", "-p", str(port), "-t", f"{prefix}/frames/{camera}", "-f", str(DEMO_JPEG)], check=True)
    # Not ours: another edgehive fleet on the same broker whose prefix starts like ours (so do its
    # unique ids), and another integration's config.
    other = f"{prefix}-other"
    other_id = "edgehive_" + other.replace("-", "_").replace("/", "_")
    foreign = {
        f"homeassistant/sensor/{other_id}_g/config": {
            "name": "g temperature", "unique_id": f"{other_id}_g", "state_topic": f"{other}/results/fusion/g",
            "availability_topic": f"{other}/coordinator/status", "device": {"identifiers": [other_id]}, "origin": ORIGIN},
        "homeassistant/sensor/0x00158d0001a2b3c4_temperature/config": {
            "name": "Kitchen temperature", "unique_id": "0x00158d0001a2b3c4_temperature", "state_topic": "zigbee2mqtt/kitchen",
            "device": {"identifiers": ["zigbee2mqtt_0x00158d0001a2b3c4"]}, "origin": {"name": "Zigbee2MQTT"}},
    }
    for topic, config in foreign.items():
        subprocess.run(["mosquitto_pub", "-p", str(port), "-r", "-q", "1", "-t", topic, "-m", orjson.dumps(config).decode()], check=True)

    def of(configs: dict[str, dict], what: str) -> set[str]:
        return {c["name"] for c in configs.values() if c.get("state_topic", c.get("topic", "")).startswith(f"{prefix}/{what}")}

    def cameras_announced() -> dict[str, dict] | None:
        configs = retained_now(port)
        return configs if len(of(configs, "results/detections/") | of(configs, "snapshots/")) == 6 else None

    first = wait_until(cameras_announced, 20, "both cameras' configs")
    assert of(first, "results/fusion/") == {"g temperature"} and set(foreign) <= set(first)
    assert of(first, "results/detections/") | of(first, "snapshots/") == {
        "a detections", "a objects", "a person", "b detections", "b objects", "b car"}

    fleet.kill("coordinator", signal.SIGTERM)
    fleet.coordinator(EDGEHIVE_CAMERAS='{"a": {"labels": ["person"]}}', EDGEHIVE_FORGET_AFTER_S="1")
    # b, no longer named and sending no frame, leaves a second after the start; g at once.
    def cleared() -> dict[str, dict] | None:
        configs = retained_now(port)
        b = {n for n in of(configs, "results/detections/") | of(configs, "snapshots/") if n.startswith("b ")}
        return configs if not of(configs, "results/fusion/") and not b else None  # every one of them (cleared one by one)

    after = wait_until(cleared, 30, "b's and g's configs cleared")
    assert of(after, "results/detections/") | of(after, "snapshots/") == {"a detections", "a objects", "a person"}
    assert {t: after.get(t) for t in foreign} == foreign  # the other fleet's and Zigbee2MQTT's untouched
    assert {c["name"] for c in after.values() if c["device"]["identifiers"] == [first_fleet_id(prefix)]} >= COORDINATOR_ENTITIES
    log = fleet.log("coordinator")
    assert "clearing 1 retained configs" in log and "camera b sent no frame" in log


def first_fleet_id(prefix: str) -> str:
    return "edgehive_" + prefix.replace("-", "_").replace("/", "_")


def test_only_the_active_coordinator_clears_configs_a_standby_does_not(fleet: Fleet, recorder: Recorder, prefix: str) -> None:
    """A standby configured without the group leaves its config alone; once it takes over it
    is the active one, and clears it."""
    port = fleet.broker.port
    for name, env in (("head-a", {"EDGEHIVE_FUSION_GROUPS": '{"g": {"quantity": "temperature"}}'}), ("head-b", {})):
        fleet.coordinator(name, EDGEHIVE_COORDINATOR_ID=name, EDGEHIVE_STATE_DIR=str(fleet.workdir / f"state-{name}"), **env)
        wait_until(lambda: (recorder.json(f"coordinator/members/{name}") or [{}])[-1].get("role") == ("active" if name == "head-a" else "standby"),
                   30, f"{name} up")

    def group_config() -> dict[str, dict]:
        return {t: c for t, c in retained_now(port).items() if c.get("state_topic") == f"{prefix}/results/fusion/g"}

    assert wait_until(group_config, 20, "g's config")
    wait_until(lambda: (recorder.json("coordinator/members/head-b") or [{}])[-1].get("synced"), 30, "head-b synced")
    present = group_config()
    if "coordinator head-b is active" not in fleet.log("head-b"):  # (on a loaded machine head-a's lease may lapse)
        assert present, fleet.log("head-b")  # head-b stands by: it cleared nothing
        assert "Home Assistant" not in fleet.log("head-b"), fleet.log("head-b")
    fleet.kill("head-a", signal.SIGTERM)
    wait_until(lambda: not group_config(), 30, "g's config cleared by head-b, now active")
    log = fleet.log("head-b")
    assert log.index("coordinator head-b is active") < log.index("clearing 1 retained configs"), log


def test_the_frigate_bridge_clears_configs_of_cameras_taken_out_of_its_list(fleet: Fleet, recorder: Recorder, prefix: str) -> None:
    port = fleet.broker.port
    other = f"{prefix}-other"  # another fleet's bridge, whose unique ids start like ours
    other_id = "edgehive_" + other.replace("-", "_").replace("/", "_") + "_frigate"
    foreign_topic = f"homeassistant/binary_sensor/{other_id}_back_confirmed/config"
    foreign = {"name": "back confirmed", "unique_id": f"{other_id}_back_confirmed", "state_topic": f"{other}/results/frigate/back",
               "device": {"identifiers": [other_id]}, "origin": ORIGIN}
    subprocess.run(["mosquitto_pub", "-p", str(port), "-r", "-q", "1", "-t", foreign_topic, "-m", orjson.dumps(foreign).decode()], check=True)

    def bridge(configs: dict[str, dict]) -> set[str]:
        return {c["name"] for c in configs.values() if c.get("state_topic", "").startswith(f"{prefix}/results/frigate/")}

    fleet.frigate(EDGEHIVE_FRIGATE_CAMERAS="front,back")
    wait_until(lambda: len(bridge(retained_now(port))) == 4, 20, "both cameras' configs")
    fleet.kill("frigate", signal.SIGTERM)
    fleet.frigate(EDGEHIVE_FRIGATE_CAMERAS="front")
    # both of back's configs gone (they are cleared one after the other)
    after = wait_until(lambda: (c := retained_now(port)) and not any(n.startswith("back ") for n in bridge(c)) and c, 20, "back's configs cleared")
    assert bridge(after) == {"front confirmed", "front edgehive score"}
    assert after[foreign_topic] == foreign
    assert "clearing 2 retained configs of Frigate cameras" in fleet.log("frigate")
