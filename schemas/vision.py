"""The `detections` job kind's contract: a frame and `DetectParams` in, `DetectionOutput` out.

A detection carries its box twice: in the frame's own pixels (what an overlay or a crop needs)
and normalized to [0, 1] (what survives a resize between camera and consumer). Both describe
the ORIGINAL frame, never the model's letterboxed input.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, RootModel, StringConstraints, model_validator

from .base import IDENT_PATTERN, Ident, Part

Unit = Annotated[float, Field(ge=0.0, le=1.0)]
Label = Annotated[str, StringConstraints(min_length=1, max_length=128, to_lower=True, strip_whitespace=True)]
MAX_LABELS = 256


class Detection(Part):
    """One object: label, confidence, and a box as (x0, y0, x1, y1) with x0 <= x1, y0 <= y1."""

    label: str = Field(min_length=1, max_length=128, description="Class name from the model's labels")
    score: Unit = Field(description="Confidence in [0, 1]")
    box: list[Annotated[float, Field(ge=0.0)]] = Field(
        min_length=4, max_length=4, description="x0, y0, x1, y1 in pixels of the original frame"
    )
    box_norm: list[Unit] = Field(
        min_length=4, max_length=4, description="x0, y0, x1, y1 divided by the frame's width and height"
    )

    @model_validator(mode="after")
    def _ordered(self) -> Detection:
        for corners in (self.box, self.box_norm):
            if corners[0] > corners[2] or corners[1] > corners[3]:
                raise ValueError("box corners must be ordered: x0 <= x1 and y0 <= y1")
        return self


class DetectionOutput(Part):
    """The `output` of a detection result: which model looked at which frame, what it found."""

    model: str = Field(min_length=1, max_length=128, description="Model name from the manifest")
    width: int = Field(gt=0, le=1 << 16, description="Width of the original frame in pixels")
    height: int = Field(gt=0, le=1 << 16, description="Height of the original frame in pixels")
    detections: list[Detection] = Field(default_factory=list, description="Best score first")
    inference_ms: float = Field(ge=0.0, description="Time spent in the interpreter (set, invoke, read back)")


NonNegative = Annotated[int, Field(ge=0, le=1 << 16)]


class DetectParams(BaseModel):
    """The params of a `detections` job: what the coordinator sends with each frame (the JPEG
    itself travels beside the JSON, in the frame envelope: schemas/envelope.py)."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=(), allow_inf_nan=False)
    model: str = Field(max_length=128, description="Model from the manifest to run")
    camera: Ident = Field(description="The camera the frame came from")
    captured: float | None = Field(None, description="When the camera took the frame (epoch s), if it said")
    labels: list[Label] | None = Field(None, max_length=MAX_LABELS, description="Labels to keep (None: all)")
    min_score: dict[Label, Unit] = Field(default_factory=dict, max_length=MAX_LABELS, description="Lowest score kept per label; \"*\": labels not named")
    tile: tuple[NonNegative, NonNegative, NonNegative, NonNegative] | None = Field(
        None, description="Run the model on this rectangle of the frame only (x0, y0, x1, y1 pixels); boxes still come back in the frame's"
    )


class CameraConfig(Part):
    """What one camera's frames are run through and which detections come back.

    The coordinator's `EDGEHIVE_CAMERAS` maps camera ids (and `*`, every camera) to one of
    these. Filtering happens on the node, before the result and the snapshot are made, so a
    label nobody asked for never travels. Labels compare in lower case.
    """

    model: Annotated[str, StringConstraints(pattern=IDENT_PATTERN)] | None = Field(
        None, description="Model from the manifest run on this camera's frames (default: the coordinator's default_model)"
    )
    labels: list[Label] | None = Field(
        None, max_length=MAX_LABELS,
        description="Labels to keep, e.g. [\"person\", \"car\"]; others are dropped (default: every label of the model)",
    )
    min_score: dict[Label, Unit] = Field(
        default_factory=dict, max_length=MAX_LABELS,
        description="Lowest score kept per label; the key \"*\" applies to labels not named (default: the model's own score_threshold)",
    )

    def over(self, base: CameraConfig) -> CameraConfig:
        """This camera's settings, with what it leaves unset taken from `base` (the `*` entry)."""
        update = {name: getattr(self, name) for name in self.model_fields_set}
        return base.model_copy(update=update)


class CamerasConfig(RootModel[dict[str, CameraConfig]]):
    """`EDGEHIVE_CAMERAS`: camera id (or `*`, every camera) → that camera's settings."""
