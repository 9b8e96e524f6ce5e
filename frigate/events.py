"""Frigate's MQTT payloads, as its documentation (docs/integrations/mqtt.md) describes them.

`{prefix}/events` carries JSON `{"type": "new" | "update" | "end", "before": {...}, "after": {...}}`
for each tracked object; only the fields the bridge uses are read, and Frigate may add others.
`{prefix}/{camera}/{label}/snapshot` carries a bare JPEG, retained, with no event id in it: the
bridge pairs it with events by camera and label (frigate/judge.py).

The parsers raise ValueError (or pydantic's ValidationError) with a reason a person can act on;
the bus reports it on `errors` and in the log, and the message goes no further.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from edgehive.schemas import decode, envelope
from edgehive.schemas.base import IDENT_PATTERN

_IDENT = re.compile(IDENT_PATTERN)


class FrigateObject(BaseModel):
    """`before`/`after` of an event: the tracked object (extra fields are Frigate's, ignored)."""

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)

    id: str = Field(min_length=1, max_length=128)
    camera: str = Field(min_length=1, max_length=64)
    label: str = Field(min_length=1, max_length=128)
    score: float | None = Field(None, ge=0.0, le=1.0)
    top_score: float | None = Field(None, ge=0.0, le=1.0)
    false_positive: bool = False
    has_snapshot: bool = False

    @field_validator("camera")
    @classmethod
    def _camera_is_an_id(cls, value: str) -> str:
        if not _IDENT.fullmatch(value):
            raise ValueError(f"camera {value[:64]!r} is not a name edgehive can use in a topic (letters, digits, '_', '.', ':', '-')")
        return value

    @field_validator("label")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.strip().lower()

    @property
    def best_score(self) -> float | None:
        return self.top_score if self.top_score is not None else self.score


class FrigateEvent(BaseModel):
    """One message of `frigate/events`."""

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)

    type: Literal["new", "update", "end"]
    before: FrigateObject | None = None
    after: FrigateObject


def parse_event(topic: str, payload: bytes) -> FrigateEvent:
    """A `frigate/events` message; ValueError/ValidationError for anything else."""
    if not payload.strip():
        raise ValueError("empty event (expected Frigate's JSON {type, before, after})")
    return decode(FrigateEvent, payload)


@dataclass(frozen=True)
class Snapshot:
    """A JPEG from `{prefix}/{camera}/{label}/snapshot`."""

    camera: str
    label: str
    jpeg: bytes


class SnapshotParser:
    """Checks a snapshot's topic and bytes (size, JPEG start marker). A refusal is also told to
    `on_refused`, so that the events waiting for that snapshot can say why it never came."""

    def __init__(self, max_bytes: int, on_refused: Callable[[str, str, str], None]) -> None:
        self.max_bytes = max_bytes
        self.on_refused = on_refused  # (camera, label, reason)

    def __call__(self, topic: str, payload: bytes) -> Snapshot | None:
        """None for an empty payload: someone cleared the retained snapshot, which is no error."""
        if not payload:
            return None
        levels = topic.split("/")
        camera, label = levels[-3], levels[-2].lower()
        if not _IDENT.fullmatch(camera):
            raise ValueError(f"camera {camera[:64]!r} is not a name edgehive can use in a topic (letters, digits, '_', '.', ':', '-')")
        try:
            if len(payload) > self.max_bytes:
                raise ValueError(f"snapshot of {len(payload)} bytes exceeds the {self.max_bytes}-byte limit (EDGEHIVE_FRIGATE_MAX_SNAPSHOT_BYTES)")
            envelope.check_jpeg(payload)
        except ValueError as error:
            self.on_refused(camera, label, str(error))
            raise
        return Snapshot(camera, label, payload)
