"""Decoders for MediaPipe's Blaze detectors: BlazeFace and the BlazePose person detector.

Both emit, per anchor, a raw box (x, y, w, h offsets in input pixels relative to the anchor
centre, then keypoints) and a logit. This mirrors TensorsToDetectionsCalculator with
reverse_output_order, sigmoid scores clipped at +-100 and x/y/w/h scales (the manifest's
box_scale; by default the input size, as in MediaPipe's graphs), followed by the weighted NMS
the graphs use.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edgehive.agents.inference import ModelHandle
from edgehive.agents.modelstore import ModelSpec

from .anchors import four_scales, per_anchor_outputs, ssd_anchors
from .candidates import Candidates
from .errors import DetectionError
from .nms import weighted_nms

SCORE_CLIP = 100.0


class BlazeDecoder:
    """Anchor decoding + sigmoid + threshold + weighted NMS; boxes are the model's own boxes."""

    def __init__(self, spec: ModelSpec, model: ModelHandle) -> None:
        if spec.anchors is None:  # the manifest validator already insists; keep mypy and readers sure
            raise DetectionError(f"model {spec.name}: blaze decoders need anchors")
        self.spec = spec
        self.anchors = ssd_anchors(spec.anchors, spec.input_size)
        scale = four_scales(spec)
        self.scale, self.size_scale = scale[:2], scale[2:]
        self._boxes_at, self._scores_at = self._locate(spec, model.output_shapes, len(self.anchors))
        self.num_keypoints = (model.output_shapes[self._boxes_at][-1] - 4) // 2

    @staticmethod
    def _locate(spec: ModelSpec, shapes: Sequence[tuple[int, ...]], num_anchors: int) -> tuple[int, int]:
        """Which output holds the raw boxes and which the scores: chosen by shape, not by position."""
        a, b = per_anchor_outputs(spec, shapes, num_anchors)
        boxes_at, scores_at = (a, b) if shapes[a][2] > shapes[b][2] else (b, a)
        coords = shapes[boxes_at][2]
        if coords < 4 or coords % 2:
            raise DetectionError(f"model {spec.name}: {coords} values per box is not 4 + 2 per keypoint")
        return boxes_at, scores_at

    def decode(self, outputs: Sequence[np.ndarray]) -> Candidates:
        raw = outputs[self._boxes_at][0]
        logits = np.clip(outputs[self._scores_at][0].astype(np.float64), -SCORE_CLIP, SCORE_CLIP)
        classes = logits.argmax(axis=1)
        scores = 1.0 / (1.0 + np.exp(-logits[np.arange(len(logits)), classes]))
        keep = scores >= self.spec.score_threshold
        if not keep.any():
            return self.finish(Candidates.empty(self.num_keypoints))
        raw, anchors = raw[keep], self.anchors[keep]
        centre, size = anchors[:, None, :2], anchors[:, None, 2:]
        points = raw.reshape(len(raw), -1, 2) / self.scale * size + centre  # box centre, (unused), keypoints
        half = raw[:, 2:4] / self.size_scale * anchors[:, 2:] / 2.0
        boxes = np.concatenate([points[:, 0] - half, points[:, 0] + half], axis=1)
        candidates = Candidates(boxes, scores[keep].astype(np.float32), classes[keep], points[:, 2:])
        return self.finish(weighted_nms(candidates, self.spec.iou_threshold, self.spec.max_detections))

    def finish(self, candidates: Candidates) -> Candidates:
        return candidates


class BlazePoseDecoder(BlazeDecoder):
    """The pose detector's own box is the FACE; a person is the full-body alignment circle.

    Keypoint 0 is the mid-hip centre and keypoint 1 a point whose distance from it is the
    radius of a circle around the whole body (MediaPipe's AlignmentPointsRectsCalculator:
    box size = 2 x that distance). We report the square around that circle, widened to take
    in the face box where the circle falls short of the head; the Detector then clips it to
    the frame (a half-body shot's circle reaches below the picture).
    """

    def finish(self, candidates: Candidates) -> Candidates:
        if len(candidates) == 0 or self.num_keypoints < 2:
            return candidates
        w, h = self.spec.input_size
        centre = candidates.keypoints[:, 0]
        delta = (candidates.keypoints[:, 1] - centre) * (w, h)
        radius = np.hypot(delta[:, 0], delta[:, 1])
        half = np.stack([radius / w, radius / h], axis=1)
        body = np.concatenate([centre - half, centre + half], axis=1)
        face = candidates.boxes
        boxes = np.concatenate([np.minimum(body[:, :2], face[:, :2]), np.maximum(body[:, 2:], face[:, 2:])], axis=1)
        return Candidates(boxes.astype(np.float32), candidates.scores, candidates.classes, candidates.keypoints)
