"""ONNX Runtime: `.onnx` models on the CPU, or on an NVIDIA GPU through CUDA or TensorRT.

The GPU execution providers exist only in a GPU build of onnxruntime (`onnxruntime-gpu`, or
the JetPack build on a Jetson) running where the CUDA libraries and a GPU are present. Which
provider a session really uses is known only once it is made: onnxruntime falls back to the
CPU when a GPU provider cannot start. So a loaded model reports the providers it actually
runs on, and a config that names a GPU provider explicitly refuses to load on anything else.

    backend = create_backend({"type": "onnx", "providers": "auto", "num_threads": 2})
    model = backend.load(Path("models/centerface.onnx"), input_size=(960, 544))
    model.device  # "cpu" here; "tensorrt" or "cuda" on a Jetson with the GPU build
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import logging
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np
from pydantic import Field

from .base import (
    Availability,
    BackendConfigBase,
    BackendUnavailable,
    InferenceBackend,
    InferenceError,
    Layout,
    ModelHandle,
    ModelLoadError,
)
from .onnx_graph import OnnxGraphError, read_graph_io, set_io_dims

log = logging.getLogger(__name__)

BACKEND_KEY: Final = "onnx"
Provider = Literal["tensorrt", "cuda", "cpu"]
# Our short names for onnxruntime's execution providers, in the order `auto` prefers them.
PROVIDERS: Final[dict[str, str]] = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}
GPU_PROVIDERS: Final = ("tensorrt", "cuda")
_LABELS: Final = {"tensorrt": "TensorRT", "cuda": "CUDA", "cpu": "CPU"}
_DTYPES: Final[dict[str, Any]] = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(uint8)": np.uint8,
    "tensor(int8)": np.int8,
}
_INSTALL_HINT = "pip install 'edgehive[onnx]' (CPU), or a GPU build of onnxruntime"


class OnnxConfig(BackendConfigBase):
    type: Literal["onnx"] = BACKEND_KEY
    num_threads: int = Field(1, ge=1, le=64, description="CPU threads per model (onnxruntime intra-op threads)")
    providers: Literal["auto"] | list[Provider] = Field(
        "auto",
        description="'auto': TensorRT, then CUDA, where this onnxruntime offers them, else the CPU; or an explicit "
        "list such as ['cuda'], which refuses to load when the first one cannot run",
    )
    tensorrt_cache_dir: str | None = Field(
        None, description="Folder where TensorRT keeps the engines it builds (the first build takes minutes); None: rebuilt each start"
    )
    tensorrt_fp16: bool = Field(True, description="Let TensorRT run layers in half precision")


def runtime_imported() -> bool:
    """Whether this process has imported onnxruntime already (an ONNX model loaded, or tried)."""
    return "onnxruntime" in sys.modules


def _runtime() -> Any:
    try:
        return importlib.import_module("onnxruntime")
    except Exception as exc:  # a broken install can raise anything at import time
        raise BackendUnavailable(f"onnxruntime is not installed ({_INSTALL_HINT}): {type(exc).__name__}: {exc}") from None


def offered_providers() -> list[str]:
    """The execution providers this onnxruntime build offers (onnxruntime's names); [] when it
    does not import. Offered is not usable: CUDA is listed by a GPU build even without a GPU."""
    try:
        return list(_runtime().get_available_providers())
    except BackendUnavailable:
        return []


def short_provider(name: str) -> str:
    """`CUDAExecutionProvider` -> `cuda`; unknown providers keep onnxruntime's name."""
    for short, full in PROVIDERS.items():
        if full == name:
            return short
    return name


def _wanted(config: OnnxConfig, offered: list[str]) -> list[str]:
    """Our short names, best first, of the providers a session should be offered."""
    if config.providers == "auto":
        found: list[str] = [p for p in PROVIDERS if PROVIDERS[p] in offered]
        return found or ["cpu"]
    wanted: list[str] = list(dict.fromkeys(config.providers))
    return wanted if "cpu" in wanted else [*wanted, "cpu"]  # operators a GPU provider lacks run on the CPU


def _check_offered(config: OnnxConfig, runtime: Any) -> None:
    if config.providers == "auto":
        return
    offered = list(runtime.get_available_providers())
    for provider in config.providers:
        if PROVIDERS[provider] not in offered:
            raise BackendUnavailable(
                f"{_LABELS[provider]} execution provider not available: onnxruntime {runtime.__version__} here offers "
                f"{', '.join(offered) or 'none'} (the GPU providers come with a GPU build of onnxruntime on a machine with an NVIDIA GPU)"
            )


class OnnxBackend(InferenceBackend):
    type_key = BACKEND_KEY
    config_class = OnnxConfig
    formats = frozenset({"onnx"})
    concurrent_runs = True  # InferenceSession.run may be called from several threads at once
    config: OnnxConfig

    def __init__(self, config: OnnxConfig | None = None) -> None:
        super().__init__(config if config is not None else OnnxConfig())

    @classmethod
    def available(cls, config: BackendConfigBase | None = None) -> Availability:
        cfg = config if isinstance(config, OnnxConfig) else OnnxConfig()
        try:
            runtime = _runtime()
            _check_offered(cfg, runtime)
        except BackendUnavailable as exc:
            return Availability(False, str(exc))
        wanted = _wanted(cfg, list(runtime.get_available_providers()))
        return Availability(True, f"onnxruntime {runtime.__version__}, providers {', '.join(wanted)}")

    @classmethod
    def advertised(cls) -> Availability:
        """Once onnxruntime is imported, `available()`. Before, whether it is installed, found
        without importing it: importing it costs an agent about 25 MB of RSS, which one that
        loads no ONNX model should not pay to fill in its capabilities."""
        if runtime_imported():
            return cls.available()
        try:
            found = importlib.util.find_spec("onnxruntime") is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            return Availability(False, f"onnxruntime is not installed ({_INSTALL_HINT})")
        return Availability(True, "onnxruntime installed (imported when an ONNX model is loaded)")

    def _provider_options(self, provider: str) -> dict[str, Any]:
        if provider != "tensorrt":
            return {}
        options: dict[str, Any] = {"trt_fp16_enable": self.config.tensorrt_fp16}
        if self.config.tensorrt_cache_dir:
            try:
                Path(self.config.tensorrt_cache_dir).mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ModelLoadError(f"TensorRT engine cache {self.config.tensorrt_cache_dir}: {exc.strerror or exc}") from None
            options.update(trt_engine_cache_enable=True, trt_engine_cache_path=self.config.tensorrt_cache_dir)
        return options

    def load(self, model_path: Path, input_size: tuple[int, int] | None = None) -> ModelHandle:
        runtime = _runtime()
        _check_offered(self.config, runtime)
        path = Path(model_path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ModelLoadError(f"cannot read {path}: {exc.strerror or exc}") from None
        # The file by its name unless it is rewritten: onnxruntime keeps what it was given (below).
        source: str | bytes = str(path) if input_size is None else _with_input_size(path, data, input_size)
        del data
        options = runtime.SessionOptions()
        options.intra_op_num_threads = self.config.num_threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only: old exporters trigger a warning per weight
        wanted = _wanted(self.config, list(runtime.get_available_providers()))
        if wanted == ["cpu"]:
            # A memory pattern (one block planned for all of a run's tensors) is built at the second
            # run, beside the arena the first run filled, and both stay: CenterFace at 960x544 grew
            # by 72 MB over 16 runs with it and not at all without, at the same speed on the CPU
            # (bench/onnx_mempattern.py, BENCHMARKS.md).
            options.enable_mem_pattern = False
        try:
            with _session_source(source, wanted) as given:
                session = runtime.InferenceSession(
                    given, options, providers=[PROVIDERS[p] for p in wanted],
                    provider_options=[self._provider_options(p) for p in wanted],
                )
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ModelLoadError(f"onnxruntime cannot load {path}: {type(exc).__name__}: {exc}") from None
        running = [short_provider(p) for p in session.get_providers()]
        if self.config.providers != "auto" and running[0] != wanted[0]:
            raise BackendUnavailable(
                f"{_LABELS[wanted[0]]} execution provider not usable: onnxruntime started {path.name} on "
                f"{', '.join(running)} instead (is the GPU visible, are the CUDA libraries installed?)"
            )
        model = OnnxModel(path, session, running)
        log.info("loaded %s with onnxruntime %s on %s (%d thread(s))", path, runtime.__version__,
                 ", ".join(running), self.config.num_threads)
        return model


@contextlib.contextmanager
def _session_source(source: str | bytes, wanted: list[str]) -> Iterator[str | bytes]:
    """What to hand InferenceSession. onnxruntime keeps a model given as bytes for the session's
    whole life, to build the session again on the next provider when a GPU provider fails while
    running; for CenterFace that is 7.3 MB an agent holds for nothing (bench/footprint.py). With
    the CPU provider alone there is nothing to fall back to, so a rewritten model goes through a
    temporary file, removed once the session is built, and onnxruntime keeps only its name. Where
    the file cannot be written, the bytes are handed over as before."""
    if isinstance(source, str) or wanted != ["cpu"]:
        yield source
        return
    try:
        handle, name = tempfile.mkstemp(prefix="edgehive-", suffix=".onnx")
        with os.fdopen(handle, "wb") as out:
            out.write(source)
    except OSError as exc:
        log.debug("model kept in memory: cannot write a temporary copy (%s)", exc)
        yield source
        return
    try:
        yield name
    finally:
        with contextlib.suppress(OSError):
            os.unlink(name)


def _with_input_size(path: Path, data: bytes, input_size: tuple[int, int]) -> bytes:
    """The model with its one image input declared (1, C, H, W) or (1, H, W, C) at `input_size`,
    and its outputs' dims left open for onnxruntime to infer."""
    try:
        graph = read_graph_io(data)
        feeds = graph.feeds
        if len(feeds) != 1 or feeds[0].dims is None or len(feeds[0].dims) != 4:
            raise ModelLoadError(f"{path}: expected one 4-D image input, got {[(f.name, f.dims) for f in feeds]}")
        dims = feeds[0].dims
        layout = _layout(dims)
        if layout is None:
            raise ModelLoadError(f"{path}: cannot tell where the channels are in input dims {list(dims)}")
        width, height = input_size
        new = [1, dims[1], height, width] if layout == "NCHW" else [1, height, width, dims[3]]
        open_outputs = {o.name: [f"{o.name}_d{i}" for i in range(len(o.dims or ()))] for o in graph.outputs if o.dims}
        return set_io_dims(data, {feeds[0].name: new, **open_outputs})
    except OnnxGraphError as exc:
        raise ModelLoadError(f"{path}: {exc}") from None


def _layout(dims: tuple[int | str, ...]) -> Layout | None:
    """NCHW when the second dim is 1 or 3 channels and the last is not; NHWC when the last is."""
    channels = (1, 3)
    if dims[1] in channels and dims[3] not in channels:
        return "NCHW"
    if dims[3] in channels:
        return "NHWC"
    return None


def _dims(shape: list[Any]) -> tuple[int, ...]:
    return tuple(int(d) if isinstance(d, int) and d >= 0 else -1 for d in shape)


class OnnxModel(ModelHandle):
    """One onnxruntime session. `providers` are the short names it actually runs on, best first."""

    def __init__(self, path: Path, session: Any, providers: list[str]) -> None:
        self.path = path
        self.providers = providers
        self.device = providers[0] if providers[0] in GPU_PROVIDERS else "cpu"
        self._session = session
        inputs = session.get_inputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            raise ModelLoadError(f"{path}: expected one 4-D image input, got {[(i.name, i.shape) for i in inputs]}")
        self._input_name = inputs[0].name
        shape = _dims(inputs[0].shape)
        layout = _layout(shape)
        if layout is None or min(shape[1:]) < 1:
            raise ModelLoadError(
                f"{path}: input {inputs[0].shape} has no fixed size and channels; give the manifest entry "
                "an input_size and `reshape_input: true`"
            )
        if shape[0] not in (1, -1):
            raise ModelLoadError(
                f"{path}: its input takes a batch of {shape[0]}; give the manifest entry `reshape_input: true` "
                "to run it on one frame"
            )
        self.input_layout = layout
        self.input_shape = (1, *shape[1:])
        self.input_size = (shape[3], shape[2]) if layout == "NCHW" else (shape[2], shape[1])
        dtype = _DTYPES.get(inputs[0].type)
        if dtype is None:
            raise ModelLoadError(f"{path}: unsupported input type {inputs[0].type} (known: {', '.join(_DTYPES)})")
        self.input_dtype = np.dtype(dtype)
        self.input_quantization = (0.0, 0)
        outputs = session.get_outputs()
        self.output_names = [o.name for o in outputs]
        self.output_shapes = [_dims(o.shape) for o in outputs]

    @property
    def provider(self) -> str:
        return self.providers[0]

    def infer(self, tensor: np.ndarray) -> list[np.ndarray]:
        if tensor.shape != self.input_shape or tensor.dtype != self.input_dtype:
            raise InferenceError(
                f"{self.path.name} takes {self.input_dtype}{list(self.input_shape)} ({self.input_layout}), "
                f"got {tensor.dtype}{list(tensor.shape)}"
            )
        try:
            return list(self._session.run(None, {self._input_name: tensor}))
        except Exception as exc:  # onnxruntime raises its own exception types
            raise InferenceError(f"onnxruntime failed on {self.path.name}: {type(exc).__name__}: {exc}") from None
