"""Home Assistant MQTT discovery: what a Home Assistant on the same broker would read, taken
with the real mosquitto_sub (the configs are retained, so they arrive on subscribe)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import orjson
import pytest
from harness import Fleet, Recorder, wait_until

pytestmark = pytest.mark.integration

DEMO_JPEG = Path(__file__).resolve().parent.parent / "sensors" / "demo" / "01-astronaut.jpg"


def retained(port: int, count: int) -> dict[str, dict]:
    """The configs of `count` distinct topics, read with the real mosquitto_sub. Counted by topic,
    not by message: a config published while mosquitto_sub subscribes may arrive twice (once
    retained, once live), as it does on amqtt."""
    configs: dict[str, dict] = {}
    with subprocess.Popen(["mosquitto_sub", "-p", str(port), "-t", "homeassistant/#", "-v", "-W", "20"],
                          stdout=subprocess.PIPE, text=True) as sub:
        assert sub.stdout is not None
        try:
            for line in sub.stdout:
                topic, payload = line.rstrip("\n").split(" ", 1)
                configs[topic] = orjson.loads(payload)
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
    configs = retained(fleet.broker.port, 4)
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
    configs = retained(fleet.broker.port, 2)
    camera = next(c for t, c in configs.items() if t.startswith("homeassistant/camera/"))
    objects = next(c for t, c in configs.items() if t.startswith("homeassistant/sensor/"))
    assert camera["topic"] == f"{prefix}/snapshots/door" and camera["name"] == "door detections"
    assert objects["state_topic"] == f"{prefix}/results/detections/door" and "detections | length" in objects["value_template"]
    assert camera["device"] == objects["device"] and camera["availability_topic"] == f"{prefix}/coordinator/status"


def test_a_camera_that_keeps_labels_gets_a_count_per_label(fleet: Fleet, recorder: Recorder, prefix: str) -> None:
    fleet.coordinator(EDGEHIVE_CAMERAS='{"driveway": {"labels": ["person", "Coffee cup"]}}')
    coordinator_online(recorder)
    subprocess.run(["mosquitto_pub", "-p", str(fleet.broker.port), "-t", f"{prefix}/frames/driveway", "-f", str(DEMO_JPEG)], check=True)
    configs = retained(fleet.broker.port, 4)
    by_name = {c["name"]: c for c in configs.values()}
    assert set(by_name) == {"driveway detections", "driveway objects", "driveway person", "driveway coffee cup"}
    person, cup = by_name["driveway person"], by_name["driveway coffee cup"]
    assert person["state_topic"] == f"{prefix}/results/detections/driveway" and "'equalto', \"person\"" in person["value_template"]
    assert cup["unique_id"].endswith("_coffee_cup") and f"homeassistant/sensor/{cup['unique_id']}/config" in configs
