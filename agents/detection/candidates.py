"""Decoded but not yet final detections, as parallel numpy arrays (one row per candidate)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Candidates:
    """Boxes are (x0, y0, x1, y1) normalized to the model input; keypoints (N, K, 2) likewise."""

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray
    keypoints: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.scores)
        if self.boxes.shape != (n, 4) or self.classes.shape != (n,) or self.keypoints.shape[:1] != (n,):
            raise ValueError("candidate arrays must have one row per score")

    def __len__(self) -> int:
        return len(self.scores)

    @classmethod
    def empty(cls, num_keypoints: int = 0) -> Candidates:
        return cls(
            np.zeros((0, 4), np.float32),
            np.zeros(0, np.float32),
            np.zeros(0, np.int64),
            np.zeros((0, num_keypoints, 2), np.float32),
        )

    def take(self, index: np.ndarray) -> Candidates:
        """The rows at `index` (an index array or a boolean mask), in that order."""
        return Candidates(self.boxes[index], self.scores[index], self.classes[index], self.keypoints[index])

    def best_first(self) -> Candidates:
        return self.take(np.argsort(-self.scores, kind="stable"))
