"""The TFLite interpreter API shared by the LiteRT and EdgeTPU backends.

LiteRT (`ai_edge_litert`) is the primary runtime; `tflite_runtime` is the fallback for images
that already carry it (older JetPack). Both are imported here, on first use, never when the
package is imported: importing a runtime costs seconds on a Pi and may fail (tflite_runtime
2.14 cannot load next to NumPy 2).
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .base import BackendUnavailable, InferenceError, ModelHandle, ModelLoadError
from .nativelog import native_stderr_to_log

log = logging.getLogger(__name__)

Runtime = Literal["auto", "ai_edge_litert", "tflite_runtime"]
RUNTIME_MODULES: dict[str, str] = {
    "ai_edge_litert": "ai_edge_litert.interpreter",
    "tflite_runtime": "tflite_runtime.interpreter",
}


@dataclass(frozen=True)
class InterpreterApi:
    """The two entry points we use from whichever runtime imported."""

    runtime: str
    interpreter: Callable[..., Any]
    load_delegate: Callable[..., Any]


def interpreter_api(runtime: Runtime = "auto") -> InterpreterApi:
    """The first importable runtime (LiteRT, then tflite_runtime), or BackendUnavailable saying why."""
    names = list(RUNTIME_MODULES) if runtime == "auto" else [runtime]
    reasons: list[str] = []
    for name in names:
        try:
            module = importlib.import_module(RUNTIME_MODULES[name])
            return InterpreterApi(name, module.Interpreter, module.load_delegate)
        except Exception as exc:  # a broken runtime can raise anything at import time
            reasons.append(f"{name}: {type(exc).__name__}: {exc}")
    raise BackendUnavailable("no TFLite runtime importable (" + "; ".join(reasons) + ")")


class TfliteModel(ModelHandle):
    """One allocated interpreter. A lock serializes calls: interpreters are not thread-safe."""

    def __init__(
        self,
        path: Path,
        api: InterpreterApi,
        num_threads: int,
        delegates: Sequence[Any] = (),
        input_size: tuple[int, int] | None = None,
        device: str = "cpu",
    ) -> None:
        self.path = path
        self.runtime = api.runtime
        self.device = device
        try:
            with native_stderr_to_log(log):  # the runtime's own INFO lines, at INFO (nativelog.py)
                self._interpreter = api.interpreter(
                    model_path=str(path), num_threads=num_threads, experimental_delegates=list(delegates) or None
                )
                self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError, OSError) as exc:
            raise ModelLoadError(f"{api.runtime} cannot load {path}: {exc}") from None
        inputs = self._interpreter.get_input_details()
        if len(inputs) != 1 or len(inputs[0]["shape"]) != 4:
            raise ModelLoadError(f"{path}: expected one NHWC image input, got {[tuple(i['shape']) for i in inputs]}")
        self._input = inputs[0]
        self._outputs = self._interpreter.get_output_details()
        self.input_shape = tuple(int(d) for d in self._input["shape"])
        self.input_size = (self.input_shape[2], self.input_shape[1])
        if input_size is not None and tuple(input_size) != self.input_size:
            raise ModelLoadError(
                f"{path}: takes {self.input_size[0]}x{self.input_size[1]}; a TFLite model's input size is fixed "
                f"(asked for {input_size[0]}x{input_size[1]})"
            )
        self.input_dtype = np.dtype(self._input["dtype"])
        scale, zero_point = self._input.get("quantization", (0.0, 0))
        self.input_quantization = (float(scale), int(zero_point))
        self.output_names = [str(d["name"]) for d in self._outputs]
        self.output_shapes = [tuple(int(x) for x in d["shape"]) for d in self._outputs]
        self._lock = threading.Lock()

    def infer(self, tensor: np.ndarray) -> list[np.ndarray]:
        if tensor.shape != self.input_shape or tensor.dtype != self.input_dtype:
            raise InferenceError(
                f"{self.path.name} takes {self.input_dtype}{list(self.input_shape)}, got {tensor.dtype}{list(tensor.shape)}"
            )
        with self._lock:
            try:
                self._interpreter.set_tensor(self._input["index"], tensor)
                self._interpreter.invoke()
                return [self._interpreter.get_tensor(d["index"]) for d in self._outputs]
            except (ValueError, RuntimeError) as exc:
                raise InferenceError(f"{self.runtime} failed on {self.path.name}: {exc}") from None
