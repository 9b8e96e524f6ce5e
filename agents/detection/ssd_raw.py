"""Decoder for SSD models exported without TFLite's detection post-processing.

Such a model (the TF Object Detection API's SSD-MobileNet exported with raw outputs, as
MediaPipe ships its Open Images detector) emits, per anchor, a box encoding and one score
per class; the anchors themselves live in the graph config. We port what MediaPipe's
TensorsToDetectionsCalculator does for it: anchors from SsdAnchorsCalculator options, TF's
box coder (y, x, h, w offsets divided by the box scales, sizes through exp), sigmoid class
scores with the ignored classes (background) left out of the arg-max, a score threshold,
then class-agnostic hard NMS, as MediaPipe's NonMaxSuppressionCalculator does.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edgehive.agents.inference import ModelHandle
from edgehive.agents.modelstore import ModelSpec

from .anchors import four_scales, per_anchor_outputs, ssd_anchors
from .candidates import Candidates
from .errors import DetectionError
from .nms import hard_nms

SCORE_CLIP = 100.0
# exp() of a wild size offset overflows float32; no real box is e^10 times its anchor.
MAX_LOG_SIZE = 10.0


def locate_outputs(spec: ModelSpec, model: ModelHandle, num_anchors: int) -> tuple[int, int]:
    """Which output holds the box encodings [1, N, 4] and which the class scores [1, N, labels]."""
    shapes = model.output_shapes
    a, b = per_anchor_outputs(spec, shapes, num_anchors)
    if shapes[a][2] == shapes[b][2]:  # as many classes as box values: the names decide, else TF's order
        boxes_at = b if "box" in model.output_names[b].lower() and "box" not in model.output_names[a].lower() else a
    else:
        boxes_at = a if shapes[a][2] == 4 else b
    scores_at = b if boxes_at == a else a
    if shapes[boxes_at][2] != 4:
        raise DetectionError(f"model {spec.name}: no output of 4 box values per anchor in {[list(s) for s in shapes]}")
    classes = shapes[scores_at][2]
    if classes != len(spec.labels):
        raise DetectionError(
            f"model {spec.name}: the model scores {classes} classes, the manifest lists {len(spec.labels)} labels"
        )
    return boxes_at, scores_at


class SsdAnchorsDecoder:
    """Raw SSD box encodings and class logits -> thresholded, suppressed, labelled candidates."""

    def __init__(self, spec: ModelSpec, model: ModelHandle) -> None:
        if spec.anchors is None:  # the manifest validator already insists
            raise DetectionError(f"model {spec.name}: ssd_anchors needs anchors")
        self.spec = spec
        self.anchors = ssd_anchors(spec.anchors, spec.input_size)
        self.scale = four_scales(spec)
        self._boxes_at, self._scores_at = locate_outputs(spec, model, len(self.anchors))
        self._ignored = sorted(set(spec.ignore_classes))

    def decode(self, outputs: Sequence[np.ndarray]) -> Candidates:
        logits = np.clip(np.asarray(outputs[self._scores_at][0], np.float32), -SCORE_CLIP, SCORE_CLIP)
        if self._ignored:
            logits = logits.copy()
            logits[:, self._ignored] = -np.inf
        classes = logits.argmax(axis=1)
        best = logits[np.arange(len(logits)), classes].astype(np.float64)
        scores = 1.0 / (1.0 + np.exp(-best))
        keep = np.flatnonzero(scores >= self.spec.score_threshold)
        if keep.size == 0:
            return Candidates.empty()
        raw = np.asarray(outputs[self._boxes_at][0], np.float32)[keep]
        anchors = self.anchors[keep]
        sx, sy, sw, sh = self.scale
        x = raw[:, 1] / sx * anchors[:, 2] + anchors[:, 0]
        y = raw[:, 0] / sy * anchors[:, 3] + anchors[:, 1]
        w = np.exp(np.minimum(raw[:, 3] / sw, MAX_LOG_SIZE)) * anchors[:, 2]
        h = np.exp(np.minimum(raw[:, 2] / sh, MAX_LOG_SIZE)) * anchors[:, 3]
        boxes = np.stack([x - w / 2, y - h / 2, x + w / 2, y + h / 2], axis=1).astype(np.float32)
        candidates = Candidates(boxes, scores[keep].astype(np.float32), classes[keep].astype(np.int64), np.zeros((keep.size, 0, 2), np.float32))
        return hard_nms(candidates, self.spec.iou_threshold, self.spec.max_detections, per_class=False)
