"""Per-camera detection settings: which model a camera's frames run, which labels come back.

One place a user edits (`EDGEHIVE_CAMERAS`, JSON or a path to a JSON file), keyed by camera
id, with `*` for every camera. The older shorthands still work underneath it:
`EDGEHIVE_DEFAULT_MODEL` is the model when nothing names one, `EDGEHIVE_CAMERA_MODELS`
(`door=face`) names a camera's model. A model named in a frame's own envelope wins over all.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from edgehive.schemas.base import IDENT_PATTERN
from edgehive.schemas.vision import CameraConfig, StageConfig

from ..errors import EdgehiveError

EVERY_CAMERA = "*"
_CAMERAS = TypeAdapter(dict[str, CameraConfig])


class CameraConfigError(EdgehiveError, ValueError):
    """`EDGEHIVE_CAMERAS` does not parse, or names something that cannot be a camera."""


def parse_cameras(text: str) -> dict[str, CameraConfig]:
    """`{"*": {...}, "door": {...}}` as JSON text, or the path of a file holding it."""
    text = text.strip()
    if not text:
        return {}
    if not text.startswith(("{", "[")):  # JSON (an array is refused for its shape), else a path
        try:
            text = Path(text).read_text()
        except OSError as error:
            raise CameraConfigError(f"cannot read {text}: {error.strerror or error}") from None
    try:
        cameras = _CAMERAS.validate_json(text)
    except ValidationError as error:
        raise CameraConfigError(_short(error)) from None
    for camera in cameras:
        if camera != EVERY_CAMERA and not re.fullmatch(IDENT_PATTERN, camera):
            raise CameraConfigError(f"{camera[:80]!r} cannot be a camera id (letters, digits, '_', '.', ':', '-'; or '*' for every camera)")
    return cameras


def _short(error: ValidationError) -> str:
    problems = []
    for item in error.errors()[:3]:
        where = ".".join(str(part) for part in item["loc"]) or "(top)"
        problems.append(f"{where}: {item['msg']}")
    return "; ".join(problems)


@dataclass(frozen=True)
class CameraPolicy:
    """Answers "what does camera X get?" from the merged settings."""

    cameras: Mapping[str, CameraConfig]
    camera_models: Mapping[str, str]
    default_model: str

    def resolve(self, camera: str, envelope_model: str | None = None) -> CameraConfig:
        base = CameraConfig(model=self.default_model)
        every = self.cameras.get(EVERY_CAMERA)
        if every is not None:
            base = every.over(base)
        if camera in self.camera_models:
            base = base.model_copy(update={"model": self.camera_models[camera]})
        own = self.cameras.get(camera)
        if own is not None:
            base = own.over(base)
        if envelope_model:
            base = base.model_copy(update={"model": envelope_model})
        return base


def detect_params(config: CameraConfig, camera: str, captured: float | None) -> dict[str, Any]:
    """The `detections` job's params for one frame: filters travel only when set."""
    assert config.model is not None  # the policy's base always names the default model
    return _params(config.model, camera, captured, config.labels, config.min_score)


def stage_params(stage: StageConfig, camera: str, captured: float | None) -> dict[str, Any]:
    """A pipeline stage's `detections` params: its own model and filters; each crop adds its `tile`."""
    return _params(stage.model, camera, captured, stage.labels, stage.min_score)


def _params(model: str, camera: str, captured: float | None, labels: list[str] | None, min_score: dict[str, float]) -> dict[str, Any]:
    params: dict[str, Any] = {"model": model, "camera": camera, "captured": captured}
    if labels is not None:
        params["labels"] = list(labels)
    if min_score:
        params["min_score"] = dict(min_score)
    return params
