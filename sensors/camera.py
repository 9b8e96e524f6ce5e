"""`edgehive camera`: frames from a source, as raw JPEG bytes on `frames/{camera}`.

The payload is the JPEG file itself (no JSON, no base64), published at QoS 0: a frame is
real time, and a lost one is replaced by the next. That is also why
`mosquitto_pub -t edgehive/v1/frames/cam1 -f sensors/demo/01-astronaut.jpg` (any JPEG) is a camera as good as this one.

Frames are taken on a fixed clock grid (`fps` at most): tick k is at start + k/fps, so the
time spent reading, encoding and publishing never adds up to drift, and ticks missed while
a source was slow are skipped, not made up in a burst. A source that drops is reopened
with capped exponential backoff; a video file or image folder starts over at its end
unless `loop` is off.
"""

from __future__ import annotations

import logging
import math
import os
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import cv2
import orjson
from pydantic import Field, field_validator, model_validator

from edgehive.bus import MqttBus, Outgoing
from edgehive.schemas import Topics, envelope
from edgehive.schemas.base import IDENT_PATTERN
from edgehive.settings import CommonSettings
from edgehive.signals import Stop, StopLike

from .direct import DirectLink
from .sources import Frame, FrameSource, SourceError, cv_message, make_source

log = logging.getLogger(__name__)

RETRY_MIN_S = 0.5


class CameraSettings(CommonSettings):
    """Settings of `edgehive camera` (each an `EDGEHIVE_*` variable and a command-line option)."""

    camera: str = Field("", description="Camera id, the last level of frames/{camera} (default: the node id)")
    source: str = Field("synthetic", description="What to capture: a device (0, /dev/video0), a video file, a folder of images, an rtsp:// or http(s):// URL, demo, or synthetic")
    fps: float = Field(5.0, gt=0, le=120, description="Most frames published per second")
    jpeg_quality: int = Field(80, ge=1, le=100, description="JPEG quality of published frames, 1-100")
    width: int = Field(0, ge=0, le=8192, description="Resize frames to this width (0: keep; with height 0, the aspect ratio is kept)")
    height: int = Field(0, ge=0, le=8192, description="Resize frames to this height (0: keep; with width 0, the aspect ratio is kept)")
    model: str = Field("", description="Model this camera asks for (empty: the coordinator's default)")
    loop: bool = Field(True, description="Start a video file or image folder over at its end (false: the camera stops there)")
    source_retry_max_s: float = Field(30.0, gt=0, le=3600, description="Longest wait between attempts to reopen a source that dropped or cannot be opened")
    direct: bool = Field(False, description=(
        "Send each frame straight to an agent that asks for it (direct frames) instead of on frames/{camera}: "
        "the coordinator's CPU per frame about halves (for a weak head device), but frames no longer appear on "
        "frames/{camera} and the latency's tail (p99) grows when an agent serves many cameras"))

    @field_validator("source")
    @classmethod
    def _known_source(cls, value: str) -> str:
        make_source(value)  # ValueError for a string that names no source
        return value.strip()

    @field_validator("model")
    @classmethod
    def _model_id(cls, value: str) -> str:
        if value and not re.fullmatch(IDENT_PATTERN, value):
            raise ValueError(f"invalid model name {value[:80]!r}: use letters, digits, '_', '.', ':', '-' (at most 64)")
        return value

    @model_validator(mode="after")
    def _camera_id(self) -> CameraSettings:
        if not self.camera:
            self.camera = self.node_id
        Topics(self.prefix).frames(self.camera)  # TopicError when it cannot be a topic level
        return self


@dataclass
class CameraStats:
    frames_read: int = 0  # frames the source delivered
    frames_published: int = 0  # accepted by the MQTT client, on frames/{camera}
    frames_direct: int = 0  # handed to the direct link (sent to an agent that asked, or waiting for one)
    frames_failed: int = 0  # read but not published: JPEG encoding failed, or no connection / queue full
    source_drops: int = 0  # times the source dropped or ended and was reopened
    open_failures: int = 0  # attempts to open the source that failed

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class Backoff:
    """Capped exponential delays: first, 2 × first, 4 × first, … up to `max_s`."""

    def __init__(self, first_s: float = RETRY_MIN_S, max_s: float = 30.0, factor: float = 2.0) -> None:
        self.first_s = min(first_s, max_s)
        self.max_s = max_s
        self.factor = factor
        self.attempt = 0

    def next(self) -> float:
        delay = min(self.max_s, self.first_s * self.factor ** min(self.attempt, 64))
        self.attempt += 1
        return delay

    def reset(self) -> None:
        self.attempt = 0


class Pacer:
    """Frame ticks on a fixed grid, start + k / fps: work between ticks never causes drift,
    and ticks missed while the loop was late are skipped rather than made up."""

    def __init__(self, fps: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.period = 1.0 / fps
        self.clock = clock
        self.due = clock()

    def delay(self) -> float:
        """Seconds until the next tick (0 when it is due)."""
        return max(0.0, self.due - self.clock())

    def advance(self) -> None:
        """A frame was taken for the current tick: move to the next tick that is still ahead."""
        self.due += self.period
        now = self.clock()
        if self.due <= now:  # late by a whole period or more: skip to the next grid point
            self.due += self.period * (math.floor((now - self.due) / self.period) + 1)


def fit(frame: Frame, width: int, height: int) -> Frame:
    """Resize to width × height; with one of them 0 the aspect ratio is kept; both 0: unchanged."""
    h, w = frame.shape[:2]
    if not width and not height:
        return frame
    if not height:
        height = max(1, round(h * width / w))
    elif not width:
        width = max(1, round(w * height / h))
    if (width, height) == (w, h):
        return frame
    shrink = width * height < w * h
    return cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def encode_jpeg(frame: Frame, quality: int) -> bytes:
    ok, buffer = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("OpenCV could not encode the frame as JPEG")
    return buffer.tobytes()


class Camera:
    """One camera: a frame source, paced, encoded and published on `frames/{camera}`.

    `run(stop)` blocks until `stop` is set (or a non-looping file ends); `start()` / `stop()`
    run it in a thread instead."""

    def __init__(self, settings: CameraSettings, source: FrameSource | None = None, bus: MqttBus | None = None) -> None:
        """With `settings.direct` on (it is off by default), the camera offers frames to the agents
        the coordinator assigns (sensors/direct.py); with no assignment (an older coordinator, no
        node with the model, tiles) frames go to `frames/{camera}` as from any camera. With it off,
        the camera never announces itself on `cameras/{camera}/direct` and every frame goes to
        `frames/{camera}`. A `bus` given by the caller is used as it is (and never goes direct)."""
        direct = settings.direct
        self.settings = settings
        self.camera = settings.camera
        self.topics = Topics(settings.prefix)
        self.topic = self.topics.frames(self.camera)
        self.source = source or make_source(settings.source, settings.width, settings.height)
        self.stats = CameraStats()
        # About one second of frames may wait for a slow link; beyond that new frames are dropped
        # (and counted) instead of piling up in memory.
        self.bus = bus or MqttBus(
            settings.broker, self.topics, f"edgehive-camera-{self.camera}-{os.getpid()}-{secrets.token_hex(2)}",
            source=f"camera-{self.camera}", qos0_queue_max=max(2, math.ceil(settings.fps)),
            # A camera that vanishes withdraws its offer of direct frames (an empty retained message).
            will=Outgoing(self.topics.camera_direct(self.camera), b"", qos=1, retain=True) if direct else None,
        )
        self.direct = DirectLink(self.bus, self.topics, self.camera, settings.model or None) if direct and bus is None else None
        self.exit_code: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._undelivered = False
        self._ever_connected = False

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Run in a background thread; `exit_code` is set when it ends."""
        self._stop.clear()
        self._thread = threading.Thread(target=self.run, name=f"camera {self.camera}", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> int | None:
        """Stop the thread `start()` began and wait for it; returns the exit code."""
        self._stop.set()
        self.source.interrupt()
        if self._thread is not None:
            self._thread.join(timeout_s)
        return self.exit_code

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def run(self, stop: StopLike | None = None) -> int:
        """Capture and publish until `stop` is set. Returns 0 after a stop or the end of a file
        with `loop` off, 2 when a file or folder cannot be opened at start (a live source is
        retried instead)."""
        stop = stop if stop is not None else self._stop
        self.exit_code = None
        code = 2
        try:
            code = self._run(stop)
        finally:
            self.exit_code = code
        return code

    def _run(self, stop: StopLike) -> int:
        settings = self.settings
        try:
            self.source.open()
            opened = True
        except SourceError as error:
            self.stats.open_failures += 1
            if not self.source.live:
                log.error("camera %s: %s", self.camera, error)
                return 2
            log.error("camera %s: %s; retrying with backoff up to %g s", self.camera, error, settings.source_retry_max_s)
            opened = False
        log.info("camera %s: %s → %s at ≤ %g frames/s, JPEG quality %d", self.camera, self.source.name, self.topic, settings.fps, settings.jpeg_quality)
        self.bus.start(timeout_s=None)
        try:
            return self._loop(stop, opened)
        finally:
            self.source.close()
            if self.direct is not None:
                self.direct.withdraw()
            self.bus.stop()
            log.info("camera %s stopped: %s", self.camera, ", ".join(f"{k} {v}" for k, v in self.stats.as_dict().items()))

    # -- the loop ----------------------------------------------------------------------------

    def _loop(self, stop: StopLike, opened: bool) -> int:
        settings, source, stats = self.settings, self.source, self.stats
        backoff = Backoff(RETRY_MIN_S, settings.source_retry_max_s)
        pacer = Pacer(settings.fps)
        wait_s = 0.0 if opened else backoff.next()
        since_open = 0
        while not stop.is_set():
            if not opened:
                if stop.wait(wait_s):
                    break
                try:
                    source.open()
                except SourceError as error:
                    stats.open_failures += 1
                    wait_s = backoff.next()
                    log.warning("camera %s: %s; retrying in %.1f s", self.camera, error, wait_s)
                    continue
                opened, since_open = True, 0
                if backoff.attempt:
                    log.info("camera %s: %s is back", self.camera, source.name)
                continue

            if not self.bus.connected.is_set():
                # Nobody to deliver to: a file waits where it is; a live source's reader thread
                # keeps draining, so the first frame after the broker is back is a fresh one.
                if not self._undelivered:
                    self._undelivered = True
                    if self._ever_connected:
                        log.warning("camera %s: no broker connection; frames wait until it is back", self.camera)
                    else:
                        log.info("camera %s: waiting for the broker at %s", self.camera, self.settings.broker.redacted())
                self.bus.connected.wait(0.25)
                continue
            delay = pacer.delay()
            if delay > 0 and stop.wait(delay):
                break
            frame = source.read()
            pacer.advance()
            if frame is None:
                if stop.is_set():  # interrupted by a stop, not a drop
                    break
                source.close()
                opened = False
                if not source.live and not settings.loop:
                    log.info("camera %s: end of %s (loop is off)", self.camera, source.name)
                    return 0
                stats.source_drops += 1
                if since_open:  # it delivered: start over at once (a file's end, a brief drop)
                    backoff.reset()
                    wait_s = 0.0
                else:  # opened but delivered nothing: do not spin
                    wait_s = backoff.next()
                if source.live:
                    log.warning("camera %s: %s dropped after %d frames; reopening", self.camera, source.name, since_open)
                else:
                    log.debug("camera %s: end of %s after %d frames; starting over", self.camera, source.name, since_open)
                continue
            since_open += 1
            stats.frames_read += 1
            if since_open == 1:
                backoff.reset()
            self._publish(frame)
        return 0

    def _publish(self, frame: Frame) -> None:
        settings, stats = self.settings, self.stats
        try:
            image = fit(frame, settings.width, settings.height)
            jpeg = encode_jpeg(image, settings.jpeg_quality)
        except (cv2.error, ValueError) as error:
            stats.frames_failed += 1
            log.warning("camera %s: a frame could not be encoded: %s", self.camera, cv_message(error))
            return
        if self.direct is not None:
            self.direct.set_size(image.shape[1], image.shape[0])
            if self.direct.offer(jpeg, time.time()):
                stats.frames_direct += 1
                self._ever_connected = True
                return
        if settings.model:  # the envelope carries the model this camera asks for, and when it saw the frame
            jpeg = envelope.pack(orjson.dumps({"v": 1, "captured": time.time(), "model": settings.model}), jpeg)
        if self.bus.publish(self.topic, jpeg, qos=0):
            stats.frames_published += 1
            self._ever_connected = True
            if self._undelivered:
                self._undelivered = False
                log.info("camera %s: publishing again", self.camera)
        else:
            stats.frames_failed += 1
            if not self._undelivered:  # once per outage, not once per frame
                self._undelivered = True
                log.warning("camera %s: frames are being dropped (connection lost, or the link is slower than %g frames/s)", self.camera, settings.fps)


def run_camera(settings: CameraSettings, stop: StopLike | None = None) -> int:
    """Run one camera until SIGTERM or SIGINT (or until `stop` is set, for callers that manage
    their own lifecycle). Returns the process exit code: 0 after a stop, 2 when a file or
    folder source cannot be opened. Signal handlers are installed only when `stop` is None
    (which must then be called from the main thread)."""
    if stop is None:
        signals = Stop().install()
        camera = Camera(settings)
        signals.on_stop(camera.source.interrupt)  # a live source may be waiting for its next frame
        return camera.run(signals)
    return Camera(settings).run(stop)
