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


Rect = Annotated[list[Annotated[int, Field(ge=0, le=1 << 16)]], Field(min_length=4, max_length=4)]


class PartRun(Part):
    """One part of a frame run on its own: a tile, or a crop for a later stage of a pipeline."""

    node: str = Field(min_length=1, max_length=128, description="The node that ran it")
    rect: Rect | None = Field(None, description="x0, y0, x1, y1 in frame pixels; null: the whole frame")
    of: int | None = Field(
        None, ge=0, description="Later stages: the index, in the previous stage's detections, of the object this crop shows"
    )
    found: int = Field(ge=0, description="Detections this part returned, before the merge")
    inference_ms: float = Field(ge=0.0, description="Time this part spent in the interpreter")


class StageOutput(Part):
    """A later stage of a camera's pipeline: a second model run on crops of what the first found."""

    model: str = Field(min_length=1, max_length=128, description="Model name from the manifest")
    on: list[str] = Field(description="Labels of the previous stage whose boxes were cropped for this stage")
    detections: list[Detection] = Field(default_factory=list, description="Boxes in the whole frame's pixels, best score first")
    inference_ms: float = Field(ge=0.0, description="Summed over this stage's parts")
    elapsed_ms: float = Field(ge=0.0, description="From this stage's first part sent to its last result in, at the coordinator")
    parts: list[PartRun] = Field(default_factory=list, description="One per crop (none when the previous stage found nothing to crop)")


class DetectionOutput(Part):
    """The `output` of a detection result: which model looked at which frame, what it found.

    A frame run as one job carries the first five fields. A frame cut into tiles also says
    which node ran each tile (`parts`); a camera with a pipeline adds each later stage
    (`stages`). The coordinator merges the parts: there is always one result per frame."""

    model: str = Field(min_length=1, max_length=128, description="Model name from the manifest")
    width: int = Field(gt=0, le=1 << 16, description="Width of the original frame in pixels")
    height: int = Field(gt=0, le=1 << 16, description="Height of the original frame in pixels")
    detections: list[Detection] = Field(default_factory=list, description="Best score first")
    inference_ms: float = Field(ge=0.0, description="Time spent in the interpreter (set, invoke, read back); summed over parts")
    parts: list[PartRun] | None = Field(
        None, description="A tiled frame: the whole frame and each tile, with the node that ran it (absent: one job, untiled)"
    )
    elapsed_ms: float | None = Field(
        None, ge=0.0, description="Parts or stages: from the first part sent to the last result in, at the coordinator (this stage)"
    )
    stages: list[StageOutput] | None = Field(None, description="A pipeline's later stages, in order (absent: no pipeline)")


TILES_PATTERN = r"^(auto|off|[1-9]x[1-9])$"
MAX_STAGES = 3


class StageConfig(Part):
    """A later stage of a pipeline: `model` run on a crop of each box of the previous stage
    whose label is in `on`; `labels` and `min_score` filter this stage's detections."""

    model: Annotated[str, StringConstraints(pattern=IDENT_PATTERN)] = Field(description="Model from the manifest, e.g. \"face-far\"")
    on: list[Label] = Field(min_length=1, max_length=MAX_LABELS, description="Labels of the previous stage to crop, e.g. [\"person\"]")
    labels: list[Label] | None = Field(None, max_length=MAX_LABELS, description="Labels to keep from this stage (default: all)")
    min_score: dict[Label, Unit] = Field(
        default_factory=dict, max_length=MAX_LABELS, description="Lowest score kept per label of this stage; \"*\" for the rest",
    )


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

    tiles: Annotated[str, StringConstraints(pattern=TILES_PATTERN)] | None = Field(
        None, description=(
            "Cut big frames into overlapping tiles, each a job of its own, merged into one result: \"auto\" "
            "(tiles about twice the model's input, plus the whole frame, when the frame is over four times "
            "that), a grid \"CxR\" such as \"3x2\" (plus the whole frame), or \"off\" (default: auto)"
        ),
    )
    stages: list[StageConfig] | None = Field(
        None, max_length=MAX_STAGES,
        description="A pipeline: models run after the first on crops of what it found, in order (default: none)",
    )

    def over(self, base: CameraConfig) -> CameraConfig:
        """This camera's settings, with what it leaves unset taken from `base` (the `*` entry)."""
        update = {name: getattr(self, name) for name in self.model_fields_set}
        return base.model_copy(update=update)


class CamerasConfig(RootModel[dict[str, CameraConfig]]):
    """`EDGEHIVE_CAMERAS`: camera id (or `*`, every camera) → that camera's settings."""
