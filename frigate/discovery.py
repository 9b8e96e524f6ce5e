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

from edgehive import __version__
from edgehive.schemas import Topics
from edgehive.schemas.frigate import VERDICT_KIND
from edgehive.schemas.homeassistant import Message, entity_config, slug


def device(topics: Topics) -> dict[str, Any]:
    return {"identifiers": [f"edgehive_{slug(topics.prefix)}_frigate"], "name": f"edgehive Frigate bridge ({topics.prefix})",
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
