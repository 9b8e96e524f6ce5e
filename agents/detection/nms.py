"""Non-maximum suppression in numpy: MediaPipe's weighted variant and the classic hard one.

BlazeFace and BlazePose are trained for weighted NMS (their graphs use it): overlapping
candidates are averaged, weighted by score, which steadies the box from frame to frame.
"""

from __future__ import annotations

import numpy as np

from .candidates import Candidates


def iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Intersection over union of one (x0, y0, x1, y1) box with each row of `boxes`; 0 when degenerate."""
    ix0 = np.maximum(box[0], boxes[:, 0])
    iy0 = np.maximum(box[1], boxes[:, 1])
    ix1 = np.minimum(box[2], boxes[:, 2])
    iy1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(ix1 - ix0, 0, None) * np.clip(iy1 - iy0, 0, None)
    area = max(float((box[2] - box[0]) * (box[3] - box[1])), 0.0)
    areas = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
    union = area + areas - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def weighted_nms(c: Candidates, iou_threshold: float, max_detections: int) -> Candidates:
    """MediaPipe's WEIGHTED algorithm (class-agnostic, IoU overlap).

    The best remaining candidate and every candidate overlapping it by more than the threshold
    form a cluster; the output keeps the best one's score and class, with box and keypoints
    averaged over the cluster, weighted by score.
    """
    if len(c) == 0:
        return c
    remaining = np.argsort(-c.scores, kind="stable")
    boxes: list[np.ndarray] = []
    kps: list[np.ndarray] = []
    scores: list[float] = []
    classes: list[int] = []
    while remaining.size and len(scores) < max_detections:
        top = remaining[0]
        overlap = iou(c.boxes[top], c.boxes[remaining]) > iou_threshold
        overlap[0] = True  # a degenerate best box still forms its own cluster
        cluster = remaining[overlap]
        weights = c.scores[cluster].astype(np.float64)
        total = weights.sum()
        boxes.append((c.boxes[cluster] * weights[:, None]).sum(axis=0) / total)
        kps.append((c.keypoints[cluster] * weights[:, None, None]).sum(axis=0) / total)
        scores.append(float(c.scores[top]))
        classes.append(int(c.classes[top]))
        remaining = remaining[~overlap]
    return Candidates(
        np.asarray(boxes, np.float32),
        np.asarray(scores, np.float32),
        np.asarray(classes, np.int64),
        np.asarray(kps, np.float32).reshape(len(scores), c.keypoints.shape[1], 2),
    )


def hard_nms(c: Candidates, iou_threshold: float, max_detections: int, per_class: bool = True) -> Candidates:
    """Classic NMS: keep the best, drop what overlaps it by more than the threshold (per class)."""
    if len(c) == 0:
        return c
    order = np.argsort(-c.scores, kind="stable")
    keep: list[int] = []
    while order.size and len(keep) < max_detections:
        top = order[0]
        keep.append(int(top))
        rest = order[1:]
        suppress = iou(c.boxes[top], c.boxes[rest]) > iou_threshold
        if per_class:
            suppress &= c.classes[rest] == c.classes[top]
        order = rest[~suppress]
    return c.take(np.asarray(keep, np.int64))
