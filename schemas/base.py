"""The base of every message: a version field, no unknown keys, compact JSON on the wire."""

from __future__ import annotations

from typing import Annotated, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, StringConstraints

# Ids travel inside topic levels, so they must never contain `/`, `+`, `#` or spaces.
IDENT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"
Ident = Annotated[str, StringConstraints(pattern=IDENT_PATTERN)]

SCHEMA_VERSION = 1


class Message(BaseModel):
    """A protocol message. Unknown fields are refused so that typos surface as errors."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=(), allow_inf_nan=False)

    v: Literal[1] = SCHEMA_VERSION


class Part(BaseModel):
    """A nested structure inside a message (no version of its own)."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=(), allow_inf_nan=False)


M = TypeVar("M", bound=BaseModel)


def encode(message: BaseModel) -> bytes:
    """Compact JSON bytes, without null fields, ready to publish."""
    return message.__pydantic_serializer__.to_json(message, exclude_none=True)


def decode(model: type[M], payload: bytes | str) -> M:
    """Parse and validate; raises pydantic.ValidationError on any defect."""
    return model.model_validate_json(payload)
