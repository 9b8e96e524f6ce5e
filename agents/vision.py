"""The `detections` job kind: JPEG in, detections in the frame's own coordinates out.

Detectors are loaded and warmed up before the agent advertises their models, so the
coordinator never routes a frame to a node that would first spend a second loading. An
interpreter runs one inference at a time, so each model gets one detector per worker.
"""

from __future__ import annotations

import logging
import queue
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from edgehive.schemas import Ident
from edgehive.schemas.vision import MAX_LABELS, DetectionOutput, Label

from .detection import DetectionError, Detector, load_detector
from .detection.filters import keep_wanted
from .inference import available_backends, create_backend
from .kinds import JobFailed, JobKind
from .modelstore import ModelStoreError, load_manifest
from .snapshots import SnapshotPublisher

log = logging.getLogger(__name__)

DETECT_KIND = "detections"


class DetectParams(BaseModel):
    """What the coordinator sends with each frame (the JPEG itself travels beside the JSON)."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=(), allow_inf_nan=False)
    model: str = Field(max_length=128)
    camera: Ident
    captured: float | None = None
    labels: list[Label] | None = Field(None, max_length=MAX_LABELS, description="Labels to keep (None: all)")
    min_score: dict[Label, Annotated[float, Field(ge=0.0, le=1.0)]] = Field(default_factory=dict, max_length=MAX_LABELS)


class DetectorPool:
    """`workers` warmed-up detectors per model, lent out one job at a time."""

    def __init__(self, detectors: dict[str, list[Detector]]) -> None:
        self._free: dict[str, queue.SimpleQueue[Detector]] = {}
        for name, instances in detectors.items():
            self._free[name] = queue.SimpleQueue()
            for detector in instances:
                self._free[name].put(detector)

    def models(self) -> list[str]:
        return sorted(self._free)

    @contextmanager
    def borrow(self, model: str) -> Iterator[Detector]:
        free = self._free.get(model)
        if free is None:
            raise JobFailed(f"this node has no model {model!r} (it has {', '.join(self.models()) or 'none'})")
        detector = free.get()
        try:
            yield detector
        finally:
            free.put(detector)


def choose_backend(name: str) -> str:
    """`auto`: the Coral EdgeTPU when its delegate loads, else LiteRT on the CPU."""
    if name != "auto":
        return name
    return "edgetpu" if "edgetpu" in available_backends() else "litert"


def load_pool(models_dir: Path, wanted: list[str], backend: str, threads: int, workers: int) -> DetectorPool:
    """Load and warm every wanted model whose file is here; a model that fails is logged and skipped."""
    try:
        manifest = load_manifest(models_dir)
    except ModelStoreError as error:
        log.error("no models: %s", error)
        return DetectorPool({})
    backend_key = choose_backend(backend)
    # OpenCV's own thread pool (decode, resize) would fight the workers and the other agents
    # for the same few cores; give it the interpreter's thread budget.
    cv2.setNumThreads(threads)
    loaded: dict[str, list[Detector]] = {}
    for spec in manifest.models:
        if wanted and spec.name not in wanted:
            continue
        if not spec.path.is_file():
            log.info("model %s not present at %s (fetch with: python -m edgehive.agents.modelstore)", spec.name, spec.path)
            continue
        try:
            instances = []
            for _ in range(workers):
                detector = load_detector(spec, create_backend({"type": backend_key, "num_threads": threads}))
                detector.warm_up()
                instances.append(detector)
            loaded[spec.name] = instances
        except (DetectionError, ModelStoreError) as error:
            log.error("model %s not loaded: %s", spec.name, error)
    log.info("models ready on %s: %s", backend_key, ", ".join(loaded) or "none")
    return DetectorPool(loaded)


def decode_jpeg(jpeg: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise JobFailed(f"corrupt JPEG: OpenCV could not decode the {len(jpeg)}-byte frame")
    return image


def detections_kind(pool: DetectorPool, snapshots: SnapshotPublisher | None = None) -> JobKind:
    def run(params: DetectParams, jpeg: bytes) -> dict[str, object]:
        image = decode_jpeg(jpeg)
        with pool.borrow(params.model) as detector:
            try:
                output: DetectionOutput = detector.process(image)
            except DetectionError as error:
                raise JobFailed(str(error)) from None
        output = keep_wanted(output, params.labels, params.min_score)
        if snapshots is not None:
            snapshots.offer(params.camera, image, output)
        return output.model_dump(mode="json")

    return JobKind(DETECT_KIND, DetectParams, run, takes_frame=True)
