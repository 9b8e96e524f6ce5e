"""What every inference backend offers: a config, an availability check, and loaded models.

Backends differ in what they need from the device (a Python runtime, a delegate library, an
accelerator), so each says itself whether it can run here and why not. A loaded model is a
handle that takes one input tensor and returns the output tensors: nothing above this layer
knows which runtime produced them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from ...errors import EdgehiveError

__all__ = [
    "Availability",
    "BackendConfigBase",
    "BackendError",
    "BackendUnavailable",
    "InferenceBackend",
    "InferenceError",
    "Layout",
    "ModelHandle",
    "ModelLoadError",
]


Layout = Literal["NHWC", "NCHW"]  # where the colour channels are in a (1, ...) image input


class BackendError(EdgehiveError):
    """Root of the inference errors; runtime exceptions never leak past a backend."""


class BackendUnavailable(BackendError):
    """The backend cannot run on this device (runtime not installed, no accelerator)."""


class ModelLoadError(BackendError):
    """The runtime refused the model file."""


class InferenceError(BackendError):
    """A tensor of the wrong shape or type, or the runtime failed while invoking."""


@dataclass(frozen=True)
class Availability:
    """Whether a backend can run here; falsy when it cannot, with the reason a human needs."""

    ok: bool
    reason: str = ""

    def __bool__(self) -> bool:
        return self.ok


class BackendConfigBase(BaseModel):
    """Each backend's config subclasses this with `type: Literal["<key>"]` (the discriminator)."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=(), frozen=True)

    type: str


class ModelHandle(ABC):
    """A model ready to run. `input_size` is (width, height) of its image input.

    `input_layout` says where the channels are, so the caller builds the tensor the model
    takes (TFLite models are NHWC, most ONNX exports NCHW). `device` names what actually runs
    the model once loaded ("cpu", "edgetpu", "cuda", "tensorrt"): a backend asked for a GPU
    may have fallen back, and capabilities and logs must say what really happens.
    """

    path: Path
    input_size: tuple[int, int]
    input_shape: tuple[int, ...]
    input_dtype: np.dtype[Any]
    input_quantization: tuple[float, int]  # (scale, zero point) of a quantized input; (0.0, 0) when float
    input_layout: Layout = "NHWC"
    output_names: list[str]
    output_shapes: list[tuple[int, ...]]  # -1 where the model leaves a dim open
    device: str = "cpu"

    @abstractmethod
    def infer(self, tensor: np.ndarray) -> list[np.ndarray]:
        """Run once; the outputs come back in the model's output order (see `output_names`)."""


class InferenceBackend(ABC):
    """A runtime that loads models. Subclasses set `type_key` and `config_class`."""

    type_key: ClassVar[str]
    config_class: ClassVar[type[BackendConfigBase]]
    formats: ClassVar[frozenset[str]]  # the model file formats it runs
    # True when one loaded model may run on several threads at once (onnxruntime's Run is
    # thread-safe): the agent then loads it once for all its workers instead of once each.
    # A LiteRT interpreter is not: each worker needs its own.
    concurrent_runs: ClassVar[bool] = False

    def __init__(self, config: BackendConfigBase) -> None:
        if not isinstance(config, self.config_class):
            raise TypeError(f"{type(self).__name__} needs a {self.config_class.__name__}, got {type(config).__name__}")
        self.config = config

    @classmethod
    @abstractmethod
    def available(cls, config: BackendConfigBase | None = None) -> Availability:
        """Can this backend run here? Cheap enough for a capability probe; never raises."""

    @classmethod
    def advertised(cls) -> Availability:
        """What the capabilities say of this backend (default config). The same answer as
        `available()` unless a backend can give it without importing its runtime: an
        agent should not hold a runtime (tens of MB) only to say that it could load one."""
        return cls.available()

    @abstractmethod
    def load(self, model_path: Path, input_size: tuple[int, int] | None = None) -> ModelHandle:
        """Load and allocate a model; raises BackendUnavailable or ModelLoadError.

        `input_size` (width, height) sets the image input of a fully convolutional model whose
        file declares other dims (batch 1); a backend that cannot do that raises ModelLoadError.
        """

    def describe(self) -> str:
        return self.config.model_dump_json()
