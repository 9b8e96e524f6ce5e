"""Coral EdgeTPU: the TFLite interpreter with the `libedgetpu` delegate.

Only models compiled for the EdgeTPU (`*_edgetpu.tflite`) run on the accelerator; any other
operations fall back to the CPU. Availability is checked by loading the library and creating
the delegate, the only test that a TPU is both installed and reachable.
"""

from __future__ import annotations

import ctypes
import logging
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import Field

from .base import Availability, BackendConfigBase, BackendUnavailable, InferenceBackend, ModelHandle
from .tflite import Runtime, TfliteModel, interpreter_api

log = logging.getLogger(__name__)

BACKEND_KEY: Final = "edgetpu"


class EdgeTPUConfig(BackendConfigBase):
    type: Literal["edgetpu"] = BACKEND_KEY
    device: str | None = Field(None, description="'usb', 'usb:0', 'pci' or 'pci:0'; None: the first TPU found")
    library: str = Field("libedgetpu.so.1", description="The delegate's shared library")
    num_threads: int = Field(1, ge=1, le=64, description="CPU threads for operations the TPU does not run")
    runtime: Runtime = "auto"


def _delegate_options(config: EdgeTPUConfig) -> dict[str, str] | None:
    return {"device": config.device} if config.device else None


class EdgeTPUBackend(InferenceBackend):
    type_key = BACKEND_KEY
    config_class = EdgeTPUConfig
    formats = frozenset({"tflite"})
    config: EdgeTPUConfig

    def __init__(self, config: EdgeTPUConfig | None = None) -> None:
        super().__init__(config if config is not None else EdgeTPUConfig())

    @classmethod
    def available(cls, config: BackendConfigBase | None = None) -> Availability:
        cfg = config if isinstance(config, EdgeTPUConfig) else EdgeTPUConfig()
        try:
            cls._delegate(cfg)
        except BackendUnavailable as exc:
            return Availability(False, str(exc))
        return Availability(True, f"{cfg.library} loaded, TPU {cfg.device or 'found'}")

    @staticmethod
    def _delegate(config: EdgeTPUConfig) -> Any:
        api = interpreter_api(config.runtime)
        # Load the library ourselves first: a missing library inside load_delegate leaves a
        # half-built Delegate whose destructor raises, and says less than dlopen does.
        try:
            ctypes.CDLL(config.library)
        except OSError as exc:
            raise BackendUnavailable(f"EdgeTPU library {config.library} cannot be loaded: {exc}") from None
        try:
            return api.load_delegate(config.library, _delegate_options(config))
        except (ValueError, RuntimeError, OSError) as exc:
            raise BackendUnavailable(f"EdgeTPU delegate failed (is a Coral TPU attached?): {exc}") from None

    def load(self, model_path: Path, input_size: tuple[int, int] | None = None) -> ModelHandle:
        delegate = self._delegate(self.config)
        model = TfliteModel(
            Path(model_path), interpreter_api(self.config.runtime), self.config.num_threads, [delegate],
            input_size=input_size, device="edgetpu",
        )
        log.info("loaded %s on the EdgeTPU (%s)", model_path, self.config.device or "first found")
        return model
