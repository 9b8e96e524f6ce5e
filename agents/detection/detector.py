"""A loaded, ready detector: frame in, detections in the frame's own coordinates out."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from edgehive.agents.inference import BackendError, InferenceBackend, ModelHandle
from edgehive.agents.modelstore import ModelSpec, file_sha256
from edgehive.schemas.vision import Detection, DetectionOutput

from .candidates import Candidates
from .decoders import Decoder, make_decoder
from .errors import DetectionError
from .preprocess import Letterbox, as_bgr, letterbox, to_tensor

log = logging.getLogger(__name__)


class Detector:
    """One model on one backend. Safe to share between threads (the model handle serializes)."""

    def __init__(self, spec: ModelSpec, model: ModelHandle, decoder: Decoder | None = None) -> None:
        if tuple(model.input_size) != tuple(spec.input_size):
            raise DetectionError(
                f"model {spec.name}: {model.path} takes {model.input_size[0]}x{model.input_size[1]}, "
                f"the manifest says {spec.input_size[0]}x{spec.input_size[1]}"
            )
        self.spec = spec
        self.model = model
        self.decoder = decoder if decoder is not None else make_decoder(spec, model)
        self.warm = False

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def input_size(self) -> tuple[int, int]:
        return self.spec.input_size

    def process(self, image_bgr: np.ndarray) -> DetectionOutput:
        """Letterbox (or stretch), infer, decode, and map back: the full result with the inference time."""
        image = as_bgr(image_bgr)
        height, width = image.shape[:2]
        rgb, box = letterbox(image, self.spec.input_size, keep_aspect=self.spec.resize == "letterbox")
        tensor = to_tensor(rgb, self.model.input_dtype, self.spec.input_range, self.model.input_layout)
        start = time.perf_counter()
        try:
            outputs = self.model.infer(tensor)
        except BackendError as exc:
            raise DetectionError(f"model {self.name}: {exc}") from None
        inference_ms = (time.perf_counter() - start) * 1000.0
        detections = self._to_frame(self.decoder.decode(outputs), box)
        return DetectionOutput(
            model=self.name, width=width, height=height, detections=detections, inference_ms=round(inference_ms, 3)
        )

    def detect(self, image_bgr: np.ndarray) -> list[Detection]:
        """Detections, best score first, boxes in the frame's pixels and normalized."""
        return self.process(image_bgr).detections

    def warm_up(self) -> float:
        """One inference on a blank frame (allocates buffers, lets XNNPACK pack weights); returns ms."""
        start = time.perf_counter()
        w, h = self.spec.input_size
        self.process(np.zeros((h, w, 3), np.uint8))
        self.warm = True
        elapsed = (time.perf_counter() - start) * 1000.0
        log.info("model %s warmed up in %.1f ms", self.name, elapsed)
        return elapsed

    def _to_frame(self, candidates: Candidates, box: Letterbox) -> list[Detection]:
        width, height = box.src_size
        pixels = box.to_source(candidates.boxes)
        pixels = np.clip(pixels, 0.0, [width, height, width, height])
        labels = self.spec.labels
        found: list[Detection] = []
        for corners, score, cls in zip(pixels, candidates.scores, candidates.classes):
            x0, y0, x1, y1 = (float(v) for v in corners)
            if x1 - x0 < 1.0 or y1 - y0 < 1.0:
                continue  # nothing left of it inside the frame (it lay in the letterbox border)
            found.append(
                Detection(
                    label=labels[cls] if 0 <= cls < len(labels) else str(int(cls)),
                    score=round(min(max(float(score), 0.0), 1.0), 4),
                    box=[round(x0, 2), round(y0, 2), round(x1, 2), round(y1, 2)],
                    box_norm=[round(x0 / width, 5), round(y0 / height, 5), round(x1 / width, 5), round(y1 / height, 5)],
                )
            )
        return found


def load_detector(spec: ModelSpec, backend: InferenceBackend, *, verify: bool = True) -> Detector:
    """Load `spec`'s file on `backend` (its EdgeTPU variant on the edgetpu backend, when the
    manifest names one), after checking its SHA-256 when the manifest pins one. A model whose
    manifest says `reshape_input` is loaded at the manifest's input size."""
    if spec.model_format not in backend.formats:
        raise DetectionError(
            f"model {spec.name}: the {backend.type_key} backend does not run {spec.model_format} models "
            f"(it runs {', '.join(sorted(backend.formats))})"
        )
    path = Path(spec.file)
    if backend.type_key == "edgetpu" and spec.edgetpu_file:
        path = Path(spec.edgetpu_file)
    elif verify and spec.sha256 is not None and path.is_file():
        actual = file_sha256(path)
        if actual != spec.sha256:
            raise DetectionError(f"model {spec.name}: {path} has sha256 {actual}, the manifest expects {spec.sha256}")
    if not path.is_file():
        raise DetectionError(f"model {spec.name}: {path} is missing (run: python -m edgehive.agents.modelstore)")
    try:
        model = backend.load(path, input_size=spec.input_size if spec.reshape_input else None)
    except BackendError as exc:
        raise DetectionError(f"model {spec.name}: {exc}") from None
    return Detector(spec, model)
