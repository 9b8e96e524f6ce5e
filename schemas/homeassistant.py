"""Home Assistant's MQTT discovery config, the contract every edgehive service that announces
entities (the coordinator's fleet, nodes and cameras; the Frigate bridge's verdicts) follows."""

from __future__ import annotations

import re
from typing import Any

import orjson

from edgehive import __version__

# Who published a config: Home Assistant logs it with every discovered entity and shows it in the
# device's MQTT info, so a user can tell an edgehive entity from one of Zigbee2MQTT's or Frigate's.
ORIGIN: dict[str, str] = {"name": "edgehive", "sw_version": __version__}

Message = tuple[str, bytes]  # (topic, payload): a retained config to publish, or b"" to remove one


def slug(text: str) -> str:
    """`text` lowercased, every run of other characters than letters, digits and `_` one `_`."""
    return re.sub(r"[^a-z0-9_]+", "_", text.lower()).strip("_")


def entity_slug(text: str) -> str:
    """`text` as Home Assistant allows an entity id's object part: lowercase letters, digits and
    single underscores, neither first nor last."""
    return re.sub(r"_+", "_", slug(text)).strip("_") or "edgehive"


def entity_config(ha_prefix: str, component: str, unique_id: str, name: str, device: dict[str, Any], **fields: Any) -> Message:
    """One entity's retained discovery config, as Home Assistant's MQTT discovery documents it:
    on `{prefix}/{component}/{unique_id}/config`, with its `unique_id` (it keeps the entity's
    settings and history across restarts), `default_entity_id` (the entity id it gets at first:
    what `object_id` did until Home Assistant 2025.10 deprecated it), the `device` it belongs
    to and the `origin` that published it; `fields` are the component's own (state_topic,
    value_template, availability, ...). `unique_id` must be letters, digits, `_` and `-` (the
    topic level Home Assistant accepts)."""
    config = {"name": name, "unique_id": unique_id, "default_entity_id": f"{component}.{entity_slug(unique_id)}",
              "device": device, "origin": ORIGIN, **fields}
    return f"{ha_prefix}/{component}/{unique_id}/config", orjson.dumps(config)
