"""From a camera frame to a model input tensor, and back from model coordinates to the frame.

Frames are letterboxed like MediaPipe's ImageToTensorCalculator (keep_aspect_ratio, centred,
zero border): stretching a 640x480 frame into a square would squash every face and person.
Models trained on stretched images (TF's SSDs: fixed-shape resizer; MediaPipe's object
graphs scale with STRETCH too) say `resize: stretch` in the manifest and get the whole frame
scaled to the input. The Letterbox record undoes either mapping for the boxes that come back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from edgehive.agents.inference import Layout

from .errors import DetectionError


@dataclass(frozen=True)
class Letterbox:
    """Where a (src_w, src_h) frame landed inside a (dst_w, dst_h) input: size and offset of the content."""

    src_size: tuple[int, int]
    dst_size: tuple[int, int]
    content_size: tuple[int, int]
    offset: tuple[int, int]

    @classmethod
    def fit(cls, src_size: tuple[int, int], dst_size: tuple[int, int]) -> Letterbox:
        (sw, sh), (dw, dh) = src_size, dst_size
        scale = min(dw / sw, dh / sh)
        cw = min(dw, max(1, round(sw * scale)))
        ch = min(dh, max(1, round(sh * scale)))
        return cls(src_size, dst_size, (cw, ch), ((dw - cw) // 2, (dh - ch) // 2))

    @classmethod
    def stretch(cls, src_size: tuple[int, int], dst_size: tuple[int, int]) -> Letterbox:
        """The whole input is content: each axis scaled on its own, no border."""
        return cls(src_size, dst_size, dst_size, (0, 0))

    def to_source(self, points: np.ndarray) -> np.ndarray:
        """Map (..., 2k) interleaved x, y values normalized to the input into source pixels (unclipped)."""
        (sw, sh), (dw, dh), (cw, ch), (ox, oy) = self.src_size, self.dst_size, self.content_size, self.offset
        out = np.array(points, dtype=np.float64, copy=True)
        out[..., 0::2] = (out[..., 0::2] * dw - ox) * (sw / cw)
        out[..., 1::2] = (out[..., 1::2] * dh - oy) * (sh / ch)
        return out


def as_bgr(image: Any) -> np.ndarray:
    """A contiguous 3-channel uint8 BGR image from BGR, BGRA or grey input; DetectionError otherwise."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise DetectionError(f"expected a uint8 numpy image, got {type(image).__name__} {getattr(image, 'dtype', '')}")
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    elif image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    elif image.ndim != 3 or image.shape[2] != 3:
        raise DetectionError(f"expected an HxWx3 BGR image, got shape {image.shape}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise DetectionError(f"empty image {image.shape}")
    return np.ascontiguousarray(image)


def letterbox(image_bgr: np.ndarray, dst_size: tuple[int, int], keep_aspect: bool = True) -> tuple[np.ndarray, Letterbox]:
    """The frame scaled to fit `dst_size` (w, h), centred on black, as RGB; and the mapping back.

    With `keep_aspect` False the frame is stretched to fill `dst_size` instead.
    """
    h, w = image_bgr.shape[:2]
    box = Letterbox.fit((w, h), dst_size) if keep_aspect else Letterbox.stretch((w, h), dst_size)
    cw, ch = box.content_size
    # Area averaging when shrinking: a 1080p frame sampled straight down to 128 px aliases badly.
    interpolation = cv2.INTER_AREA if cw < w or ch < h else cv2.INTER_LINEAR
    resized = cv2.resize(image_bgr, (cw, ch), interpolation=interpolation)
    canvas = np.zeros((dst_size[1], dst_size[0], 3), np.uint8)
    ox, oy = box.offset
    canvas[oy : oy + ch, ox : ox + cw] = cv2.cvtColor(resized, cv2.COLOR_BGR2RGB)
    return canvas, box


def to_tensor(
    rgb: np.ndarray, dtype: np.dtype[Any], input_range: tuple[float, float], layout: Layout = "NHWC"
) -> np.ndarray:
    """A (1, H, W, 3) tensor of the model's input type, or (1, 3, H, W) for an NCHW model.

    Float inputs map pixel 0..255 linearly onto `input_range`; uint8 inputs (quantized models,
    whose quantization already expects raw pixels) take the pixels as they are; int8 inputs
    take them shifted by -128.
    """
    if dtype == np.uint8:
        tensor = rgb
    elif dtype == np.int8:
        tensor = (rgb.astype(np.int16) - 128).astype(np.int8)
    elif np.issubdtype(dtype, np.floating):
        low, high = input_range
        tensor = rgb.astype(np.float32) * np.float32((high - low) / 255.0) + np.float32(low)
        tensor = tensor.astype(dtype, copy=False)
    else:
        raise DetectionError(f"unsupported model input type {dtype}")
    if layout == "NCHW":
        return np.ascontiguousarray(tensor.transpose(2, 0, 1))[None, ...]
    return tensor[None, ...]
