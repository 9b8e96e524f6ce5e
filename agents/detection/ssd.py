"""Decoder for SSD-style models that end in TFLite_Detection_PostProcess.

SSD-MobileNet, EfficientDet-Lite and most detectors exported by the TF Object Detection API
or Model Maker decode their anchors inside the model and emit boxes (ymin, xmin, ymax, xmax,
normalized), class ids, scores and a count. We only threshold, apply a light per-class NMS
(the model has done its own), and name the classes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edgehive.agents.inference import ModelHandle
from edgehive.agents.modelstore import ModelSpec

from .candidates import Candidates
from .errors import DetectionError
from .nms import hard_nms

ROLES = ("boxes", "classes", "scores", "count")
POSTPROCESS_OP = "TFLite_Detection_PostProcess"


def output_roles(spec: ModelSpec, names: Sequence[str]) -> list[str]:
    """The role of each output: the manifest's `output_order`, else TFLite's own output names
    (`TFLite_Detection_PostProcess`, `:1`, `:2`, `:3`), else the TF1 order boxes, classes, scores, count."""
    if spec.output_order is not None:
        return list(spec.output_order)
    suffixes = {"": 0, ":1": 1, ":2": 2, ":3": 3}
    if len(names) == 4 and all(n.startswith(POSTPROCESS_OP) for n in names):
        picked = [suffixes.get(n[len(POSTPROCESS_OP) :]) for n in names]
        if sorted(p for p in picked if p is not None) == [0, 1, 2, 3]:
            return [ROLES[p] for p in picked if p is not None]
    return list(ROLES)


class SsdPostprocessedDecoder:
    def __init__(self, spec: ModelSpec, model: ModelHandle) -> None:
        if len(model.output_names) != 4:
            raise DetectionError(
                f"model {spec.name}: ssd_postprocessed expects 4 outputs (boxes, classes, scores, count), "
                f"got {len(model.output_names)}: {model.output_names}"
            )
        self.spec = spec
        roles = output_roles(spec, model.output_names)
        self._at = {role: roles.index(role) for role in ROLES}
        box_shape = model.output_shapes[self._at["boxes"]]
        if len(box_shape) != 3 or box_shape[-1] != 4:
            raise DetectionError(f"model {spec.name}: boxes output has shape {list(box_shape)}, expected [1, N, 4]")

    def decode(self, outputs: Sequence[np.ndarray]) -> Candidates:
        boxes = np.asarray(outputs[self._at["boxes"]], np.float32).reshape(-1, 4)
        classes = np.asarray(outputs[self._at["classes"]]).reshape(-1)
        scores = np.asarray(outputs[self._at["scores"]], np.float32).reshape(-1)
        count = min(int(np.asarray(outputs[self._at["count"]]).reshape(-1)[0]), len(scores))
        wanted = scores[:count] >= self.spec.score_threshold
        if self.spec.ignore_classes:
            wanted &= ~np.isin(np.rint(classes[:count]), self.spec.ignore_classes)
        keep = np.flatnonzero(wanted)
        ymin, xmin, ymax, xmax = np.clip(boxes[keep], 0.0, 1.0).T
        candidates = Candidates(
            np.stack([xmin, ymin, xmax, ymax], axis=1).reshape(-1, 4),
            scores[keep],
            np.rint(classes[keep]).astype(np.int64),
            np.zeros((len(keep), 0, 2), np.float32),
        )
        return hard_nms(candidates, self.spec.iou_threshold, self.spec.max_detections)
