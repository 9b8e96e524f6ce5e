"""The onnx backend with the real CenterFace model: loading, layouts, providers, and the GPU
path's refusal on this machine (no GPU, the CPU build of onnxruntime)."""

from __future__ import annotations

import logging
import subprocess
import sys
import tempfile
import threading
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from vision_fixtures import REFERENCE_FACE, box_iou, manifest, models_dir, photo  # noqa: F401 - fixtures

from edgehive.agents.detection import DetectionError, load_detector, to_tensor
from edgehive.agents.inference import (
    BackendChoice,
    BackendUnavailable,
    InferenceError,
    ModelLoadError,
    OnnxBackend,
    OnnxConfig,
    available_backends,
    backend_availability,
    choose_backend,
    create_backend,
    offered_providers,
)
from edgehive.agents.inference.onnx_graph import OnnxGraphError, read_graph_io, set_io_dims
from edgehive.agents.modelstore import Manifest, ModelSpec
from edgehive.agents.vision import load_pool

CUDA_REFUSAL = "CUDA execution provider not available"


@pytest.fixture(scope="module")
def centerface_file(manifest: Manifest) -> Path:
    return manifest.get("centerface").path


def test_onnx_is_available_here_on_the_cpu() -> None:
    verdict = OnnxBackend.available()
    assert verdict and "providers cpu" in verdict.reason
    assert "onnx" in available_backends()
    assert backend_availability()["onnx"] == verdict
    assert "CPUExecutionProvider" in offered_providers()


def test_auto_loads_on_the_cpu_and_says_so(centerface_file: Path) -> None:
    """No GPU provider here: 'auto' falls back to the CPU, and the handle reports it."""
    model = create_backend({"type": "onnx", "providers": "auto"}).load(centerface_file, input_size=(960, 544))
    assert model.providers == ["cpu"] and model.device == "cpu"
    assert model.input_layout == "NCHW"
    assert model.input_shape == (1, 3, 544, 960) and model.input_size == (960, 544)
    assert model.input_dtype == np.float32
    assert [s[1] for s in model.output_shapes] == [1, 2, 2, 10]
    outputs = model.infer(np.zeros(model.input_shape, np.float32))
    assert [o.shape for o in outputs] == [(1, 1, 136, 240), (1, 2, 136, 240), (1, 2, 136, 240), (1, 10, 136, 240)]


def test_explicit_cpu_loads(centerface_file: Path) -> None:
    model = create_backend({"type": "onnx", "providers": ["cpu"], "num_threads": 2}).load(centerface_file, input_size=(320, 192))
    assert model.providers == ["cpu"] and model.input_size == (320, 192)


def test_a_loaded_model_keeps_no_copy_of_its_file_and_leaves_no_temporary_file(centerface_file: Path, tmp_path: Path,
                                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """onnxruntime keeps the bytes it was given for the session's life: the 7.3 MB of CenterFace
    rewritten to 960x544 would stay in every agent. Loaded by name, it holds none of it, and the
    temporary copy the rewrite went through is gone; the model still runs."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where tempfile writes, so the test can look
    tracemalloc.start()
    try:
        model = create_backend({"type": "onnx", "providers": ["cpu"]}).load(centerface_file, input_size=(960, 544))
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert held < centerface_file.stat().st_size / 4
    assert list(tmp_path.iterdir()) == []
    assert model.infer(np.zeros(model.input_shape, np.float32))[0].shape == (1, 1, 136, 240)


RUNS_PROBE = """
import sys
import numpy as np
from edgehive.agents.inference import create_backend

def rss_mb():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS")) / 1024

model = create_backend({"type": "onnx", "providers": ["cpu"]}).load(sys.argv[1], input_size=(960, 544))
frame = np.zeros(model.input_shape, np.float32)
model.infer(frame)
first = rss_mb()
for _ in range(3):
    model.infer(frame)
print(round(rss_mb() - first))
"""


def test_a_cpu_session_holds_no_more_after_many_runs_than_after_the_first(centerface_file: Path) -> None:
    """With onnxruntime's memory pattern, the second run of CenterFace at 960x544 planned a block of
    about 70 MB beside the arena the first run had filled, and kept both for good."""
    done = subprocess.run([sys.executable, "-c", RUNS_PROBE, str(centerface_file)], capture_output=True, text=True,
                          timeout=300, check=True)
    assert int(done.stdout.split()[-1]) < 25


@pytest.mark.parametrize("provider, label", [("cuda", "CUDA"), ("tensorrt", "TensorRT")])
def test_asking_for_a_gpu_provider_here_is_refused_with_the_reason(centerface_file: Path, provider: str, label: str) -> None:
    """The GPU path on a machine without one: unavailable, saying what onnxruntime offers instead."""
    config = OnnxConfig(providers=[provider])
    verdict = OnnxBackend.available(config)
    assert not verdict
    assert verdict.reason.startswith(f"{label} execution provider not available: onnxruntime ")
    assert "CPUExecutionProvider" in verdict.reason
    with pytest.raises(BackendUnavailable, match=f"{label} execution provider not available"):
        OnnxBackend(config).load(centerface_file, input_size=(960, 544))


def test_a_cuda_agent_loads_the_tflite_models_and_skips_centerface_saying_why(
    models_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """EDGEHIVE_ONNX_PROVIDERS=cuda on this machine: the ONNX model is not loaded (so never
    advertised), the log says why, and the TFLite models load on LiteRT as usual."""
    with caplog.at_level(logging.ERROR, logger="edgehive.agents.vision"):
        pool = load_pool(models_dir, ["face", "centerface"], BackendChoice("auto", 1, "cuda"), 1, 1)
    assert pool.models() == ["face"]
    assert pool.runtimes()["face"].backend == "litert"
    assert any("centerface not loaded" in r.message and CUDA_REFUSAL in r.message for r in caplog.records)


def test_auto_gives_each_model_a_backend_for_its_format(models_dir: Path) -> None:
    pool = load_pool(models_dir, ["face", "centerface"], "auto", 1, 1)
    assert pool.models() == ["centerface", "face"]
    runtimes = pool.runtimes()
    assert (runtimes["face"].backend, runtimes["face"].device, runtimes["face"].heavy) == ("litert", "cpu", False)
    assert (runtimes["centerface"].backend, runtimes["centerface"].device, runtimes["centerface"].heavy) == ("onnx", "cpu", True)


def test_a_backend_setting_applies_to_the_formats_it_runs() -> None:
    assert choose_backend("auto", "tflite") == "litert"  # no Coral here
    assert choose_backend("auto", "onnx") == "onnx"
    assert choose_backend("litert", "onnx") == "onnx"  # litert runs no ONNX: auto's choice
    assert choose_backend("onnx", "tflite") == "litert"
    assert choose_backend("edgetpu", "tflite") is None  # explicit, and no TPU here


def test_unknown_backend_setting_loads_nothing(models_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="edgehive.agents.vision"):
        assert load_pool(models_dir, [], "cuda", 1, 1).models() == []
    assert "unknown backend 'cuda'" in caplog.text


def test_bad_provider_names_are_refused() -> None:
    with pytest.raises(Exception, match="providers"):
        create_backend({"type": "onnx", "providers": ["gpu"]})
    config, reason = BackendChoice("auto", 1, "gpu").choose("onnx")
    assert config is None and "invalid backend config" in reason


def test_onnxruntime_missing_says_so(centerface_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    verdict = OnnxBackend.available()
    assert not verdict and "onnxruntime is not installed" in verdict.reason
    assert "onnx" not in available_backends()
    assert offered_providers() == []
    with pytest.raises(BackendUnavailable, match="onnxruntime is not installed"):
        OnnxBackend().load(centerface_file)


def test_an_onnx_model_on_a_tflite_backend_is_refused(manifest: Manifest) -> None:
    with pytest.raises(DetectionError, match="the litert backend does not run onnx models"):
        load_detector(manifest.get("centerface"), create_backend("litert"))
    with pytest.raises(DetectionError, match="the onnx backend does not run tflite models"):
        load_detector(manifest.get("face"), create_backend("onnx"))


def test_a_file_that_declares_a_batch_of_ten_needs_reshape_input(centerface_file: Path) -> None:
    """CenterFace's file says 10x3x32x32; loaded as it is, it cannot take one frame."""
    with pytest.raises(ModelLoadError, match=r"batch of 10.*reshape_input"):
        OnnxBackend().load(centerface_file)


def test_the_wrong_tensor_is_refused(centerface_file: Path) -> None:
    model = OnnxBackend().load(centerface_file, input_size=(64, 64))
    with pytest.raises(InferenceError, match=r"takes float32\[1, 3, 64, 64\] \(NCHW\)"):
        model.infer(np.zeros((1, 64, 64, 3), np.float32))


def test_a_broken_file_is_a_load_error(tmp_path: Path, centerface_file: Path) -> None:
    truncated = tmp_path / "cut.onnx"
    truncated.write_bytes(centerface_file.read_bytes()[:100_000])
    with pytest.raises(ModelLoadError):
        OnnxBackend().load(truncated, input_size=(64, 64))
    with pytest.raises(ModelLoadError):
        OnnxBackend().load(truncated)
    with pytest.raises(ModelLoadError, match="cannot read"):
        OnnxBackend().load(tmp_path / "absent.onnx")


# -- the graph rewrite -------------------------------------------------------------------------


def test_reading_the_declared_inputs_and_outputs(centerface_file: Path) -> None:
    graph = read_graph_io(centerface_file.read_bytes())
    (feed,) = graph.feeds
    assert (feed.name, feed.elem_type, feed.dims) == ("input.1", 1, (10, 3, 32, 32))
    assert [(o.name, o.dims) for o in graph.outputs] == [
        ("537", (10, 1, 8, 8)), ("538", (10, 2, 8, 8)), ("539", (10, 2, 8, 8)), ("540", (10, 10, 8, 8))
    ]
    assert len(graph.inputs) > 1, "this old export lists its weights as inputs too; feeds leaves them out"


def test_rewritten_dims_change_nothing_but_the_dims(centerface_file: Path) -> None:
    """The same image through the original file (its declared batch of ten) and through the
    rewritten one (batch 1, symbolic outputs): the same outputs, so every weight was kept."""
    import onnxruntime

    original = centerface_file.read_bytes()
    rewritten = set_io_dims(original, {"input.1": [1, 3, 32, 32], "537": ["a", 1, "h", "w"]})
    graph = read_graph_io(rewritten)
    assert graph.feeds[0].dims == (1, 3, 32, 32)
    assert graph.outputs[0].dims == ("a", 1, "h", "w")
    assert graph.outputs[1].dims == (10, 2, 8, 8), "outputs not named keep their declaration"
    rng = np.random.default_rng(7)
    image = rng.integers(0, 256, (1, 3, 32, 32)).astype(np.float32)
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    ten = onnxruntime.InferenceSession(original, options, providers=["CPUExecutionProvider"])
    batch = np.repeat(image, 10, axis=0)
    want = ten.run(["537"], {"input.1": batch})[0][:1]
    one = onnxruntime.InferenceSession(
        set_io_dims(original, {"input.1": [1, 3, 32, 32], **{n: [1, c, 8, 8] for n, c in (("537", 1), ("538", 2), ("539", 2), ("540", 10))}}),
        options, providers=["CPUExecutionProvider"],
    )
    got = one.run(["537"], {"input.1": image})[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_rewrite_refuses_names_the_graph_lacks_and_bytes_that_are_not_onnx(centerface_file: Path) -> None:
    with pytest.raises(OnnxGraphError, match="no input or output named nope"):
        set_io_dims(centerface_file.read_bytes(), {"nope": [1]})
    with pytest.raises(OnnxGraphError):
        read_graph_io(b"\xff" * 32)
    with pytest.raises(OnnxGraphError, match="no graph"):
        read_graph_io(b"\x08\x07")  # a model with only ir_version = 7


# -- manifest fields and layouts ---------------------------------------------------------------


def test_model_format_comes_from_the_file_name_unless_given() -> None:
    base = {"name": "m", "input_size": [64, 64], "decoder": "centerface", "labels": ["face"]}
    assert ModelSpec.model_validate(base | {"file": "m.onnx"}).model_format == "onnx"
    assert ModelSpec.model_validate(base | {"file": "m.ONNX"}).model_format == "onnx"
    assert ModelSpec.model_validate(base | {"file": "m.tflite"}).model_format == "tflite"
    assert ModelSpec.model_validate(base | {"file": "m.bin", "format": "onnx"}).model_format == "onnx"
    with pytest.raises(ValueError, match="reshape_input applies to onnx models only"):
        ModelSpec.model_validate(base | {"file": "m.tflite", "reshape_input": True})
    with pytest.raises(ValueError, match="edgetpu_file applies to tflite models only"):
        ModelSpec.model_validate(base | {"file": "m.onnx", "edgetpu_file": "m_edgetpu.tflite"})


def test_nchw_tensor_is_the_nhwc_one_transposed() -> None:
    rgb = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    nhwc = to_tensor(rgb, np.dtype(np.float32), (0.0, 255.0))
    nchw = to_tensor(rgb, np.dtype(np.float32), (0.0, 255.0), "NCHW")
    assert nhwc.shape == (1, 2, 3, 3) and nchw.shape == (1, 3, 2, 3)
    assert nchw.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(nchw[0], nhwc[0].transpose(2, 0, 1))
    assert nchw[0, 0, 1, 2] == rgb[1, 2, 0]  # red channel, row 1, column 2: raw pixel values


def test_one_onnx_session_serves_every_worker(models_dir: Path) -> None:
    """Two workers: the TFLite model starts with one interpreter and gets a second only when
    two jobs want it at once (a LiteRT interpreter runs one call at a time), then keeps two;
    CenterFace is loaded once, lent to both at the same time; both find the astronaut's face."""
    pool = load_pool(models_dir, ["face", "centerface"], "auto", 1, 2)
    assert pool.instances("face") == 1
    with pool.borrow("face") as first, pool.borrow("face") as second:
        assert first is not second
        assert pool.instances("face") == 2
        assert len(first.detect(photo("astronaut"))) == len(second.detect(photo("astronaut"))) >= 1
    with pool.borrow("face") as again, pool.borrow("face") as other:
        assert {again, other} == {first, second}  # kept, never a third
    assert pool.instances("face") == 2 and pool.instances("centerface") == 2
    image = photo("astronaut")
    boxes: list[list[float]] = []
    lent: list[object] = []
    both_in = threading.Barrier(2)

    def detect() -> None:
        with pool.borrow("centerface") as detector:
            lent.append(detector)
            both_in.wait(timeout=30)  # neither gives it back before the other holds it too
            boxes.append(list(detector.detect(image)[0].box))

    threads = [threading.Thread(target=detect) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(boxes) == 2 and lent[0] is lent[1]
    assert all(box_iou(box, REFERENCE_FACE) >= 0.6 for box in boxes), boxes


# -- bench/gpu_onnx.py, as a GPU session runs it ------------------------------------------------


def test_the_gpu_bench_runs_here_on_the_cpu_and_reports_why_cuda_does_not(tmp_path: Path, models_dir: Path) -> None:
    """The bench a GPU session runs (bench/gpu_onnx.py), shortened: on this machine the CPU rows
    find the astronaut's face, and the CUDA row is the backend's refusal, not a crash."""
    import json
    import subprocess

    out = tmp_path / "gpu.json"
    done = subprocess.run(
        [sys.executable, str(Path(__file__).resolve().parent.parent / "bench" / "gpu_onnx.py"), "--providers", "cpu,cuda",
         "--cpu-threads", "1", "--runs", "1", "--warmup", "0", "--json", str(out)],
        capture_output=True, text=True, timeout=110,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    rows = {row["asked"]: row for row in json.loads(out.read_text())["rows"]}
    assert rows["cpu"]["providers"] == ["cpu"] and rows["cpu"]["infer_p50_ms"] > 0
    (face,) = rows["cpu"]["detections"]["astronaut"]
    assert face["label"] == "face" and box_iou(face["box"], REFERENCE_FACE) >= 0.6
    assert rows["cpu"]["detections"]["chelsea"] == []
    assert rows["cuda"]["providers"] == [] and CUDA_REFUSAL in rows["cuda"]["error"]
    assert "| centerface | cuda | 1 | not loaded: onnx: CUDA execution provider not available" in done.stdout
