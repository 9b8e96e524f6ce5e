"""Agent settings (`EDGEHIVE_*`)."""

from __future__ import annotations

import os
from typing import Literal

from pydantic import Field, model_validator

from edgehive.schemas.topics import Topics
from edgehive.settings import CommonSettings


def _default_workers() -> int:
    return os.cpu_count() or 1


class AgentSettings(CommonSettings):
    workers: int = Field(default_factory=_default_workers, ge=1, le=256, description="Jobs run at the same time (default: CPU count)")
    slots: int = Field(0, ge=0, le=4096, description="Jobs accepted at once, running plus prefetched (0: 2 × workers)")
    tags: str = Field("", description="Comma-separated tags that jobs can require, e.g. 'camera,outdoor'")
    models_dir: str = Field("models", description="Folder of the model manifest and the fetched model files (.tflite, .onnx)")
    models: str = Field("", description="Comma-separated models to load (empty: every manifest model present in models_dir)")
    backend: Literal["auto", "litert", "edgetpu", "onnx"] = Field(
        "auto", description="Inference backend for the models it runs: auto (per model: TFLite on the EdgeTPU when present, "
        "else LiteRT; ONNX on ONNX Runtime), litert, edgetpu, onnx; models of other formats get the auto choice"
    )
    onnx_providers: str = Field(
        "auto", description="ONNX Runtime execution providers: auto (TensorRT, then CUDA, where onnxruntime offers them, "
        "else CPU) or a comma-separated list of tensorrt, cuda, cpu (ONNX models are not loaded when the first cannot run)"
    )
    tensorrt_cache_dir: str = Field("", description="Folder where TensorRT keeps the engines it builds for ONNX models (empty: rebuilt at every start)")
    inference_threads: int = Field(1, ge=1, le=64, description="Interpreter threads per model instance")
    snapshot_interval_s: float = Field(5.0, ge=0, description="Seconds between annotated snapshots per camera on snapshots/{camera} (0: none)")
    host_root: str = Field("/", description="Where the device's /proc and /sys are visible (containers may mount them elsewhere)")
    drain_timeout_s: float = Field(30.0, ge=0, description="On SIGTERM, how long to let in-flight jobs finish; then they are handed back")
    prefetch_wait_max_s: float = Field(30.0, ge=0, description="A job accepted but still waiting for a worker after this long (a worker is stuck) is handed back to run elsewhere, once per job (0: never)")

    @model_validator(mode="after")
    def _node_id_is_a_topic_level(self) -> AgentSettings:
        Topics(self.prefix).jobs(self.node_id)  # TopicError (a ValueError) names what an id may hold
        return self

    @property
    def effective_slots(self) -> int:
        return self.slots or 2 * self.workers

    @property
    def model_list(self) -> list[str]:
        return [m.strip() for m in self.models.split(",") if m.strip()]

    @property
    def tag_list(self) -> list[str]:
        return [t.strip() for t in self.tags.split(",") if t.strip()]
