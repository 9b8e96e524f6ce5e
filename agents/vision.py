"""The `detections` job kind: JPEG in, detections in the frame's own coordinates out.

Detectors are loaded and warmed up before the agent advertises their models, so the
coordinator never routes a frame to a node that would first spend a second loading. An
interpreter runs one inference at a time, so each model gets one detector per worker.

Each model runs on a backend for its file format (TFLite: the EdgeTPU or LiteRT; ONNX: ONNX
Runtime), so one agent can serve a TFLite model on the CPU next to an ONNX model on the GPU. A
model that no usable backend runs is not loaded, and so not advertised.
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

from edgehive.schemas import Ident, ModelRuntime
from edgehive.schemas.vision import MAX_LABELS, DetectionOutput, Label

from .detection import DetectionError, Detector, load_detector
from .detection.filters import keep_wanted
from .detection.tiles import crop, to_frame
from .inference import BACKENDS, BackendChoice, create_backend
from .kinds import JobFailed, JobKind
from .modelstore import ModelStoreError, load_manifest
from .snapshots import SnapshotPublisher

log = logging.getLogger(__name__)

NonNegative = Annotated[int, Field(ge=0, le=1 << 16)]

DETECT_KIND = "detections"


class DetectParams(BaseModel):
    """What the coordinator sends with each frame (the JPEG itself travels beside the JSON)."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=(), allow_inf_nan=False)
    model: str = Field(max_length=128)
    camera: Ident
    captured: float | None = None
    labels: list[Label] | None = Field(None, max_length=MAX_LABELS, description="Labels to keep (None: all)")
    min_score: dict[Label, Annotated[float, Field(ge=0.0, le=1.0)]] = Field(default_factory=dict, max_length=MAX_LABELS)
    tile: tuple[NonNegative, NonNegative, NonNegative, NonNegative] | None = Field(
        None, description="Run the model on this rectangle of the frame only (x0, y0, x1, y1 pixels); boxes still come back in the frame's"
    )


class DetectorPool:
    """`workers` warmed-up detectors per model, each lent to one job at a time (the same detector
    `workers` times when its backend runs one model on several threads at once: ONNX)."""

    def __init__(self, detectors: dict[str, list[Detector]], runtimes: dict[str, ModelRuntime] | None = None) -> None:
        self._free: dict[str, queue.SimpleQueue[Detector]] = {}
        self._runtimes = dict(runtimes or {})
        for name, instances in detectors.items():
            self._free[name] = queue.SimpleQueue()
            for detector in instances:
                self._free[name].put(detector)

    def models(self) -> list[str]:
        return sorted(self._free)

    def runtimes(self) -> dict[str, ModelRuntime]:
        """Per model: the backend that loaded it, what runs it, whether the manifest marks it heavy."""
        return {name: self._runtimes[name] for name in self.models() if name in self._runtimes}

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


def load_pool(models_dir: Path, wanted: list[str], backend: str | BackendChoice, threads: int, workers: int) -> DetectorPool:
    """Load and warm every wanted model whose file is here, each on a backend that runs its format;
    a model that fails, or that no usable backend runs, is logged with the reason and skipped."""
    choice = backend if isinstance(backend, BackendChoice) else BackendChoice(setting=backend, threads=threads)
    if choice.setting != "auto" and choice.setting not in BACKENDS:
        log.error("no models: unknown backend %r (known: auto, %s)", choice.setting, ", ".join(sorted(BACKENDS)))
        return DetectorPool({})
    try:
        manifest = load_manifest(models_dir)
    except ModelStoreError as error:
        log.error("no models: %s", error)
        return DetectorPool({})
    # OpenCV's own thread pool (decode, resize) would fight the workers and the other agents
    # for the same few cores; give it the interpreter's thread budget.
    cv2.setNumThreads(threads)
    loaded: dict[str, list[Detector]] = {}
    runtimes: dict[str, ModelRuntime] = {}
    for spec in manifest.models:
        if wanted and spec.name not in wanted:
            continue
        if not spec.path.is_file():
            log.info("model %s not present at %s (fetch with: python -m edgehive.agents.modelstore)", spec.name, spec.path)
            continue
        config, reason = choice.choose(spec.model_format)
        if config is None:
            log.error("model %s not loaded: no usable backend for %s models (%s)", spec.name, spec.model_format, reason)
            continue
        try:
            instances = []
            for _ in range(workers):
                backend = create_backend(config)
                if instances and backend.concurrent_runs:
                    instances.append(instances[0])  # one session serves every worker: its weights and arena once
                    continue
                detector = load_detector(spec, backend)
                detector.warm_up()
                instances.append(detector)
        except (DetectionError, ModelStoreError) as error:
            log.error("model %s not loaded: %s", spec.name, error)
            continue
        loaded[spec.name] = instances
        runtimes[spec.name] = ModelRuntime(backend=config.type, device=instances[0].model.device, heavy=spec.heavy,
                                          input_size=spec.input_size)
        log.info("model %s ready on %s (%s)", spec.name, config.type, runtimes[spec.name].device)
    log.info("models ready: %s", ", ".join(f"{n} ({r.backend}, {r.device})" for n, r in runtimes.items()) or "none")
    return DetectorPool(loaded, runtimes)


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
                if params.tile is None:
                    output: DetectionOutput = detector.process(image)
                else:
                    frame_size = (image.shape[1], image.shape[0])
                    output = to_frame(detector.process(crop(image, params.tile)), params.tile, frame_size)
            except DetectionError as error:
                raise JobFailed(str(error)) from None
        output = keep_wanted(output, params.labels, params.min_score)
        if snapshots is not None and params.tile is None:  # a tile's boxes are a part of the frame's: no snapshot of them alone
            snapshots.offer(params.camera, image, output)
        return output.model_dump(mode="json")

    return JobKind(DETECT_KIND, DetectParams, run, takes_frame=True, model_param="model")
