"""The backend registry: a `type` key picks the backend and validates its config.

Adding a backend means one module with a config (with `type: Literal["key"]`) and an
InferenceBackend subclass, plus one line in BACKENDS below. No `if USE_CORAL:` anywhere else.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import Field, TypeAdapter, ValidationError

from .base import Availability, BackendConfigBase, BackendError, InferenceBackend
from .edgetpu import EdgeTPUBackend, EdgeTPUConfig
from .litert import LiteRTBackend, LiteRTConfig
from .onnx import OnnxBackend, OnnxConfig

log = logging.getLogger(__name__)

BACKENDS: Mapping[str, type[InferenceBackend]] = {
    LiteRTBackend.type_key: LiteRTBackend,
    EdgeTPUBackend.type_key: EdgeTPUBackend,
    OnnxBackend.type_key: OnnxBackend,
}

BackendConfig = Annotated[LiteRTConfig | EdgeTPUConfig | OnnxConfig, Field(discriminator="type")]
_CONFIG = TypeAdapter(BackendConfig)


def parse_backend_config(value: BackendConfigBase | Mapping[str, Any] | str) -> BackendConfigBase:
    """A config from a model, a mapping such as {"type": "litert", "num_threads": 2}, or a bare type key."""
    if isinstance(value, BackendConfigBase):
        return value
    data = {"type": value} if isinstance(value, str) else dict(value)
    try:
        return _CONFIG.validate_python(data)
    except ValidationError as exc:
        raise BackendError(f"invalid backend config {data!r}: known types are {sorted(BACKENDS)}\n{exc}") from None


def create_backend(config: BackendConfigBase | Mapping[str, Any] | str = "litert") -> InferenceBackend:
    """The backend for `config` (constructing it loads nothing; `load()` does)."""
    cfg = parse_backend_config(config)
    return BACKENDS[cfg.type](cfg)


def backend_availability() -> dict[str, Availability]:
    """Every registered backend with whether it can run here (default configs) and why."""
    return {key: cls.available() for key, cls in BACKENDS.items()}


def available_backends() -> list[str]:
    """Backend keys usable on this device, for the capability probe (each backend's
    `advertised()`: ONNX Runtime is not imported only to be listed)."""
    result = []
    for key, cls in BACKENDS.items():
        availability = cls.advertised()
        if availability:
            result.append(key)
        else:
            log.debug("backend %s unavailable: %s", key, availability.reason)
    return result
