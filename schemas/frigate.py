"""The Frigate bridge's verdict: edgehive's second opinion on one Frigate event.

`edgehive frigate` sends the snapshot of each new Frigate event through the fleet and says, on
`results/frigate/{camera}` (`camera` is Frigate's camera name), whether edgehive saw the label
Frigate reported. Home Assistant entities and any automation read this message; it is the
bridge's contract, so it lives here with the others.
"""

from __future__ import annotations

from typing import Final

from pydantic import Field, model_validator

from .base import Ident, Message, Part
from .vision import Detection

VERDICT_KIND: Final = "frigate"  # the verdict's topic: results/frigate/{camera}


class StageVerdict(Part):
    """What a later stage of the camera's pipeline found (faces on the people, say)."""

    model: str = Field(min_length=1, max_length=128, description="Model from the manifest")
    detections: list[Detection] = Field(default_factory=list, description="Boxes in the snapshot's pixels, best score first")


class FrigateVerdict(Message):
    """One Frigate event judged by edgehive, on `results/frigate/{camera}` (QoS 1, not retained)."""

    ts: float = Field(description="When the verdict was made (epoch s)")
    event_id: str = Field(min_length=1, max_length=128, description="Frigate's event id (`after.id` of frigate/events)")
    camera: Ident = Field(description="Frigate's camera name")
    label: str = Field(min_length=1, max_length=128, description="The label Frigate gave the object (person, car, ...)")
    frigate_score: float | None = Field(None, ge=0.0, le=1.0, description="Frigate's top_score (else its score) for the object when the event was judged")
    ok: bool = Field(description="The judgement ran; false when the snapshot never came or was refused, or the edgehive job failed or timed out (see error)")
    confirmed: bool = Field(description="edgehive found the label (or one that confirms it, EDGEHIVE_FRIGATE_CONFIRM_LABELS) at or above min_score; false when ok is false")
    score: float | None = Field(None, ge=0.0, le=1.0, description="edgehive's best score for the label (absent: not found, or not judged)")
    min_score: float = Field(ge=0.0, le=1.0, description="The score a detection needed to confirm (EDGEHIVE_FRIGATE_MIN_SCORE)")
    detections: list[Detection] = Field(default_factory=list, description="Everything the first model found on the snapshot, best score first")
    stages: list[StageVerdict] = Field(default_factory=list, description="The later stages of the camera's pipeline (EDGEHIVE_CAMERAS), in order")
    models: list[str] = Field(default_factory=list, description="The models that looked at the snapshot: the first, then each stage's")
    node: Ident | None = Field(None, description="The node that ran the first model")
    source: Ident = Field(description="The edgehive camera id the snapshot was sent as (frames/{source}); its EDGEHIVE_CAMERAS entry is the pipeline")
    job_id: Ident | None = Field(None, description="The edgehive job (frame) id of the result")
    elapsed_s: float = Field(ge=0.0, description="From the event's arrival (or its snapshot's, if later) to this verdict")
    job_s: float | None = Field(None, ge=0.0, description="From the snapshot sent to the fleet to its result back (absent: never sent)")
    sub_label: str | None = Field(None, max_length=100, description="The sub label asked of Frigate's HTTP API for the event (absent: none; EDGEHIVE_FRIGATE_URL)")
    error: str | None = Field(None, max_length=2000, description="Why ok is false")

    @model_validator(mode="after")
    def _consistent(self) -> FrigateVerdict:
        if self.ok == (self.error is not None):
            raise ValueError("a verdict carries an error exactly when ok is false")
        if self.confirmed and not self.ok:
            raise ValueError("a verdict that did not run cannot confirm")
        return self
