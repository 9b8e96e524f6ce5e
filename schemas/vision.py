"""What object detection produces: one model's detections on one frame.

A detection carries its box twice: in the frame's own pixels (what an overlay or a crop needs)
and normalized to [0, 1] (what survives a resize between camera and consumer). Both describe
the ORIGINAL frame, never the model's letterboxed input.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from .base import Part

Unit = Annotated[float, Field(ge=0.0, le=1.0)]


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
