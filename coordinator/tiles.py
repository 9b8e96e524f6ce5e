"""Tiles: small things in big frames, each tile a job of its own, merged into one result.

A 1080p frame squeezed into a 300×300 model input shrinks a person 128 px tall to 36 px,
below what the model sees. Cut into overlapping tiles about twice the model's input, each
tile is shrunk only ~2×, and each tile is a job placed like any other, so several nodes
work on one frame at once. The whole frame is run too, so that an object larger than a tile
is found whole. The coordinator never decodes the image: it reads the frame's size from the
JPEG header, sends the same JPEG with a tile rectangle, and merges the detections that come
back (already in the frame's own pixels). Pure Python, so the coordinator needs no numpy.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from typing import Any

TILE_OVERLAP = 0.15  # of a tile's side, on each inner seam: an object on a seam is whole in one tile
AUTO_TILE_FACTOR = 2.0  # auto tiles are about this many model inputs on a side
MAX_TILES = 16  # grid cells; a larger grid gets larger tiles
MERGE_OVERLAP = 0.6  # same label, intersection over the smaller box: the same object seen twice

Rect = tuple[int, int, int, int]  # x0, y0, x1, y1 in frame pixels, x1 and y1 exclusive

_GRID = re.compile(r"^([1-9])x([1-9])$")
_SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def jpeg_size(jpeg: bytes) -> tuple[int, int] | None:
    """(width, height) from the JPEG's start-of-frame header, or None when it has none we can read."""
    i = 2
    end = len(jpeg)
    while i + 4 <= end:
        if jpeg[i] != 0xFF:
            return None
        marker = jpeg[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # no length field
            i += 2
            continue
        length = int.from_bytes(jpeg[i + 2:i + 4], "big")
        if marker in _SOF_MARKERS:
            if i + 9 > end:
                return None
            height = int.from_bytes(jpeg[i + 5:i + 7], "big")
            width = int.from_bytes(jpeg[i + 7:i + 9], "big")
            return (width, height) if width and height else None
        if marker == 0xDA or length < 2:  # image data begins before any size: not a baseline/progressive JPEG
            return None
        i += 2 + length
    return None


def _spans(length: int, parts: int) -> list[tuple[int, int]]:
    """`parts` overlapping spans covering 0..length."""
    if parts <= 1:
        return [(0, length)]
    side = length / (parts - (parts - 1) * TILE_OVERLAP)
    step = side * (1 - TILE_OVERLAP)
    spans = []
    for k in range(parts):
        start = round(k * step)
        stop = length if k == parts - 1 else min(length, round(k * step + side))
        spans.append((start, stop))
    return spans


def grid_for(setting: str, frame: tuple[int, int], model_input: tuple[int, int]) -> tuple[int, int]:
    """(columns, rows) for a camera's `tiles` setting; (1, 1) means the frame is run whole only."""
    if setting == "off":
        return (1, 1)
    match = _GRID.match(setting)
    if match:
        return (int(match.group(1)), int(match.group(2)))
    width, height = frame
    tile_w, tile_h = (AUTO_TILE_FACTOR * side for side in model_input)
    if width <= 2 * tile_w and height <= 2 * tile_h:
        return (1, 1)  # shrinking it whole loses at most ~4× against tiles: not worth several jobs
    cols, rows = max(1, math.ceil(width / tile_w)), max(1, math.ceil(height / tile_h))
    while cols * rows > MAX_TILES:
        if cols >= rows:
            cols -= 1
        else:
            rows -= 1
    return (cols, rows)


def plan_tiles(setting: str, frame: tuple[int, int], model_input: tuple[int, int]) -> list[Rect | None]:
    """The parts one frame is run as: None is the whole frame, then each tile's rectangle.

    A single part (`[None]`) means no tiling."""
    cols, rows = grid_for(setting, frame, model_input)
    if cols * rows == 1:
        return [None]
    width, height = frame
    rects: list[Rect | None] = [None]
    for y0, y1 in _spans(height, rows):
        for x0, x1 in _spans(width, cols):
            rects.append((x0, y0, x1, y1))
    return rects


def _intersection_over_smaller(a: Sequence[float], b: Sequence[float]) -> float:
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return (iw * ih) / smaller if smaller > 0 else 0.0


def merge_detections(parts: Iterable[Sequence[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Every part's detections (boxes already in frame pixels), one per object, best score first.

    An object on a seam, or found both in a tile and in the whole frame, comes back more than
    once; of two boxes with the same label where the smaller lies mostly inside the other, the
    better-scored one stays."""
    candidates = sorted((d for part in parts for d in part), key=lambda d: d["score"], reverse=True)
    kept: list[dict[str, Any]] = []
    for detection in candidates:
        if all(k["label"] != detection["label"] or _intersection_over_smaller(k["box"], detection["box"]) < MERGE_OVERLAP for k in kept):
            kept.append(detection)
    return kept
