"""Real models on real photos: BlazeFace and the BlazePose person detector through LiteRT."""

from __future__ import annotations

import ctypes
import functools
import logging
import shutil
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

import numpy as np
import pytest
from vision_fixtures import REFERENCE_FACE, box_iou, face_detector, manifest, models_dir, person_detector, photo  # noqa: F401 - fixtures

from edgehive.agents.detection import DetectionError, Detector, load_detector
from edgehive.agents.inference import (
    BackendUnavailable,
    EdgeTPUBackend,
    EdgeTPUConfig,
    LiteRTBackend,
    LiteRTConfig,
    available_backends,
    backend_availability,
    create_backend,
)
from edgehive.agents.modelstore import Manifest
from edgehive.agents.vision import DetectorPool, Instances
from edgehive.schemas.vision import Detection, DetectionOutput


def check_geometry(found: list[Detection], width: int, height: int) -> None:
    for det in found:
        x0, y0, x1, y1 = det.box
        assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height, det.box
        expected = [x0 / width, y0 / height, x1 / width, y1 / height]
        assert det.box_norm == pytest.approx(expected, abs=1e-4)


def test_astronaut_has_exactly_one_face_where_drawn_by_hand(face_detector: Detector) -> None:
    found = face_detector.detect(photo("astronaut"))
    assert [d.label for d in found] == ["face"]
    assert found[0].score >= 0.5
    assert box_iou(found[0].box, REFERENCE_FACE) >= 0.5, found[0].box
    check_geometry(found, 512, 512)


@pytest.mark.parametrize("name", ["coffee", "rocket"])
def test_photos_without_people_have_no_face_and_no_person(
    name: str, face_detector: Detector, person_detector: Detector
) -> None:
    image = photo(name)
    assert face_detector.detect(image) == []
    assert person_detector.detect(image) == []


def test_person_detector_finds_the_astronaut(person_detector: Detector) -> None:
    found = person_detector.detect(photo("astronaut"))
    assert [d.label for d in found] == ["person"]
    assert found[0].score >= 0.5
    x0, y0, x1, y1 = found[0].box
    fx0, fy0, fx1, fy1 = REFERENCE_FACE
    assert x0 <= fx0 and y0 <= fy0 and x1 >= fx1 and y1 >= fy1, "the person's box must take in her face"
    assert (x1 - x0) * (y1 - y0) >= 0.5 * 512 * 512, "a half-body portrait: the person fills most of the frame"
    check_geometry(found, 512, 512)


def test_small_person_in_a_large_frame_is_boxed_where_she_is(person_detector: Detector) -> None:
    """The astronaut shrunk to 256 px inside a 1024 px grey frame: the box follows her there."""
    canvas = np.full((1024, 1024, 3), 200, np.uint8)
    canvas[400:656, 300:556] = photo("astronaut")[::2, ::2]
    found = person_detector.detect(canvas)
    assert [d.label for d in found] == ["person"]
    x0, y0, x1, y1 = found[0].box
    face = [300 + v / 2 if i % 2 == 0 else 400 + v / 2 for i, v in enumerate(REFERENCE_FACE)]
    assert x0 <= face[0] and y0 <= face[1] and x1 >= face[2] and y1 >= face[3]
    assert x0 > 200 and x1 < 650 and y0 > 350 and y1 < 850, found[0].box
    check_geometry(found, 1024, 1024)


@pytest.mark.parametrize(
    ("size", "paste_at", "crop"),
    [
        ((640, 480), (100, 0), (slice(16, 496), slice(0, 512))),  # landscape: letterbox bars above and below
        ((480, 640), (0, 100), (slice(0, 512), slice(16, 496))),  # portrait: bars left and right
    ],
)
def test_boxes_come_back_in_the_original_frame(
    face_detector: Detector, size: tuple[int, int], paste_at: tuple[int, int], crop: tuple[slice, slice]
) -> None:
    """Crop and pad the astronaut into a non-square frame; the face box moves exactly as she did."""
    width, height = size
    frame = np.zeros((height, width, 3), np.uint8)
    part = photo("astronaut")[crop]
    px, py = paste_at
    frame[py : py + part.shape[0], px : px + part.shape[1]] = part
    dx, dy = px - crop[1].start, py - crop[0].start

    found = face_detector.detect(frame)
    assert [d.label for d in found] == ["face"]
    check_geometry(found, width, height)
    moved_reference = (REFERENCE_FACE[0] + dx, REFERENCE_FACE[1] + dy, REFERENCE_FACE[2] + dx, REFERENCE_FACE[3] + dy)
    assert box_iou(found[0].box, moved_reference) >= 0.5, found[0].box
    square = face_detector.detect(photo("astronaut"))[0].box
    moved_square = [square[0] + dx, square[1] + dy, square[2] + dx, square[3] + dy]
    assert found[0].box == pytest.approx(moved_square, abs=6.0), "same face, same place, at another scale"


def test_output_carries_model_frame_size_and_timing(face_detector: Detector) -> None:
    out = face_detector.process(photo("astronaut"))
    assert (out.model, out.width, out.height) == ("face", 512, 512)
    assert out.inference_ms > 0
    assert DetectionOutput.model_validate_json(out.model_dump_json()) == out


def test_grey_and_bgra_frames_are_accepted_and_bad_ones_refused(face_detector: Detector) -> None:
    bgr = photo("astronaut")
    grey = bgr.mean(axis=2).astype(np.uint8)
    bgra = np.dstack([bgr, np.full(bgr.shape[:2], 255, np.uint8)])
    assert len(face_detector.detect(grey)) == 1
    assert face_detector.detect(bgra) == face_detector.detect(bgr)
    for bad in (bgr.astype(np.float32), np.zeros((0, 10, 3), np.uint8), np.zeros((4, 4, 2), np.uint8), b"jpeg"):
        with pytest.raises(DetectionError):
            face_detector.detect(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["face", "person"])
def test_one_and_two_threads_give_the_same_detections(manifest: Manifest, name: str) -> None:
    results = []
    for threads in (1, 2):
        detector = load_detector(manifest.get(name), create_backend({"type": "litert", "num_threads": threads}))
        assert detector.warm_up() > 0 and detector.warm
        results.append([detector.detect(photo(p)) for p in ("astronaut", "camera", "coffee")])
    one, two = results
    assert [[d.label for d in r] for r in one] == [[d.label for d in r] for r in two]
    assert sum(len(r) for r in one) >= 2
    for a_list, b_list in zip(one, two):
        for a, b in zip(a_list, b_list):
            assert a.score == pytest.approx(b.score, abs=1e-3)
            assert a.box == pytest.approx(b.box, abs=0.5)


def test_litert_is_available_here() -> None:
    assert "litert" in available_backends()
    assert LiteRTBackend.available()
    assert isinstance(create_backend("litert"), LiteRTBackend)
    assert create_backend({"type": "litert", "num_threads": 3}).config == LiteRTConfig(num_threads=3)


def test_runtime_fallback_says_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Neither LiteRT nor tflite_runtime importable: unavailable, naming both."""
    for module in ("ai_edge_litert", "ai_edge_litert.interpreter", "tflite_runtime", "tflite_runtime.interpreter"):
        monkeypatch.setitem(sys.modules, module, None)
    verdict = LiteRTBackend.available()
    assert not verdict
    assert "ai_edge_litert" in verdict.reason and "tflite_runtime" in verdict.reason
    with pytest.raises(BackendUnavailable):
        LiteRTBackend().load(Path("models/face_detection_short_range.tflite"))


def test_fallback_to_tflite_runtime_when_litert_is_missing(manifest: Manifest, monkeypatch: pytest.MonkeyPatch) -> None:
    """An image without LiteRT but with tflite_runtime (same Interpreter API) still detects.

    tflite_runtime itself cannot load beside NumPy 2, so LiteRT's interpreter module stands in
    for it under tflite_runtime's name: what is tested is the choice of runtime."""
    import ai_edge_litert.interpreter as litert_interpreter

    stand_in = types.ModuleType("tflite_runtime")
    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    monkeypatch.setitem(sys.modules, "tflite_runtime", stand_in)
    monkeypatch.setitem(sys.modules, "tflite_runtime.interpreter", litert_interpreter)
    assert LiteRTBackend.available().reason == "runtime tflite_runtime"
    detector = load_detector(manifest.get("face"), create_backend("litert"))
    assert detector.model.runtime == "tflite_runtime"
    assert [d.label for d in detector.detect(photo("astronaut"))] == ["face"]


def test_importing_the_packages_imports_no_runtime() -> None:
    code = (
        "import sys, edgehive.agents.inference, edgehive.agents.detection, edgehive.agents.modelstore, edgehive.agents.probe\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('ai_edge_litert', 'tflite_runtime', 'onnxruntime')))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert proc.stdout.strip() == "[]"


def _libedgetpu_loads() -> bool:
    try:
        ctypes.CDLL("libedgetpu.so.1")
    except OSError:
        return False
    return True


def test_edgetpu_reports_why_it_is_unavailable(manifest: Manifest) -> None:
    verdict = EdgeTPUBackend.available()
    assert backend_availability()["edgetpu"] == verdict
    if _libedgetpu_loads():  # a machine with the Coral runtime: available, or the delegate says why not
        assert verdict or "delegate" in verdict.reason
        return
    assert not verdict
    assert "libedgetpu.so.1" in verdict.reason
    assert "edgetpu" not in available_backends()
    backend = create_backend({"type": "edgetpu", "device": "usb"})
    assert backend.config == EdgeTPUConfig(device="usb")
    with pytest.raises(DetectionError, match="libedgetpu"):
        load_detector(manifest.get("face"), backend)


def test_unknown_backend_type_is_refused() -> None:
    with pytest.raises(Exception, match="known types are \\['edgetpu', 'litert', 'onnx'\\]"):
        create_backend({"type": "cuda"})
    with pytest.raises(Exception, match="Extra inputs"):
        create_backend({"type": "litert", "threads": 2})


def test_a_model_file_that_fails_its_checksum_is_not_loaded(manifest: Manifest, tmp_path: Path) -> None:
    spec = manifest.get("face")
    damaged = tmp_path / "face.tflite"
    shutil.copyfile(spec.path, damaged)
    with damaged.open("r+b") as fh:
        fh.seek(1000)
        fh.write(b"\x00\x01\x02\x03")
    with pytest.raises(DetectionError, match="sha256"):
        load_detector(spec.model_copy(update={"file": str(damaged)}), create_backend("litert"))
    with pytest.raises(DetectionError, match="missing"):
        load_detector(spec.model_copy(update={"file": str(tmp_path / "gone.tflite")}), create_backend("litert"))


def test_a_manifest_that_does_not_fit_the_model_is_refused(manifest: Manifest) -> None:
    face = manifest.get("face")
    with pytest.raises(DetectionError, match="takes 128x128"):
        load_detector(face.model_copy(update={"input_size": (224, 224)}), create_backend("litert"))
    person_anchors = manifest.get("person").anchors
    with pytest.raises(DetectionError, match="anchors"):
        load_detector(face.model_copy(update={"anchors": person_anchors}), create_backend("litert"))


HEAP_PROBE = """
from edgehive.heap import release_free_heap

def rss_mb():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS")) / 1024

chunks = [bytearray(100_000) for _ in range(400)]  # 40 MB on the C heap, below glibc's mmap threshold
last = chunks.pop()  # held: the freed chunks lie below it, so free() cannot shrink the heap's top
del chunks
held = rss_mb()
ok = release_free_heap()
print(ok, round(held - rss_mb()))
"""


def test_the_agent_hands_freed_heap_back_after_warming_up() -> None:
    """What warm-up frees (large temporaries) glibc would keep; `release_free_heap` returns it."""
    done = subprocess.run([sys.executable, "-c", HEAP_PROBE], capture_output=True, text=True, timeout=120, check=True)
    ok, released_mb = done.stdout.split()
    assert ok == "True" and int(released_mb) >= 30


def test_a_second_interpreter_that_cannot_load_leaves_the_model_with_the_one_it_has(
    manifest: Manifest, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Two jobs want `face` at once and its second interpreter fails to load (here: the file is
    gone): the second job waits for the first interpreter instead of failing, and the pool
    stops trying, so later overlaps wait too rather than fail to load again each time."""
    caplog.set_level(logging.INFO, logger="edgehive.agents.vision")
    face = manifest.get("face")
    first = load_detector(face, create_backend("litert"))
    gone = face.model_copy(update={"file": str(tmp_path / "gone.tflite")})
    pool = DetectorPool({"face": [first]}, grow={"face": Instances(functools.partial(load_detector, gone, create_backend("litert")), made=1, limit=2)})
    lent: list[Detector] = []

    def second_job() -> None:
        with pool.borrow("face") as detector:
            lent.append(detector)

    with pool.borrow("face") as held:
        job = threading.Thread(target=second_job)
        job.start()
        deadline = time.monotonic() + 60
        while "no further instance" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.01)
        assert "no further instance for concurrent jobs, staying at 1" in caplog.text and "gone.tflite is missing" in caplog.text
        assert not lent  # still waiting for the one interpreter there is
    job.join(timeout=60)
    assert lent == [held] and pool.instances("face") == 1
    caplog.clear()
    with pool.borrow("face"):
        job = threading.Thread(target=second_job)
        job.start()
        assert job.is_alive()
    job.join(timeout=60)
    assert len(lent) == 2 and "no further instance" not in caplog.text  # not tried again

