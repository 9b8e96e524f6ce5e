"""Write the JSON Schema of every message to `schemas/json/`, for non-Python clients.

Run `python -m edgehive.schemas.export` after changing a model; a test fails while the
checked-in files differ from what the models produce.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from .direct import CameraAssignment, CameraCounts, CameraOffer, DirectFrameMeta, FrameWant
from .frigate import FrigateVerdict
from .fusion import FusionEstimate, FusionOrientation, FusionParams
from .kinds import SleepParams
from .messages import MODELS, NodeJobs, NodeResults
from .sensors import ImuReading, SensorReading
from .vision import CamerasConfig, DetectionOutput, DetectParams

# Readings, parts that are not messages of their own but that clients parse (jobs' `params` and
# results' `output`), and what a node's jobs and results topics carry (one message or an array).
EXTRA_MODELS: dict[str, type[BaseModel]] = {
    "sensor_reading": SensorReading,
    "imu_reading": ImuReading,
    "sleep_params": SleepParams,
    "detect_params": DetectParams,
    "detection_output": DetectionOutput,
    "cameras": CamerasConfig,
    "fusion_params": FusionParams,
    "fusion_estimate": FusionEstimate,
    "fusion_orientation": FusionOrientation,
    "frigate_verdict": FrigateVerdict,
    "camera_offer": CameraOffer,
    "camera_assignment": CameraAssignment,
    "frame_want": FrameWant,
    "direct_frame_meta": DirectFrameMeta,
    "camera_counts": CameraCounts,
    "node_jobs": NodeJobs,
    "node_results": NodeResults,
}

JSON_DIR = Path(__file__).with_name("json")
MANIFEST = Path(__file__).resolve().parent.parent / "models" / "manifest.json"


def shipped_labels(manifest: Path = MANIFEST) -> dict[str, list[str]]:
    """Each shipped model's labels, so that the detection schema can say what `label` may be
    (without the classes its decoder never reports, such as an SSD's background)."""
    models = json.loads(manifest.read_text())["models"]
    return {
        model["name"]: [label for cls, label in enumerate(model["labels"]) if cls not in model.get("ignore_classes", [])]
        for model in models
    }


def _with_labels(schema: dict[str, Any], labels: dict[str, list[str]]) -> dict[str, Any]:
    """The Detection's `label` lists the shipped models' labels (a user's own model may add more)."""
    label = schema["$defs"]["Detection"]["properties"]["label"]
    label["x-labels-by-model"] = labels
    label["examples"] = sorted({name for names in labels.values() for name in names})
    return schema


def render_all() -> dict[str, str]:
    """File name → JSON text, exactly as checked in."""
    files = {}
    for name, model in {**MODELS, **EXTRA_MODELS}.items():
        schema = model.model_json_schema()
        if model is DetectionOutput or model is FrigateVerdict:
            schema = _with_labels(schema, shipped_labels())
        schema["$id"] = f"https://edgehive.dev/schemas/v1/{name}.schema.json"
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        files[f"{name}.schema.json"] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    return files


def main() -> int:
    JSON_DIR.mkdir(exist_ok=True)
    for stale in JSON_DIR.glob("*.schema.json"):
        stale.unlink()
    for name, text in render_all().items():
        (JSON_DIR / name).write_text(text)
    print(f"wrote {len(MODELS) + len(EXTRA_MODELS)} schemas to {JSON_DIR}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
