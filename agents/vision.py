"""The `detections` job kind: JPEG in, detections in the frame's own coordinates out.

Detectors are loaded and warmed up before the agent advertises their models, so the
coordinator never routes a frame to a node that would first spend a second loading. An
interpreter runs one inference at a time, so a model may get one detector per worker: the first
is loaded at start, the others the first time jobs for that model overlap (`DetectorPool`).

Each model runs on a backend for its file format (TFLite: the EdgeTPU or LiteRT; ONNX: ONNX
Runtime), so one agent can serve a TFLite model on the CPU next to an ONNX model on the GPU. A
model that no usable backend runs is not loaded, and so not advertised.
"""

from __future__ import annotations

import functools
import logging
import queue
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np

from edgehive.heap import release_free_heap
from edgehive.schemas import ModelRuntime
from edgehive.schemas.kinds import DETECT_KIND
from edgehive.schemas.vision import DetectionOutput, DetectParams

from .detection import DetectionError, Detector, load_detector
from .detection.filters import keep_wanted
from .detection.tiles import crop, to_frame
from .inference import BACKENDS, BackendChoice, create_backend
from .kinds import JobFailed, JobKind
from .modelstore import ModelStoreError, load_manifest
from .snapshots import SnapshotPublisher

log = logging.getLogger(__name__)

class Instances:
    """How one model's detectors grow: `make` loads another (from the same backend, so from the
    same model file), up to `limit` in all. Counted under a lock: workers borrow at once."""

    def __init__(self, make: Callable[[], Detector], made: int, limit: int) -> None:
        self.make = make
        self.made = made
        self.limit = limit
        self._lock = threading.Lock()

    def reserve(self) -> bool:
        """Claim the right to load one more; False when there are `limit` already."""
        with self._lock:
            if self.made >= self.limit:
                return False
            self.made += 1
            return True

    def failed(self) -> None:
        """The claimed one could not be loaded: stay at what exists rather than retry each job."""
        with self._lock:
            self.made -= 1
            self.limit = self.made


class DetectorPool:
    """Detectors per model, each lent to one job at a time (the same detector to every worker
    when its backend runs one model on several threads at once: ONNX).

    A model whose detector runs one call at a time (a LiteRT or EdgeTPU interpreter) starts
    with one, loaded and warmed up, and gets another, up to one per worker, only the first
    time a job finds every one it has lent out; that one is then kept. Each interpreter holds
    its own tensor arena and its own copy of the weights XNNPACK packs (the fp16 `objects`
    model: about 35 MB), which an idle agent, or one whose jobs rarely overlap, never uses."""

    def __init__(self, detectors: dict[str, list[Detector]], runtimes: dict[str, ModelRuntime] | None = None,
                 grow: dict[str, Instances] | None = None) -> None:
        self._free: dict[str, queue.SimpleQueue[Detector]] = {}
        self._runtimes = dict(runtimes or {})
        self._grow = dict(grow or {})
        self._lendable = {name: len(instances) for name, instances in detectors.items()}
        for name, instances in detectors.items():
            self._free[name] = queue.SimpleQueue()
            for detector in instances:
                self._free[name].put(detector)

    def models(self) -> list[str]:
        return sorted(self._free)

    def runtimes(self) -> dict[str, ModelRuntime]:
        """Per model: the backend that loaded it, what runs it, whether the manifest marks it heavy."""
        return {name: self._runtimes[name] for name in self.models() if name in self._runtimes}

    def instances(self, model: str) -> int:
        """How many jobs may hold `model` at once now, lent out or not: the interpreters loaded
        so far, or the workers one shared session serves."""
        grow = self._grow.get(model)
        return grow.made if grow is not None else self._lendable[model]

    @contextmanager
    def borrow(self, model: str) -> Iterator[Detector]:
        free = self._free.get(model)
        if free is None:
            raise JobFailed(f"this node has no model {model!r} (it has {', '.join(self.models()) or 'none'})")
        detector = self._take(model, free)
        try:
            yield detector
        finally:
            free.put(detector)

    def _take(self, model: str, free: queue.SimpleQueue[Detector]) -> Detector:
        """A free detector; else a new one when the model may have more; else wait for one."""
        try:
            return free.get_nowait()
        except queue.Empty:
            pass
        grow = self._grow.get(model)
        if grow is None or not grow.reserve():
            return free.get()
        try:
            detector = grow.make()
        except (DetectionError, MemoryError) as error:
            grow.failed()
            log.error("model %s: no further instance for concurrent jobs, staying at %d (%s)", model, grow.made, error)
            return free.get()
        log.info("model %s: instance %d of %d loaded for concurrent jobs", model, grow.made, grow.limit)
        return detector


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
    grow: dict[str, Instances] = {}
    known = [spec.name for spec in manifest.models]
    for name in wanted:
        if name not in known:  # asked for by name (EDGEHIVE_MODELS): its absence is a mistake to say, not to skip
            log.error("model %s not loaded: not in the manifest %s (models there: %s)", name, models_dir / "manifest.json", ", ".join(known))
    for spec in manifest.models:
        if wanted and spec.name not in wanted:
            continue
        if not spec.path.is_file():
            # Named in EDGEHIVE_MODELS: a WARNING; otherwise "every model present" simply skips it.
            log.log(logging.WARNING if wanted else logging.INFO, "model %s not present at %s (fetch with: edgehive models)",
                    spec.name, spec.path)
            continue
        config, reason = choice.choose(spec.model_format)
        if config is None:
            log.error("model %s not loaded: no usable backend for %s models (%s)", spec.name, spec.model_format, reason)
            continue
        try:
            engine = create_backend(config)
            first = load_detector(spec, engine)
            first.warm_up()
        except (DetectionError, ModelStoreError) as error:
            log.error("model %s not loaded: %s", spec.name, error)
            continue
        if engine.concurrent_runs:
            instances = [first] * workers  # one session serves every worker: its weights and arena once
        else:
            instances = [first]
            if workers > 1:
                grow[spec.name] = Instances(functools.partial(load_detector, spec, engine, verify=False), made=1, limit=workers)
        loaded[spec.name] = instances
        runtimes[spec.name] = ModelRuntime(backend=config.type, device=instances[0].model.device, heavy=spec.heavy,
                                          input_size=spec.input_size)
        log.info("model %s ready on %s (%s)", spec.name, config.type, runtimes[spec.name].device)
    log.info("models ready: %s", ", ".join(f"{n} ({r.backend}, {r.device})" for n, r in runtimes.items()) or "none")
    release_free_heap()  # what loading and warming up freed
    return DetectorPool(loaded, runtimes, grow)


def decode_jpeg(jpeg: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise JobFailed(f"corrupt JPEG: OpenCV could not decode the {len(jpeg)}-byte frame")
    return image


class DecodedTiles:
    """The last few frames decoded for tiles: every tile of a frame comes with the same JPEG, and
    the tiles placed on one node mostly arrive back to back, so the frame is decoded once per
    node instead of once per tile (a 1080p decode costs about as much as a 300x300 inference).
    Keyed by the JPEG's bytes; the images are never written to (tiles are read-only views)."""

    def __init__(self, keep: int = 2) -> None:
        self._images: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self._keep = keep
        self._lock = threading.Lock()

    def get(self, jpeg: bytes) -> np.ndarray:
        with self._lock:
            image = self._images.get(jpeg)
            if image is not None:
                self._images.move_to_end(jpeg)
                return image
        image = decode_jpeg(jpeg)
        with self._lock:
            self._images[jpeg] = image
            while len(self._images) > self._keep:
                self._images.popitem(last=False)
        return image


def detections_kind(pool: DetectorPool, snapshots: SnapshotPublisher | None = None) -> JobKind:
    tiles = DecodedTiles()

    def run(params: DetectParams, jpeg: bytes) -> dict[str, object]:
        image = decode_jpeg(jpeg) if params.tile is None else tiles.get(jpeg)
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
        return output.model_dump(mode="json", exclude_none=True)  # parts and stages are the coordinator's to add

    return JobKind(DETECT_KIND, DetectParams, run, takes_frame=True, model_param="model")
