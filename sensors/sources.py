"""Frame sources: where a camera's pictures come from, chosen by one source string.

Every source has the same small interface: `open()` (raises `SourceError` with a message
for people), `read()` (the next BGR frame, or None when the source dropped or ended), and
`close()`. The camera decides what a drop means (reopen with backoff, loop, or stop); a
source never retries by itself.

| source string | source | live |
| --- | --- | --- |
| `synthetic` | a generated test pattern: moving shapes and the UTC time | yes |
| `demo` | the bundled photo sequence (`sensors/demo/`) | no |
| `0`, `1`, `/dev/video0`, `/dev/v4l/by-id/…` | an OpenCV (V4L2) camera device | yes |
| `rtsp://…`, `rtsps://…`, `rtmp://…`, `http(s)://…`, `udp://…`, `tcp://…`, `srt://…` | a stream through OpenCV's FFmpeg backend | yes |
| a folder, or an image file (`.jpg`, `.png`, …) | the images in name order | no |
| any other path (`.mp4`, `.avi`, `.mkv`, …) | a video file through FFmpeg | no |

A live source delivers the newest frame: a reader thread keeps draining the device or
stream, so a camera that publishes 5 frames/s from a 30 frames/s stream never falls behind.
"""

from __future__ import annotations

import logging
import math
import os
import re
import sys
import threading
import time
from abc import ABC, abstractmethod
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import cv2
import numpy as np

from ..errors import EdgehiveError

log = logging.getLogger(__name__)

Frame = np.ndarray  # BGR, uint8, height × width × 3

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pnm"})
STREAM_SCHEMES = frozenset({"rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "tcp", "srt"})
DEMO_FOLDER = Path(__file__).resolve().parent / "demo"
SYNTHETIC_SIZE = (640, 480)

# A live source that delivers nothing for this long has dropped, whatever the backend says.
STALL_S = 10.0
# FFmpeg's own limits for opening a stream and for one read (RTSP loss is noticed in this time).
OPEN_TIMEOUT_MS = 10_000
READ_TIMEOUT_MS = 8_000


class SourceError(EdgehiveError, RuntimeError):
    """A source that cannot be opened; the message says what and why, for people."""


def redact_url(url: str) -> str:
    """`rtsp://user:***@host/…`: the password never reaches a log."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def cv_message(error: Exception) -> str:
    """The last line of an OpenCV error (the first ones are its source location)."""
    lines = str(error).strip().splitlines()
    return lines[-1].strip() if lines else type(error).__name__


def _quiet_opencv() -> None:
    """OpenCV prints its own warnings for every failed open (\"can't be used to capture by
    name\", \"can't open camera by index\"); our SourceError says it better. Keep them when
    this module logs at DEBUG."""
    if not log.isEnabledFor(logging.DEBUG):
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


class FrameSource(ABC):
    """Where frames come from."""

    #: A short description for logs (a stream URL without its password).
    name: str = "source"
    #: Live sources (devices, streams, the synthetic pattern) are retried for ever when they
    #: cannot be opened; a file or folder that is missing at start is a configuration error.
    live: bool = False

    @abstractmethod
    def open(self) -> None:
        """Open (or reopen) the source; raises SourceError when it cannot."""

    @abstractmethod
    def read(self) -> Frame | None:
        """The next frame (BGR), or None when the source dropped or, for a file, ended."""

    def close(self) -> None:  # noqa: B027 - a no-op for sources that hold nothing, not a method to implement
        """Release the source; safe to call when it is not open."""

    def interrupt(self) -> None:  # noqa: B027 - a no-op for sources that never block
        """Wake a `read()` blocked in another thread (or a signal handler); it returns None."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


# -- generated ---------------------------------------------------------------------------------


class SyntheticSource(FrameSource):
    """A test pattern that needs no file or hardware: a gradient, a disc and a square that move
    in real time, and the UTC time and frame number written on it."""

    live = True

    def __init__(self, width: int = 0, height: int = 0, label: str = "edgehive synthetic") -> None:
        if width and not height:
            height = max(1, width * SYNTHETIC_SIZE[1] // SYNTHETIC_SIZE[0])
        elif height and not width:
            width = max(1, height * SYNTHETIC_SIZE[0] // SYNTHETIC_SIZE[1])
        self.width = width or SYNTHETIC_SIZE[0]
        self.height = height or SYNTHETIC_SIZE[1]
        self.label = label
        self.name = f"synthetic {self.width}x{self.height}"
        self._background: Frame | None = None
        self._count = 0
        self._t0 = 0.0

    def open(self) -> None:
        if self._background is None:
            x = np.linspace(0, 255, self.width, dtype=np.float32)
            y = np.linspace(0, 255, self.height, dtype=np.float32)[:, None]
            background = np.empty((self.height, self.width, 3), np.uint8)
            background[..., 0] = (0.6 * x + 0.0 * y).astype(np.uint8)  # blue grows to the right
            background[..., 1] = (0.5 * y + 0.0 * x).astype(np.uint8)  # green grows downwards
            background[..., 2] = 40
            self._background = background
            self._t0 = time.monotonic()

    def read(self) -> Frame | None:
        if self._background is None:
            self.open()
        assert self._background is not None
        frame: Frame = self._background.copy()
        w, h = self.width, self.height
        t = time.monotonic() - self._t0
        size = max(4, min(w, h) // 6)
        # A disc on a Lissajous path and a square bouncing left to right, both in real time.
        cx = int(w / 2 + (w / 2 - size) * math.sin(0.9 * t))
        cy = int(h / 2 + (h / 2 - size) * math.sin(1.3 * t + 0.5))
        cv2.circle(frame, (cx, cy), size // 2, (0, 215, 255), -1, cv2.LINE_AA)
        span = max(1, w - size)
        phase = (t * 0.25 * span) % (2 * span)
        sx = int(phase if phase < span else 2 * span - phase)
        cv2.rectangle(frame, (sx, h - size - 2), (sx + size, h - 2), (255, 255, 255), -1)
        self._count += 1
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"
        scale = max(0.35, h / 600)
        thickness = max(1, round(scale * 2))
        for i, text in enumerate((self.label, stamp, f"frame {self._count}")):
            org = (8, int(8 + (i + 1) * 30 * scale))
            cv2.putText(frame, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thickness + 2, cv2.LINE_AA)
            cv2.putText(frame, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thickness, cv2.LINE_AA)
        return frame


# -- files -------------------------------------------------------------------------------------


class ImageFolderSource(FrameSource):
    """The images of a folder in name order (or one image file); the listing is read again at
    every open, so images added to the folder join on the next loop."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.name = f"image folder {self.path}" if self.path.suffix.lower() not in IMAGE_SUFFIXES else f"image {self.path}"
        self._files: list[Path] = []
        self._next = 0
        self._warned: set[Path] = set()

    def open(self) -> None:
        path = self.path
        if path.is_dir():
            try:
                files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            except OSError as error:
                raise SourceError(f"cannot list image folder {path}: {error.strerror or error}") from None
            if not files:
                raise SourceError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in folder {path}")
        elif path.is_file():
            files = [path]
        else:
            raise SourceError(f"no such image folder or image file: {path}")
        self._files, self._next = files, 0

    def read(self) -> Frame | None:
        while self._next < len(self._files):
            path = self._files[self._next]
            self._next += 1
            frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if frame is not None:
                return frame
            if path not in self._warned:  # once per file: a corrupt image must not flood the log
                self._warned.add(path)
                log.warning("skipping %s: %s", path, "it is gone" if not path.exists() else "not an image OpenCV can read")
        return None

    def close(self) -> None:
        self._files, self._next = [], 0


class VideoFileSource(FrameSource):
    """A video file (mp4, avi, mkv, mov, webm, …) through OpenCV's FFmpeg backend."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.name = f"video file {self.path}"
        self._cap: cv2.VideoCapture | None = None

    def open(self) -> None:
        self.close()
        if not self.path.exists():
            raise SourceError(f"no such video file: {self.path}")
        if not self.path.is_file():
            raise SourceError(f"{self.path} is not a file")
        if not os.access(self.path, os.R_OK):
            raise SourceError(f"video file {self.path} is not readable (permissions)")
        _quiet_opencv()
        cap = cv2.VideoCapture(str(self.path), cv2.CAP_FFMPEG)
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"cannot decode {self.path}: not a video that OpenCV's FFmpeg backend can read")
        self._cap = cap

    def read(self) -> Frame | None:
        if self._cap is None:
            return None
        try:
            ok, frame = self._cap.read()
        except cv2.error as error:
            log.warning("reading %s failed: %s", self.path, cv_message(error))
            return None
        return frame if ok and frame is not None else None

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


# -- live --------------------------------------------------------------------------------------


class LiveSource(FrameSource):
    """A device or a network stream, drained by a reader thread that keeps only the newest
    frame; `read()` waits for a frame newer than the last one it returned."""

    live = True

    def __init__(self, stall_s: float = STALL_S) -> None:
        self.stall_s = stall_s
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closing = threading.Event()
        self._interrupted = threading.Event()
        self._latest: Frame | None = None
        self._seq = 0
        self._taken = 0
        self._ended = False

    @abstractmethod
    def _capture(self) -> cv2.VideoCapture:
        """An opened capture, or SourceError."""

    def open(self) -> None:
        self.close()
        _quiet_opencv()
        cap = self._capture()
        closing = threading.Event()
        with self._cond:
            self._latest, self._seq, self._taken, self._ended = None, 0, 0, False
            self._closing = closing
            self._interrupted.clear()
        self._thread = threading.Thread(target=self._pump, args=(cap, closing), name=f"capture {self.name}", daemon=True)
        self._thread.start()

    def _pump(self, cap: cv2.VideoCapture, closing: threading.Event) -> None:
        """The reader thread: it owns `cap` and releases it, whoever stops it."""
        try:
            while not closing.is_set():
                try:
                    ok, frame = cap.read()
                except cv2.error as error:
                    log.warning("%s: read failed: %s", self.name, cv_message(error))
                    ok, frame = False, None
                with self._cond:
                    if closing.is_set():  # closed meanwhile: a reopened source is not ours to touch
                        break
                    if not ok or frame is None:
                        self._ended = True
                        self._cond.notify_all()
                        return
                    self._latest = frame
                    self._seq += 1
                    self._cond.notify_all()
        finally:
            cap.release()

    def read(self) -> Frame | None:
        closing = self._closing
        with self._cond:
            if self._thread is None:
                return None
            fresh = self._cond.wait_for(
                lambda: self._seq > self._taken or self._ended or closing.is_set() or self._interrupted.is_set(), timeout=self.stall_s)
            if self._interrupted.is_set():
                return None
            if self._seq > self._taken:
                self._taken = self._seq
                return self._latest
            if not fresh:
                log.warning("%s delivered no frame for %g s", self.name, self.stall_s)
            return None

    def interrupt(self) -> None:
        self._interrupted.set()
        with self._cond:  # an RLock: safe from a signal handler that interrupted read() itself
            self._cond.notify_all()

    def close(self) -> None:
        thread, self._thread = self._thread, None
        self._closing.set()
        with self._cond:
            self._cond.notify_all()
        if thread is not None and thread is not threading.current_thread():
            # A read blocked in FFmpeg returns within its timeout; the thread then releases the
            # capture by itself, so a stuck stream never holds up a reconnect.
            thread.join(timeout=1.0)


class DeviceSource(LiveSource):
    """A camera device: an index (`0`) or a V4L2 device path (`/dev/video0`, `/dev/v4l/by-id/…`)."""

    def __init__(self, device: int | str, stall_s: float = STALL_S) -> None:
        super().__init__(stall_s)
        self.device = device
        self.name = f"camera device {device}"

    def _index(self) -> int:
        if isinstance(self.device, int):
            return self.device
        path = Path(self.device)
        if not path.exists():
            raise SourceError(f"no such camera device: {path} (is the camera plugged in, and the device passed to the container?)")
        real = os.path.realpath(path)
        match = re.fullmatch(r"/dev/video(\d+)", real)
        if match is None:
            raise SourceError(f"{path} is not a V4L2 video device (/dev/videoN)")
        return int(match.group(1))

    def _capture(self) -> cv2.VideoCapture:
        index = self._index()
        backend = cv2.CAP_V4L2 if sys.platform.startswith("linux") else cv2.CAP_ANY
        if backend == cv2.CAP_V4L2 and not os.path.exists(f"/dev/video{index}"):
            raise SourceError(f"no such camera device: /dev/video{index} (index {index}; is the camera plugged in, and the device passed to the container?)")
        try:
            cap = cv2.VideoCapture(index, backend)
        except cv2.error as error:
            raise SourceError(f"cannot open camera device {self.device}: {cv_message(error)}") from None
        if not cap.isOpened():
            cap.release()
            if backend == cv2.CAP_V4L2 and not os.access(f"/dev/video{index}", os.R_OK | os.W_OK):
                raise SourceError(f"cannot open camera device /dev/video{index}: permission denied (add the user to the 'video' group)")
            raise SourceError(f"cannot open camera device {self.device}: busy, or not a capture device")
        return cap


class StreamSource(LiveSource):
    """A network stream (RTSP, HTTP MJPEG or HLS, RTMP, …) through OpenCV's FFmpeg backend.

    RTSP goes over TCP unless `OPENCV_FFMPEG_CAPTURE_OPTIONS` says otherwise (Frigate's
    default too: UDP smears frames on a lossy Wi-Fi link)."""

    def __init__(self, url: str, stall_s: float = STALL_S) -> None:
        super().__init__(stall_s)
        self.url = url
        self.name = f"stream {redact_url(url)}"

    def _capture(self) -> cv2.VideoCapture:
        if self.url.lower().startswith("rtsp"):
            os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;tcp")
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, OPEN_TIMEOUT_MS, cv2.CAP_PROP_READ_TIMEOUT_MSEC, READ_TIMEOUT_MS]
        try:
            cap = cv2.VideoCapture(self.url, cv2.CAP_FFMPEG, params)
        except cv2.error as error:
            raise SourceError(f"cannot open {self.name}: {cv_message(error)}") from None
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"cannot open {self.name}: unreachable, refused, or not a video stream")
        return cap


# -- choosing ----------------------------------------------------------------------------------


def make_source(spec: str, width: int = 0, height: int = 0) -> FrameSource:
    """The source a source string names; ValueError for a string that names none.

    `width`/`height` size the synthetic pattern (other sources are resized by the camera)."""
    text = spec.strip()
    if not text:
        raise ValueError("the camera source is empty: give a device, a file, a folder, a URL, or 'synthetic'")
    if text.lower() == "synthetic":
        return SyntheticSource(width, height)
    if text.lower() == "demo":
        return ImageFolderSource(DEMO_FOLDER)
    if text.isdigit():
        return DeviceSource(int(text))
    if text.startswith("/dev/"):
        return DeviceSource(text)
    if "://" in text:
        scheme = text.split("://", 1)[0].lower()
        if scheme in STREAM_SCHEMES:
            return StreamSource(text)
        if scheme == "file":
            return make_source(urlsplit(text).path, width, height)
        raise ValueError(f"unsupported source scheme {scheme!r} in {redact_url(text)!r}: use {', '.join(sorted(STREAM_SCHEMES))}")
    path = Path(text).expanduser()
    if path.is_dir() or text.endswith(("/", os.sep)) or path.suffix.lower() in IMAGE_SUFFIXES:
        return ImageFolderSource(path)
    return VideoFileSource(path)
