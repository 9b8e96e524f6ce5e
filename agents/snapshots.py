"""Annotated snapshots, like Frigate's: the latest frame of each camera with its boxes drawn,
published at most once per interval on the agent's own `nodes/{node}/snapshots/{camera}`, which
the coordinator relays retained on `snapshots/{camera}`, so a dashboard or a Home Assistant MQTT
camera always shows what the fleet last saw."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import cv2
import numpy as np

from edgehive.schemas.vision import DetectionOutput

_COLOR = (0, 200, 255)  # BGR amber: visible on most scenes


def annotate(image: np.ndarray, output: DetectionOutput) -> np.ndarray:
    """A copy of `image` with each detection's box and `label score` drawn on it."""
    canvas: np.ndarray = image.copy()
    thickness = max(2, round(min(canvas.shape[:2]) / 200))
    for det in output.detections:
        x0, y0, x1, y1 = (round(v) for v in det.box)
        cv2.rectangle(canvas, (x0, y0), (x1, y1), _COLOR, thickness)
        cv2.putText(canvas, f"{det.label} {det.score:.2f}", (x0 + 3, max(14, y0 - 6)),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.5, _COLOR, 1, cv2.LINE_AA)
    return canvas


class SnapshotPublisher:
    """Throttles per camera and publishes annotated JPEGs through `publish(camera, jpeg)`."""

    def __init__(self, interval_s: float, publish: Callable[[str, bytes], None], quality: int = 70) -> None:
        self.interval_s = interval_s
        self.quality = quality
        self._publish = publish
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    def offer(self, camera: str, image: np.ndarray, output: DetectionOutput) -> bool:
        """Publish a snapshot if this camera's interval has passed; True when one was sent."""
        if self.interval_s <= 0:
            return False
        now = time.monotonic()
        with self._lock:
            if now - self._last.get(camera, -1e18) < self.interval_s:
                return False
            self._last[camera] = now
        ok, jpeg = cv2.imencode(".jpg", annotate(image, output), [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if ok:
            self._publish(camera, jpeg.tobytes())
        return bool(ok)
