"""CPU inference with LiteRT (`ai-edge-litert`), or `tflite_runtime` where only that exists."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Final, Literal

from pydantic import Field

from .base import Availability, BackendConfigBase, BackendUnavailable, InferenceBackend, ModelHandle
from .tflite import Runtime, TfliteModel, interpreter_api

log = logging.getLogger(__name__)

BACKEND_KEY: Final = "litert"


class LiteRTConfig(BackendConfigBase):
    type: Literal["litert"] = BACKEND_KEY
    num_threads: int = Field(1, ge=1, le=64, description="Interpreter threads per model (XNNPACK on the CPU)")
    runtime: Runtime = Field("auto", description="Python runtime: LiteRT first, then tflite_runtime")


class LiteRTBackend(InferenceBackend):
    type_key = BACKEND_KEY
    config_class = LiteRTConfig
    formats = frozenset({"tflite"})
    config: LiteRTConfig

    def __init__(self, config: LiteRTConfig | None = None) -> None:
        super().__init__(config if config is not None else LiteRTConfig())

    @classmethod
    def available(cls, config: BackendConfigBase | None = None) -> Availability:
        runtime = config.runtime if isinstance(config, LiteRTConfig) else "auto"
        try:
            api = interpreter_api(runtime)
        except BackendUnavailable as exc:
            return Availability(False, str(exc))
        return Availability(True, f"runtime {api.runtime}")

    def load(self, model_path: Path, input_size: tuple[int, int] | None = None) -> ModelHandle:
        api = interpreter_api(self.config.runtime)
        model = TfliteModel(Path(model_path), api, self.config.num_threads, input_size=input_size)
        log.info("loaded %s with %s (%d thread(s))", model_path, api.runtime, self.config.num_threads)
        return model
