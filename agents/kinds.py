"""The registry of job kinds an agent runs. Vision and fusion register here in their own modules.

A kind declares a pydantic model of its parameters, so a job with bad parameters fails
with a clear message instead of an exception deep inside the work.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class JobFailed(Exception):
    """Raised by a kind for an expected failure; its message becomes the result's `error`."""


@dataclass(frozen=True)
class JobKind:
    """`inline` kinds finish in microseconds and never block: they run on the thread that
    received them, because handing them to a worker would cost more than running them.
    `takes_frame` kinds get the frame's JPEG bytes as a second argument (see
    schemas/envelope.py): images never travel inside JSON params."""

    name: str
    params: type[BaseModel]
    run: Callable[..., Any]
    inline: bool = False
    takes_frame: bool = False


class KindRegistry:
    """Kinds by name; each agent builds its own, so tests can add kinds without global state."""

    def __init__(self, kinds: Iterable[JobKind] = ()) -> None:
        self._kinds: dict[str, JobKind] = {}
        for kind in kinds:
            self.register(kind)

    def register(self, kind: JobKind) -> None:
        if kind.name in self._kinds:
            raise ValueError(f"job kind {kind.name!r} is already registered")
        self._kinds[kind.name] = kind

    def get(self, name: str) -> JobKind | None:
        return self._kinds.get(name)

    def names(self) -> list[str]:
        return sorted(self._kinds)


class SleepParams(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    seconds: float = Field(0.05, ge=0, le=3600)


class NoopParams(BaseModel):
    """Anything goes; `echo` comes back as the output."""

    model_config = ConfigDict(extra="allow")
    echo: Any = None


def _sleep(params: SleepParams) -> dict[str, float]:
    time.sleep(params.seconds)
    return {"slept_s": params.seconds}


def _noop(params: NoopParams) -> Any:
    return params.echo


def builtin_kinds() -> KindRegistry:
    """`sleep` (DESIGN.md's fixed point; every agent runs it) and `noop` (tests, benchmarks)."""
    return KindRegistry([JobKind("sleep", SleepParams, _sleep), JobKind("noop", NoopParams, _noop, inline=True)])
