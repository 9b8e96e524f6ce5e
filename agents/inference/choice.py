"""Which backend runs which model: by the model's file format, the agent's setting, and what is usable here.

A TFLite model runs on the EdgeTPU when its delegate loads, else on LiteRT; an ONNX model on
ONNX Runtime. A backend setting other than `auto` applies to the formats that backend runs,
so `litert` keeps TFLite models off a Coral without taking the ONNX models off the GPU.
"""

from __future__ import annotations

from dataclasses import dataclass

from .base import BackendConfigBase, BackendError
from .registry import BACKENDS, parse_backend_config

__all__ = ["AUTO_BACKENDS", "BackendChoice", "choose_backend"]

# For each model file format, the backends that run it, best first: what `auto` tries.
AUTO_BACKENDS: dict[str, tuple[str, ...]] = {"tflite": ("edgetpu", "litert"), "onnx": ("onnx",)}


@dataclass(frozen=True)
class BackendChoice:
    """How models are matched to backends: the agent's backend setting and each backend's config."""

    setting: str = "auto"
    threads: int = 1
    onnx_providers: str = "auto"
    tensorrt_cache_dir: str = ""

    def config(self, key: str) -> BackendConfigBase:
        data: dict[str, object] = {"type": key, "num_threads": self.threads}
        if key == "onnx":
            providers = [p.strip() for p in self.onnx_providers.split(",") if p.strip()]
            data["providers"] = "auto" if providers in ([], ["auto"]) else providers
            data["tensorrt_cache_dir"] = self.tensorrt_cache_dir or None
        return parse_backend_config(data)

    def candidates(self, model_format: str) -> tuple[str, ...]:
        """The setting when it names a backend for this format; else every backend for it, best first."""
        if self.setting in BACKENDS and model_format in BACKENDS[self.setting].formats:
            return (self.setting,)
        return AUTO_BACKENDS.get(model_format, ())

    def choose(self, model_format: str) -> tuple[BackendConfigBase | None, str]:
        """The config of the first usable backend for `model_format`, or None and why none is."""
        reasons = []
        for key in self.candidates(model_format):
            try:
                config = self.config(key)
            except BackendError as error:
                reasons.append(f"{key}: {error}")
                continue
            verdict = BACKENDS[key].available(config)
            if verdict:
                return config, verdict.reason
            reasons.append(f"{key}: {verdict.reason}")
        return None, "; ".join(reasons) or f"no backend runs {model_format} models"


def choose_backend(name: str, model_format: str = "tflite") -> str | None:
    """The backend key a model of `model_format` gets under the setting `name` (None: none can run it).
    `auto`: the Coral EdgeTPU when its delegate loads, else LiteRT, for TFLite; ONNX Runtime for ONNX."""
    config, _ = BackendChoice(setting=name).choose(model_format)
    return config.type if config is not None else None
