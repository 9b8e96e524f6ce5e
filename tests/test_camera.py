"""The camera publisher against a real Mosquitto: raw JPEG frames, the fps cap, looping,
clear errors for sources that cannot be opened, and reopening sources that drop.

This machine has no camera, so the hardware is played by files: a video written here with
OpenCV, folders of images, and the same video served over HTTP for the live-stream path.
"""

from __future__ import annotations

import functools
import http.server
import math
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from harness import MosquittoBroker, Recorder, free_port, wait_until

from edgehive.sensors.camera import Backoff, Camera, CameraSettings, Pacer, fit, run_camera
from edgehive.sensors.sources import (
    DeviceSource,
    ImageFolderSource,
    LiveSource,
    StreamSource,
    SyntheticSource,
    VideoFileSource,
    make_source,
    redact_url,
)

JPEG_SOI = b"\xff\xd8\xff"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.upper().startswith("EDGEHIVE_") or key == "BALENA_DEVICE_UUID":
            monkeypatch.delenv(key)


# -- fake hardware -----------------------------------------------------------------------------


def write_video(path: Path, frames: int = 20, size: tuple[int, int] = (96, 72), color: tuple[int, int, int] = (0, 255, 0)) -> Path:
    """An MJPG AVI of a square moving across a dark background."""
    w, h = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 20, (w, h))
    assert writer.isOpened()
    for i in range(frames):
        frame = np.full((h, w, 3), 30, np.uint8)
        x = (i * (w - 16)) // max(1, frames - 1)
        cv2.rectangle(frame, (x, h // 2 - 8), (x + 16, h // 2 + 8), color, -1)
        writer.write(frame)
    writer.release()
    return path


def write_image(path: Path, width: int, height: int = 30, value: int = 128) -> Path:
    assert cv2.imwrite(str(path), np.full((height, width, 3), value, np.uint8))
    return path


def decode(payload: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(payload, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None, f"not a JPEG: {payload[:16]!r}"
    return image


# -- fixtures ----------------------------------------------------------------------------------


@pytest.fixture
def rec(mosquitto: MosquittoBroker, prefix: str) -> Iterator[Recorder]:
    recorder = Recorder(mosquitto.url, prefix)
    yield recorder
    recorder.close()


def frames(rec: Recorder, camera: str = "cam1") -> list[tuple[bytes, float]]:
    topic = f"{rec.prefix}/frames/{camera}"
    return [(payload, t) for tp, payload, t in list(rec.messages) if tp == topic]


def wait_frames(rec: Recorder, count: int, camera: str = "cam1", timeout_s: float = 20.0, after: int = 0) -> list[tuple[bytes, float]]:
    wait_until(lambda: len(frames(rec, camera)) >= after + count, timeout_s, f"{count} frames on frames/{camera}")
    return frames(rec, camera)[after:]


Start = Callable[..., Camera]


@pytest.fixture
def start_camera(mosquitto: MosquittoBroker, prefix: str) -> Iterator[Start]:
    """Start a Camera in its thread with test settings; every camera is stopped at the end."""
    cameras: list[Camera] = []

    def start(source: str, **overrides: object) -> Camera:
        values: dict[str, object] = dict(mqtt_url=mosquitto.url, prefix=prefix, node_id="test-node", camera="cam1",
                                         source=source, fps=20, source_retry_max_s=1.0)
        values.update(overrides)
        camera = Camera(CameraSettings(**values))  # type: ignore[arg-type]
        cameras.append(camera)
        camera.start()
        return camera

    yield start
    for camera in cameras:
        camera.stop()
        assert not camera.running, "camera thread did not stop"
        # MqttBus.stop() leaves paho's wake-up socket pair to Client.__del__; when the garbage
        # collector happens to finalize the sockets first they warn (an error under
        # filterwarnings=error). Close them here until bus.py does it itself.


# -- units: pacing, backoff, sizes, source strings, settings ------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_pacer_stays_on_its_grid_whatever_the_work_takes_and_skips_missed_ticks() -> None:
    clock = FakeClock()
    pacer = Pacer(10, clock)
    taken = []
    for _ in range(50):
        clock.now += pacer.delay() + 0.004  # the wait overshoots a little, as real sleeps do
        taken.append(clock.now)
        clock.now += 0.05  # reading, encoding and publishing take half a period
        pacer.advance()
    # No drift: frame 50 is taken 4.9 s after frame 1 (plus one overshoot), not 50 × (0.1 + work).
    assert taken[-1] - taken[0] == pytest.approx(4.9, abs=0.01)
    # A stall of about a second: one frame at once, then the next point of the same grid; the
    # nine ticks missed meanwhile are skipped, not made up in a burst.
    clock.now += 1.03
    assert pacer.delay() == 0
    pacer.advance()
    next_grid_point = 100.0 + 0.1 * math.ceil((clock.now - 100.0) / 0.1)
    assert clock.now + pacer.delay() == pytest.approx(next_grid_point)
    assert 0 < pacer.delay() < 0.1


def test_backoff_doubles_up_to_its_cap_and_starts_over_after_reset() -> None:
    backoff = Backoff(0.5, 4.0)
    assert [backoff.next() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    backoff.reset()
    assert backoff.next() == 0.5


def test_fit_resizes_and_keeps_the_aspect_ratio_when_one_side_is_zero() -> None:
    frame = np.zeros((480, 640, 3), np.uint8)
    assert fit(frame, 0, 0) is frame
    assert fit(frame, 320, 0).shape == (240, 320, 3)
    assert fit(frame, 0, 120).shape == (120, 160, 3)
    assert fit(frame, 100, 100).shape == (100, 100, 3)


@pytest.mark.parametrize(
    ("spec", "kind"),
    [
        ("synthetic", SyntheticSource),
        ("SYNTHETIC", SyntheticSource),
        ("demo", ImageFolderSource),
        ("0", DeviceSource),
        ("/dev/video2", DeviceSource),
        ("rtsp://user:secret@10.0.0.5:554/stream1", StreamSource),
        ("http://10.0.0.6:81/stream", StreamSource),
        ("https://example.org/live.m3u8", StreamSource),
        ("clip.mp4", VideoFileSource),
        ("/videos/clip.mkv", VideoFileSource),
        ("/photos/one.JPG", ImageFolderSource),
        ("/photos/", ImageFolderSource),
    ],
)
def test_a_source_string_chooses_its_source(spec: str, kind: type) -> None:
    assert type(make_source(spec)) is kind


def test_stream_passwords_never_reach_a_log_line() -> None:
    source = make_source("rtsp://admin:hunter2@cam.local:554/h264")
    assert "hunter2" not in source.name and "admin:***@cam.local:554" in source.name
    assert redact_url("rtsp://cam.local/x") == "rtsp://cam.local/x"


def test_settings_default_the_camera_to_the_node_and_refuse_what_cannot_work() -> None:
    settings = CameraSettings(node_id="pi-kitchen")
    assert (settings.camera, settings.source, settings.fps, settings.jpeg_quality, settings.loop) == ("pi-kitchen", "synthetic", 5.0, 80, True)
    assert CameraSettings(node_id="pi", camera="door").camera == "door"
    for bad in (dict(camera="front door"), dict(camera="a/b"), dict(source="ftp://nas/video.mp4"), dict(source=" "),
                dict(fps=0), dict(jpeg_quality=101), dict(width=-1), dict(model="people/v2")):
        with pytest.raises(ValueError):
            CameraSettings(node_id="pi", **bad)  # type: ignore[arg-type]


def test_settings_come_from_edgehive_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in dict(CAMERA="porch", SOURCE="rtsp://nvr/porch", FPS="2.5", JPEG_QUALITY="60", WIDTH="320",
                           HEIGHT="240", MODEL="face", LOOP="false", SOURCE_RETRY_MAX_S="5").items():
        monkeypatch.setenv(f"EDGEHIVE_{key}", value)
    s = CameraSettings()
    assert (s.camera, s.source, s.fps, s.jpeg_quality, s.width, s.height, s.model, s.loop, s.source_retry_max_s) == (
        "porch", "rtsp://nvr/porch", 2.5, 60, 320, 240, "face", False, 5.0)


# -- against a real Mosquitto -------------------------------------------------------------------


@pytest.mark.integration
def test_a_video_file_becomes_raw_jpeg_frames_of_the_configured_size(start_camera: Start, rec: Recorder, tmp_path: Path) -> None:
    video = write_video(tmp_path / "clip.avi", size=(96, 72))
    camera = start_camera(str(video), width=64, height=48, jpeg_quality=90)
    got = wait_frames(rec, 25)  # more than the file holds: it looped
    for payload, _ in got:
        assert payload[:3] == JPEG_SOI and payload[-2:] == b"\xff\xd9"  # the JPEG file itself, nothing around it
        assert decode(payload).shape == (48, 64, 3)
    # The moving square: the bright green column moves between the first frames.
    first, second = decode(got[0][0]), decode(got[5][0])
    assert int(np.argmax(first[24, :, 1])) != int(np.argmax(second[24, :, 1]))
    assert camera.stats.frames_read >= 25 and camera.stats.frames_published >= 25 and camera.stats.frames_failed == 0
    assert camera.stats.source_drops >= 1  # the end of the file, started over


@pytest.mark.integration
def test_the_fps_cap_holds_for_a_source_that_could_go_much_faster(start_camera: Start, rec: Recorder, tmp_path: Path) -> None:
    video = write_video(tmp_path / "clip.avi")  # OpenCV reads this in well under a millisecond a frame
    start_camera(str(video), fps=10)
    got = wait_frames(rec, 21)
    elapsed = got[20][1] - got[0][1]  # 20 periods of 0.1 s
    assert elapsed >= 1.4, f"21 frames in {elapsed:.2f} s: the 10 frames/s cap did not hold"
    assert elapsed <= 10.0, f"21 frames took {elapsed:.2f} s at 10 frames/s"


@pytest.mark.integration
def test_a_folder_of_images_is_published_in_name_order_and_loops(start_camera: Start, rec: Recorder, tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    write_image(folder / "b.png", 50)
    write_image(folder / "a.jpg", 40)
    write_image(folder / "c.png", 60)
    (folder / "notes.txt").write_text("not an image")
    start_camera(str(folder))
    got = wait_frames(rec, 7)
    assert [decode(p).shape[1] for p, _ in got[:7]] == [40, 50, 60, 40, 50, 60, 40]


@pytest.mark.integration
def test_with_loop_off_a_video_file_plays_once_and_the_camera_stops(start_camera: Start, rec: Recorder, tmp_path: Path) -> None:
    video = write_video(tmp_path / "once.avi", frames=12)
    camera = start_camera(str(video), loop=False, fps=50)
    wait_until(lambda: not camera.running, 20, "the camera to stop at the end of the file")
    assert camera.exit_code == 0
    assert camera.stats.frames_read == camera.stats.frames_published == 12
    wait_frames(rec, 12)


@pytest.mark.integration
def test_frames_resume_after_the_broker_restarts(start_camera: Start, rec: Recorder, mosquitto: MosquittoBroker) -> None:
    camera = start_camera("synthetic", width=160)
    wait_frames(rec, 2)
    mosquitto.stop()
    wait_until(lambda: not camera.bus.connected.is_set(), 15, "the camera to see the broker gone")
    mosquitto.start()
    wait_until(rec.bus.connected.is_set, 20, "the recorder to reconnect")
    before = len(frames(rec))
    wait_frames(rec, 3, after=before)
    assert camera.running


@pytest.mark.integration
def test_synthetic_needs_no_file_and_moves(start_camera: Start, rec: Recorder) -> None:
    start_camera("synthetic", width=320)
    got = wait_frames(rec, 3)
    images = [decode(p) for p, _ in got[:3]]
    assert all(image.shape == (240, 320, 3) for image in images)  # 640×480 pattern, width 320 keeps 4:3
    assert np.abs(images[0].astype(int) - images[2].astype(int)).sum() > 0  # time stamp and shapes move


@pytest.mark.integration
def test_a_missing_file_is_a_clear_error_not_a_traceback(mosquitto: MosquittoBroker, rec: Recorder, prefix: str, tmp_path: Path,
                                                          caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nowhere.mp4"
    settings = CameraSettings(mqtt_url=mosquitto.url, prefix=prefix, camera="cam1", source=str(missing))
    result: list[int] = []
    stop = threading.Event()
    thread = threading.Thread(target=lambda: result.append(run_camera(settings, stop)))
    with caplog.at_level("INFO", logger="edgehive.sensors"):
        thread.start()
        wait_until(lambda: not thread.is_alive(), 15, "run_camera to give up on a missing file")
    stop.set()
    assert result == [2]
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and f"no such video file: {missing}" in errors[0].getMessage()
    assert all(r.exc_info is None for r in caplog.records)
    assert "Traceback" not in capfd.readouterr().err
    assert frames(rec) == []


@pytest.mark.integration
def test_a_bad_device_is_a_clear_error_and_is_retried_with_backoff(start_camera: Start, rec: Recorder,
                                                                     caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> None:
    device = "/dev/video97"
    assert not os.path.exists(device)
    with caplog.at_level("INFO", logger="edgehive.sensors"):
        camera = start_camera(device, source_retry_max_s=0.5)
        wait_until(lambda: camera.stats.open_failures >= 3, 15, "three attempts to open the device")
        assert camera.running  # a live source is retried, not given up
        assert camera.stop() == 0
    messages = [r.getMessage() for r in caplog.records if r.levelname in ("ERROR", "WARNING")]
    assert messages and all(f"no such camera device: {device}" in m for m in messages)
    assert all(r.exc_info is None for r in caplog.records)
    assert "Traceback" not in capfd.readouterr().err
    assert frames(rec) == []


@pytest.mark.integration
def test_an_emptied_folder_is_reopened_and_frames_resume(start_camera: Start, rec: Recorder, tmp_path: Path) -> None:
    folder = tmp_path / "drop"
    folder.mkdir()
    write_image(folder / "1.png", 40)
    camera = start_camera(str(folder))
    wait_frames(rec, 3)
    (folder / "1.png").unlink()
    wait_until(lambda: camera.stats.open_failures >= 1, 15, "the camera to find the folder empty")
    before = len(frames(rec))
    write_image(folder / "2.png", 70)
    got = wait_frames(rec, 2, after=before)
    assert all(decode(p).shape[1] == 70 for p, _ in got)
    assert camera.running and camera.stats.source_drops >= 1


@pytest.mark.integration
def test_a_video_file_deleted_and_replaced_during_the_run_is_reopened(start_camera: Start, rec: Recorder, tmp_path: Path) -> None:
    video = write_video(tmp_path / "clip.avi", size=(96, 72))
    camera = start_camera(str(video))
    wait_frames(rec, 3)
    video.unlink()  # the open file plays to its end; reopening then fails until it is back
    wait_until(lambda: camera.stats.open_failures >= 1, 15, "the camera to miss the deleted file")
    before = len(frames(rec))
    write_video(tmp_path / "replacement.avi", size=(80, 60), color=(0, 0, 255)).rename(video)
    got = wait_frames(rec, 3, after=before)
    assert all(decode(p).shape == (60, 80, 3) for p, _ in got)  # frames of the new file
    assert camera.running


class _StalledCapture:
    """A capture whose stream went silent: read() blocks until FFmpeg's read timeout, which
    the test fires itself (`timed_out`)."""

    def __init__(self) -> None:
        self.released = threading.Event()
        self.timed_out = threading.Event()

    def read(self) -> tuple[bool, None]:
        self.timed_out.wait(30)
        return False, None

    def release(self) -> None:
        self.released.set()


class _StalledStream(LiveSource):
    name = "stalled stream"

    def __init__(self) -> None:
        super().__init__(stall_s=60)
        self.capture = _StalledCapture()

    def _capture(self) -> _StalledCapture:  # type: ignore[override]
        return self.capture


@pytest.mark.integration
def test_stopping_does_not_wait_for_a_stalled_live_source(mosquitto: MosquittoBroker, rec: Recorder, prefix: str) -> None:
    source = _StalledStream()
    camera = Camera(CameraSettings(mqtt_url=mosquitto.url, prefix=prefix, camera="cam1"), source=source)
    camera.start()
    wait_until(lambda: camera.bus.connected.is_set() and source._thread is not None, 15, "the camera to wait on the stream")
    started = time.monotonic()
    assert camera.stop(timeout_s=20) == 0
    assert time.monotonic() - started < 5, "stop waited for the stalled stream"
    assert camera.stats.source_drops == 0  # a stop is not a drop
    source.capture.timed_out.set()  # the blocked read returns at last: the reader thread releases the capture
    wait_until(source.capture.released.is_set, 5, "the capture to be released")


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client hanging up mid-file is what this test does on purpose


def _serve(folder: Path, port: int) -> tuple[_Server, threading.Thread]:
    server = _Server(("127.0.0.1", port), functools.partial(_QuietHandler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, thread


@pytest.mark.integration
def test_a_live_http_stream_that_goes_away_is_reconnected(start_camera: Start, rec: Recorder, tmp_path: Path) -> None:
    folder = tmp_path / "www"
    folder.mkdir()
    write_video(folder / "live.avi", frames=40, size=(64, 48))
    port = free_port()
    server, thread = _serve(folder, port)
    try:
        camera = start_camera(f"http://127.0.0.1:{port}/live.avi", fps=10, source_retry_max_s=0.5)
        wait_frames(rec, 2)
        server.shutdown()
        server.server_close()
        thread.join()
        wait_until(lambda: camera.stats.open_failures >= 1, 20, "the camera to notice the stream is gone")
        before = len(frames(rec))
        server, thread = _serve(folder, port)
        got = wait_frames(rec, 2, after=before)
        assert all(decode(p).shape == (48, 64, 3) for p, _ in got)
        assert camera.running and camera.stats.source_drops >= 1
    finally:
        server.shutdown()
        server.server_close()


# -- the process: what the `edgehive camera` command runs -----------------------------------------

_MAIN = (
    "import sys\n"
    "from edgehive import logs\n"
    "from edgehive.sensors.camera import CameraSettings, run_camera\n"
    "settings = CameraSettings()\n"
    "logs.configure(settings.log_level, settings.log_format)\n"
    "sys.exit(run_camera(settings))\n"
)


def _env(mosquitto: MosquittoBroker, prefix: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEHIVE_")}
    env.update(EDGEHIVE_MQTT_URL=mosquitto.url, EDGEHIVE_PREFIX=prefix, EDGEHIVE_CAMERA="cam1", EDGEHIVE_LOG_LEVEL="INFO", **extra)
    return env


@pytest.mark.integration
def test_run_camera_stops_cleanly_on_sigterm(mosquitto: MosquittoBroker, rec: Recorder, prefix: str) -> None:
    proc = subprocess.Popen([sys.executable, "-c", _MAIN], env=_env(mosquitto, prefix, EDGEHIVE_FPS="20"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_frames(rec, 3)
        proc.terminate()
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "camera cam1 stopped: frames_read" in err


@pytest.mark.integration
def test_run_camera_exits_2_with_one_clear_line_for_a_file_that_is_not_a_video(mosquitto: MosquittoBroker, prefix: str, tmp_path: Path) -> None:
    bogus = tmp_path / "notes.mp4"
    bogus.write_text("this is not a video")
    proc = subprocess.run([sys.executable, "-c", _MAIN], env=_env(mosquitto, prefix, EDGEHIVE_SOURCE=str(bogus)),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert f"cannot decode {bogus}: not a video" in proc.stderr
