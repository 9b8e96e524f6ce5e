"""SSD anchors as MediaPipe's SsdAnchorsCalculator makes them, in numpy.

BlazeFace and BlazePose predict offsets from a fixed grid of anchors; the grid is not in the
model file but in MediaPipe's graph config, so we port the calculator (the non-multiscale
path) and feed it the options from the manifest. A decoder computes its anchors once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from edgehive.agents.modelstore import AnchorSpec, ModelSpec

from .errors import DetectionError


def _scale(min_scale: float, max_scale: float, index: int, count: int) -> float:
    if count == 1:
        return (min_scale + max_scale) * 0.5
    return min_scale + (max_scale - min_scale) * index / (count - 1.0)


def ssd_anchors(spec: AnchorSpec, input_size: tuple[int, int]) -> np.ndarray:
    """(N, 4) float32 rows of (x_center, y_center, width, height), normalized to the input.

    Layers with the same stride share one feature map, their anchors interleaved per cell,
    exactly as in ssd_anchors_calculator.cc.
    """
    in_w, in_h = input_size
    strides = spec.strides
    count = len(strides)
    off_x, off_y = spec.anchor_offset
    layers: list[np.ndarray] = []
    layer = 0
    while layer < count:
        ratios: list[float] = []
        scales: list[float] = []
        last = layer
        while last < count and strides[last] == strides[layer]:
            scale = _scale(spec.min_scale, spec.max_scale, last, count)
            if last == 0 and spec.reduce_boxes_in_lowest_layer:
                ratios += [1.0, 2.0, 0.5]
                scales += [0.1, scale, scale]
            else:
                for ratio in spec.aspect_ratios:
                    ratios.append(ratio)
                    scales.append(scale)
                if spec.interpolated_scale_aspect_ratio > 0.0:
                    following = 1.0 if last == count - 1 else _scale(spec.min_scale, spec.max_scale, last + 1, count)
                    scales.append(math.sqrt(scale * following))
                    ratios.append(spec.interpolated_scale_aspect_ratio)
            last += 1
        if spec.fixed_anchor_size:
            sizes = np.ones((len(ratios), 2), np.float64)
        else:
            sizes = np.array([(s * math.sqrt(r), s / math.sqrt(r)) for s, r in zip(scales, ratios)], np.float64)
        map_h = math.ceil(in_h / strides[layer])
        map_w = math.ceil(in_w / strides[layer])
        cy, cx = np.meshgrid((np.arange(map_h) + off_y) / map_h, (np.arange(map_w) + off_x) / map_w, indexing="ij")
        grid = np.empty((map_h, map_w, len(ratios), 4), np.float64)
        grid[..., 0] = cx[..., None]
        grid[..., 1] = cy[..., None]
        grid[..., 2:] = sizes
        layers.append(grid.reshape(-1, 4))
        layer = last
    return np.concatenate(layers).astype(np.float32)


def four_scales(spec: ModelSpec) -> np.ndarray:
    """The manifest's box_scale as x, y, w, h (two values mean w = x, h = y; none: the input size)."""
    scale = spec.box_scale or spec.input_size
    return np.asarray(tuple(scale) * 2 if len(scale) == 2 else scale, np.float32)


def per_anchor_outputs(spec: ModelSpec, shapes: Sequence[tuple[int, ...]], num_anchors: int) -> tuple[int, int]:
    """The two outputs of shape [1, anchors, C] (boxes and scores, in some order): a model whose
    outputs do not match its manifest's anchor grid is refused with what it has."""
    per_anchor = [i for i, s in enumerate(shapes) if len(s) == 3 and s[0] == 1 and s[1] == num_anchors]
    if len(per_anchor) != 2:
        raise DetectionError(
            f"model {spec.name}: expected two outputs of shape [1, {num_anchors}, C] to match its anchors, "
            f"got {[list(s) for s in shapes]} (check the manifest's anchors and input_size)"
        )
    return per_anchor[0], per_anchor[1]
