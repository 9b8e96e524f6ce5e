"""Home Assistant MQTT discovery for the Frigate bridge: per Frigate camera, a binary sensor
"{camera} confirmed" and a sensor "{camera} edgehive score", both read from the verdicts on
`results/frigate/{camera}`, as entities of one device, "edgehive Frigate bridge".

Its own small builder rather than the coordinator's (coordinator/discovery.py): services do not
import each other (tests/test_layers.py). The configs are retained under
`{ha_prefix}/{component}/{object id}/config`, published when a camera's first event arrives and
again whenever Home Assistant announces itself (`online` on `{ha_prefix}/status`).
Availability follows the bridge's own retained `frigate/status` (its will says `offline`).
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from edgehive import __version__
from edgehive.schemas import Topics
from edgehive.schemas.frigate import VERDICT_KIND


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9_]+", "_", text.lower()).strip("_")


def device(topics: Topics) -> dict[str, Any]:
    return {"identifiers": [f"edgehive_{_slug(topics.prefix)}_frigate"], "name": f"edgehive Frigate bridge ({topics.prefix})",
            "manufacturer": "edgehive", "model": "Frigate second opinion", "sw_version": __version__}


# A failed verdict (no snapshot, no result) confirms nothing; its score is left as it was.
CONFIRMED = "{{ 'ON' if value_json.confirmed else 'OFF' }}"
SCORE = "{% if value_json.ok %}{{ (value_json.score or 0) | round(3) }}{% else %}{{ this.state }}{% endif %}"
ATTRIBUTES = ("{{ {'event_id': value_json.event_id, 'label': value_json.label, 'frigate_score': value_json.frigate_score, "
              "'ok': value_json.ok, 'models': value_json.models, 'node': value_json.node, 'error': value_json.error} | tojson }}")


def camera_configs(ha_prefix: str, topics: Topics, camera: str) -> list[tuple[str, bytes]]:
    """(topic, retained config) of one Frigate camera's entities."""
    uid = f"edgehive_{_slug(topics.prefix)}_frigate_{_slug(camera)}"
    state = topics.result(VERDICT_KIND, camera)
    common = {"state_topic": state, "json_attributes_topic": state, "json_attributes_template": ATTRIBUTES,
              "availability_topic": topics.frigate_status, "payload_available": "online", "payload_not_available": "offline",
              "device": device(topics), "origin": {"name": "edgehive", "sw_version": __version__}}
    confirmed = {"name": f"{camera} confirmed", "unique_id": f"{uid}_confirmed", "object_id": f"{uid}_confirmed",
                 "value_template": CONFIRMED, "payload_on": "ON", "payload_off": "OFF", **common}
    score = {"name": f"{camera} edgehive score", "unique_id": f"{uid}_score", "object_id": f"{uid}_score",
             "value_template": SCORE, "state_class": "measurement", **common}
    return [(f"{ha_prefix}/binary_sensor/{uid}_confirmed/config", orjson.dumps(confirmed)),
            (f"{ha_prefix}/sensor/{uid}_score/config", orjson.dumps(score))]
