"""Typed results: each built-in kind's output model, and parsers that check a result against it.

The coordinator relays results without looking at `output`; whoever reads one kind's results
(the sink, `edgehive submit`, a benchmark, a test) wants the kind's model instead of a dict:

    result = parse_result(payload, DetectionOutput)   # Result[DetectionOutput]
    result.output.detections[0].label                  # typed; None when the job failed

`noop` echoes whatever it was given, so it has no model: its results stay plain `Result`.
"""

from __future__ import annotations

from functools import cache
from typing import Any, TypeVar

from pydantic import TypeAdapter

from .base import decode
from .fusion import FusionOutput
from .kinds import DETECT_KIND, FUSION_KIND, SLEEP_KIND, SleepOutput
from .messages import Result
from .vision import DetectionOutput

Out = TypeVar("Out")

# Kind name → the model of its output (fusion: a FusionEstimate or a FusionOrientation, by `method`).
OUTPUT_MODELS: dict[str, Any] = {
    SLEEP_KIND: SleepOutput,
    DETECT_KIND: DetectionOutput,
    FUSION_KIND: FusionOutput,
}


def parse_result(payload: bytes | str, output: type[Out]) -> Result[Out]:
    """Parse and validate a result whose `output` must be an `output` (or absent, when the job failed);
    raises pydantic.ValidationError on any defect, in the envelope or in the output."""
    return decode(Result[output], payload)  # type: ignore[valid-type]


def output_as(result: Result[Any], output: type[Out]) -> Out | None:
    """The output of an already parsed result, checked against `output`; None when it has none.
    Raises pydantic.ValidationError when the output is not one."""
    if result.output is None:
        return None
    return _adapter(output).validate_python(result.output)  # type: ignore[no-any-return,arg-type]  # a model class is hashable; the cache key is the class


def kind_output(result: Result[Any]) -> Any:
    """The output as its kind's model (see OUTPUT_MODELS); unchanged for kinds without one."""
    model = OUTPUT_MODELS.get(result.kind)
    return result.output if model is None or result.output is None else _adapter(model).validate_python(result.output)


@cache
def _adapter(model: Any) -> TypeAdapter[Any]:
    return TypeAdapter(model)
