"""A tile of a frame, run on its own: crop, detect, and put the boxes back in the frame.

The coordinator sends every tile job the whole JPEG with the tile's rectangle (it never
decodes images), so the node decodes the frame and runs the model on the crop only. The
result describes the whole frame, as an untiled one does: boxes in the frame's pixels and
normalized to the frame, `width` and `height` the frame's.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edgehive.schemas.vision import Detection, DetectionOutput

from .errors import DetectionError


def crop(image: np.ndarray, tile: Sequence[int]) -> np.ndarray:
    """The tile's pixels (a view, no copy); a rectangle outside the frame is an error value."""
    height, width = image.shape[:2]
    x0, y0, x1, y1 = tile
    if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
        raise DetectionError(f"tile {list(tile)} does not lie inside the {width}x{height} frame")
    return image[y0:y1, x0:x1]


def to_frame(output: DetectionOutput, tile: Sequence[int], frame_size: tuple[int, int]) -> DetectionOutput:
    """`output` of a model run on the tile, described in the whole frame's coordinates."""
    width, height = frame_size
    x0, y0 = tile[0], tile[1]
    moved = []
    for d in output.detections:
        bx0, by0, bx1, by1 = d.box[0] + x0, d.box[1] + y0, d.box[2] + x0, d.box[3] + y0
        moved.append(Detection(
            label=d.label, score=d.score,
            box=[round(bx0, 2), round(by0, 2), round(bx1, 2), round(by1, 2)],
            box_norm=[round(min(bx0 / width, 1.0), 5), round(min(by0 / height, 1.0), 5),
                      round(min(bx1 / width, 1.0), 5), round(min(by1 / height, 1.0), 5)],
        ))
    return output.model_copy(update={"detections": moved, "width": width, "height": height})
