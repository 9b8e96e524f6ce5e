"""The base of every message: a version field, no unknown keys, compact JSON on the wire."""

from __future__ import annotations

import math
from typing import Annotated, Any, Final, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

# Ids travel inside topic levels, so they must never contain `/`, `+`, `#` or spaces.
IDENT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"
Ident = Annotated[str, StringConstraints(pattern=IDENT_PATTERN)]

SCHEMA_VERSION: Final = 1

# The widest integers JSON tools agree on (orjson, Go, Rust, InfluxDB): signed and unsigned 64-bit.
INT_MIN, INT_MAX = -(2**63), 2**64 - 1
MAX_JSON_DEPTH = 32


def check_json_value(value: Any, depth: int = 0) -> Any:
    """Refuse what our own encoder cannot write back unchanged: an integer beyond 64 bits makes
    orjson raise (a job that then wedged the journal), a non-finite float silently becomes
    `null`, and very deep nesting exhausts encoders' recursion limits. A free-form value
    (job params, a result's output) is accepted only if it round-trips."""
    if depth > MAX_JSON_DEPTH:
        raise ValueError(f"nested deeper than {MAX_JSON_DEPTH} levels")
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        if not INT_MIN <= value <= INT_MAX:
            raise ValueError(f"integer {str(value)[:24]}… does not fit in 64 bits" if len(str(value)) > 24 else f"integer {value} does not fit in 64 bits")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value} is not a number JSON can carry (NaN and infinities are refused)")
        return value
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"object key {key!r} is not a string")
            check_json_value(item, depth + 1)
        return value
    if isinstance(value, (list, tuple)):
        for item in value:
            check_json_value(item, depth + 1)
        return value
    raise ValueError(f"{type(value).__name__} is not a JSON value")


MAX_COUNT = 1 << 53  # counters and sequence numbers: exact in every JSON reader
Count = Annotated[int, Field(ge=0, le=MAX_COUNT)]

JsonValue = Annotated[Any, AfterValidator(check_json_value)]
JsonObject = Annotated[dict[str, Any], AfterValidator(check_json_value)]


class Message(BaseModel):
    """A protocol message. Unknown fields are refused so that typos surface as errors, and values
    are strict: `"priority": "1"` or `true` is refused rather than guessed into 1."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=(), allow_inf_nan=False, strict=True)

    v: Literal[1] = SCHEMA_VERSION


class Part(BaseModel):
    """A nested structure inside a message (no version of its own)."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=(), allow_inf_nan=False, strict=True)


M = TypeVar("M", bound=BaseModel)


def encode(message: BaseModel) -> bytes:
    """Compact JSON bytes, without null fields, ready to publish."""
    return message.__pydantic_serializer__.to_json(message, exclude_none=True)


def decode(model: type[M], payload: bytes | str) -> M:
    """Parse and validate; raises pydantic.ValidationError on any defect."""
    return model.model_validate_json(payload)
