"""Home Assistant devices as the coordinator's core announces them: when a node's configs go out,
when they go out again, and when they are taken back (the broker-level view, with mosquitto_sub
and real agents, is tests/test_home_assistant.py)."""

from __future__ import annotations

from typing import Any

import orjson
from core_rig import Rig

from edgehive import __version__
from edgehive.coordinator.events import Actions, HomeAssistantStatus, NodeCleared


def configs(actions: Actions) -> dict[str, dict[str, Any]]:
    """Retained discovery configs published (topic → config); a removal maps to {}."""
    return {m.topic: orjson.loads(m.payload) if m.payload else {} for m in actions.publish
            if m.topic.startswith("homeassistant/") and m.retain}


def node_topics(found: dict[str, dict[str, Any]], node: str) -> set[str]:
    return {t for t in found if f"_node_{node}_" in t}


def test_a_node_s_birth_announces_its_device_once_and_a_new_version_again() -> None:
    rig = Rig(ha_discovery_prefix="homeassistant")
    before = len(rig.log.publish)
    rig.node("pi-1", version="1.2.3")
    found = configs(Actions(publish=rig.log.publish[before:]))
    assert len(node_topics(found, "pi-1")) == 8  # online, CPU, memory, temperature, jobs/s, service time, in flight, throttled
    device = next(iter(found.values()))["device"]
    assert device["name"] == "pi-1" and device["sw_version"] == "1.2.3" and device["via_device"] == "edgehive_rig_v1"
    assert all(c["origin"] == {"name": "edgehive", "sw_version": __version__} for c in found.values())
    mark = len(rig.log.publish)
    rig.node("pi-1", version="1.2.3", boot="b2")  # the agent restarted: same device, nothing to say
    assert configs(Actions(publish=rig.log.publish[mark:])) == {}
    mark = len(rig.log.publish)
    rig.node("pi-1", version="1.2.4", boot="b3")  # upgraded: the device says so
    again = configs(Actions(publish=rig.log.publish[mark:]))
    assert node_topics(again, "pi-1") == node_topics(found, "pi-1")
    assert {c["device"]["sw_version"] for c in again.values()} == {"1.2.4"}


def test_home_assistant_s_birth_brings_every_config_again_and_its_will_nothing() -> None:
    rig = Rig(ha_discovery_prefix="homeassistant")
    rig.node("pi-1")
    rig.frame("door", model="objects")
    everything = configs(rig.log)
    online = configs(rig.step(HomeAssistantStatus("homeassistant/status", online=True)))
    assert set(online) == set(everything) and online == everything
    assert {c["name"] for c in online.values()} >= {"Coordinator online", "Nodes online", "Queue", "Failures", "door detections", "CPU"}
    assert configs(rig.step(HomeAssistantStatus("homeassistant/status", online=False))) == {}


def test_a_node_dead_for_forget_after_leaves_the_fleet_and_home_assistant() -> None:
    rig = Rig(ha_discovery_prefix="homeassistant", forget_after_s=60.0)
    rig.node("pi-1")
    rig.node("pi-2")
    announced = node_topics(configs(rig.log), "pi-1")
    rig.offline("pi-1", reason="will: connection lost")
    rig.advance(30)
    rig.beat("pi-2")
    assert configs(rig.tick()) == {}
    rig.advance(31)
    rig.beat("pi-2")
    out = rig.tick()
    removed = configs(out)
    assert set(removed) == announced and all(c == {} for c in removed.values())
    cleared = {m.topic for m in out.publish if m.retain and not m.payload and not m.topic.startswith("homeassistant/")}
    assert cleared == {rig.topics.capabilities("pi-1"), rig.topics.status("pi-1")}
    assert set(rig.core.registry.nodes) == {"pi-2"} and rig.core.stats(rig.now).nodes_known == 1
    echoes = rig.step(NodeCleared(rig.topics.capabilities("pi-1")), NodeCleared(rig.topics.status("pi-1")))
    assert not echoes and configs(rig.step(HomeAssistantStatus("homeassistant/status", online=True))).keys().isdisjoint(announced)


def test_with_forget_after_0_a_dead_node_stays_known() -> None:
    rig = Rig(ha_discovery_prefix="homeassistant", forget_after_s=0.0)
    rig.node("pi-1")
    rig.offline("pi-1")
    rig.advance(30 * 86400)
    rig.tick()
    assert "pi-1" in rig.core.registry.nodes


def test_home_assistant_s_births_in_a_row_bring_the_configs_once_a_window() -> None:
    rig = Rig(ha_discovery_prefix="homeassistant")
    rig.node("pi-1")
    everything = configs(rig.log)
    assert configs(rig.step(HomeAssistantStatus("homeassistant/status", online=True))) == everything
    rig.advance(5.0)
    assert configs(rig.step(HomeAssistantStatus("homeassistant/status", online=True))) == {}  # repeated at once: held back
    rig.advance(10.0)
    assert configs(rig.tick()) == {}  # still inside the window
    rig.advance(16.0)
    assert configs(rig.tick()) == everything  # the held-back one, answered when the window ended
    rig.advance(1.0)
    assert configs(rig.tick()) == {}  # once


def test_only_the_first_nodes_of_a_big_fleet_become_devices() -> None:
    rig = Rig(ha_discovery_prefix="homeassistant", ha_max_node_devices=2)
    for node in ("pi-1", "pi-2", "pi-3"):
        rig.node(node)
    found = configs(rig.log)
    assert node_topics(found, "pi-1") and node_topics(found, "pi-2")
    assert not node_topics(found, "pi-3")
    assert {c["name"] for c in found.values()} >= {"Nodes online", "Queue"}  # the coordinator's device still there
