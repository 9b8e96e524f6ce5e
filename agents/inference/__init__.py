"""Inference backends, chosen by a `type` key: `litert` (CPU), `edgetpu` (Coral) and `onnx`
(ONNX Runtime: CPU, or CUDA / TensorRT on an NVIDIA GPU).

    backend = create_backend({"type": "litert", "num_threads": 2})
    model = backend.load(Path("models/pose_detection.tflite"))
    outputs = model.infer(tensor)

Runtimes are imported on first use, never when this package is imported.
"""

from .base import (
    Availability,
    BackendConfigBase,
    BackendError,
    BackendUnavailable,
    InferenceBackend,
    InferenceError,
    Layout,
    ModelHandle,
    ModelLoadError,
)
from .choice import AUTO_BACKENDS, BackendChoice, choose_backend
from .edgetpu import EdgeTPUBackend, EdgeTPUConfig
from .litert import LiteRTBackend, LiteRTConfig
from .onnx import OnnxBackend, OnnxConfig, OnnxModel, offered_providers
from .registry import (
    BACKENDS,
    BackendConfig,
    available_backends,
    backend_availability,
    create_backend,
    parse_backend_config,
)

__all__ = [
    "AUTO_BACKENDS",
    "BACKENDS",
    "Availability",
    "BackendChoice",
    "BackendConfig",
    "BackendConfigBase",
    "BackendError",
    "BackendUnavailable",
    "EdgeTPUBackend",
    "EdgeTPUConfig",
    "InferenceBackend",
    "InferenceError",
    "Layout",
    "LiteRTBackend",
    "LiteRTConfig",
    "ModelHandle",
    "ModelLoadError",
    "OnnxBackend",
    "OnnxConfig",
    "OnnxModel",
    "available_backends",
    "backend_availability",
    "choose_backend",
    "create_backend",
    "offered_providers",
    "parse_backend_config",
]
