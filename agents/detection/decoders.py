"""Decoder registry: the manifest's `decoder` key picks how a model's outputs become candidates."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

import numpy as np

from edgehive.agents.inference import ModelHandle
from edgehive.agents.modelstore import ModelSpec

from .blaze import BlazeDecoder, BlazePoseDecoder
from .candidates import Candidates
from .centerface import CenterFaceDecoder
from .errors import DetectionError
from .ssd import SsdPostprocessedDecoder
from .ssd_raw import SsdAnchorsDecoder


class Decoder(Protocol):
    def decode(self, outputs: Sequence[np.ndarray]) -> Candidates:
        """Thresholded, suppressed candidates, best first, in coordinates normalized to the model input."""
        ...


DECODERS: Mapping[str, Callable[[ModelSpec, ModelHandle], Decoder]] = {
    "blazeface": BlazeDecoder,
    "blazepose_detector": BlazePoseDecoder,
    "centerface": CenterFaceDecoder,
    "ssd_anchors": SsdAnchorsDecoder,
    "ssd_postprocessed": SsdPostprocessedDecoder,
}


def make_decoder(spec: ModelSpec, model: ModelHandle) -> Decoder:
    """The decoder for `spec`, checked against the loaded model's outputs."""
    try:
        factory = DECODERS[spec.decoder]
    except KeyError:
        raise DetectionError(f"model {spec.name}: unknown decoder {spec.decoder!r} (known: {sorted(DECODERS)})") from None
    return factory(spec, model)
