"""Home Assistant MQTT discovery for the Frigate bridge: per Frigate camera, a binary sensor
"{camera} confirmed" and a sensor "{camera} edgehive score", both read from the verdicts on
`results/frigate/{camera}`, as entities of one device, "edgehive Frigate bridge".

Built with the config every edgehive service announces (schemas/homeassistant.py); retained under
`{ha_prefix}/{component}/{unique id}/config`, published when a camera's first event arrives and
again whenever Home Assistant announces itself (`online` on `{ha_prefix}/status`).
Availability follows the bridge's own retained `frigate/status` (its will says `offline`).
"""

from __future__ import annotations

from typing import Any

import orjson

from edgehive import __version__
from edgehive.schemas import Topics
from edgehive.schemas.frigate import VERDICT_KIND
from edgehive.schemas.homeassistant import Message, entity_config, slug


def device_id(topics: Topics) -> str:
    return f"edgehive_{slug(topics.prefix)}_frigate"


def device(topics: Topics) -> dict[str, Any]:
    return {"identifiers": [device_id(topics)], "name": f"edgehive Frigate bridge ({topics.prefix})",
            "manufacturer": "edgehive", "model": "Frigate second opinion", "sw_version": __version__}


# A failed verdict (no snapshot, no result) confirms nothing; its score is left as it was.
CONFIRMED = "{{ 'ON' if value_json.confirmed else 'OFF' }}"
SCORE = "{% if value_json.ok %}{{ (value_json.score or 0) | round(3) }}{% else %}{{ this.state }}{% endif %}"
ATTRIBUTES = ("{{ {'event_id': value_json.event_id, 'label': value_json.label, 'frigate_score': value_json.frigate_score, "
              "'ok': value_json.ok, 'models': value_json.models, 'node': value_json.node, 'error': value_json.error} | tojson }}")


def camera_configs(ha_prefix: str, topics: Topics, camera: str) -> list[Message]:
    """(topic, retained config) of one Frigate camera's entities."""
    uid = f"edgehive_{slug(topics.prefix)}_frigate_{slug(camera)}"
    state = topics.result(VERDICT_KIND, camera)
    common = {"state_topic": state, "json_attributes_topic": state, "json_attributes_template": ATTRIBUTES,
              "availability_topic": topics.frigate_status, "payload_available": "online", "payload_not_available": "offline"}
    return [entity_config(ha_prefix, "binary_sensor", f"{uid}_confirmed", f"{camera} confirmed", device(topics),
                          value_template=CONFIRMED, payload_on="ON", payload_off="OFF", **common),
            entity_config(ha_prefix, "sensor", f"{uid}_score", f"{camera} edgehive score", device(topics),
                          value_template=SCORE, state_class="measurement", **common)]


# The components of the bridge's entities: where its retained configs are read back from.
COMPONENTS = ("binary_sensor", "sensor")


def ours(ha_prefix: str, topics: Topics, topic: str) -> bool:
    """`topic` is a config topic this bridge may have published (its unique id starts with the
    device id): cheap, before any parsing."""
    levels, base = topic.split("/"), ha_prefix.split("/")
    return (len(levels) == len(base) + 3 and levels[:len(base)] == base and levels[-1] == "config"
            and levels[-3] in COMPONENTS and levels[-2].startswith(device_id(topics) + "_"))


def stale(ha_prefix: str, topics: Topics, found: dict[str, bytes], cameras: set[str]) -> list[str]:
    """The topics of retained configs of this bridge's device (origin edgehive, the device of this
    prefix, the state topic a verdict topic of this prefix) whose camera is not in `cameras`."""
    base = topics.result(VERDICT_KIND, "x")[:-1]
    out = []
    for topic, payload in sorted(found.items()):
        try:
            config: Any = orjson.loads(payload)
        except orjson.JSONDecodeError:
            continue
        if not isinstance(config, dict) or not ours(ha_prefix, topics, topic):
            continue
        origin, dev, state = config.get("origin"), config.get("device"), config.get("state_topic")
        if not (isinstance(origin, dict) and origin.get("name") == "edgehive" and isinstance(dev, dict)
                and dev.get("identifiers") == [device_id(topics)] and isinstance(state, str) and state.startswith(base)):
            continue
        camera = state[len(base):]
        if camera and "/" not in camera and camera not in cameras:
            out.append(topic)
    return out
