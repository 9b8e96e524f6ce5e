"""The registry of job kinds an agent runs. Vision and fusion register here in their own modules.

Each kind's name and the models of its params and output are the contract with the coordinator
and with whoever reads the results, so they live in `schemas/` (`schemas/kinds.py` for `sleep`
and `noop`); this module holds what only an agent needs: how a kind runs.

A kind declares a pydantic model of its parameters, so a job with bad parameters fails
with a clear message instead of an exception deep inside the work; the model's bounds
are the kind's limits (a `sleep` sleeps at most `schemas.kinds.MAX_SLEEP_S`). A kind may also declare
`max_runtime_s`, which the agent enforces like a deadline, and be `cancellable`: it then
gets a `cancel` event and returns soon after it is set (a deadline passed, or a drain
ran out of time), so that a job cannot hold a worker for ever.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from edgehive.schemas.kinds import NOOP_KIND, SLEEP_KIND, NoopParams, SleepOutput, SleepParams

from ..errors import EdgehiveError


class JobFailed(EdgehiveError):
    """Raised by a kind for an expected failure; its message becomes the result's `error`."""


@dataclass(frozen=True)
class JobKind:
    """`inline` kinds finish in microseconds and never block: they run on the thread that
    received them, because handing them to a worker would cost more than running them.
    `takes_frame` kinds get the frame's JPEG bytes as a second argument (see
    schemas/envelope.py): images never travel inside JSON params. `cancellable` kinds get
    a keyword `cancel` (a threading.Event) and return, or raise JobFailed, soon after it is
    set; `max_runtime_s` is a deadline the agent applies to every job of the kind.
    `model_param` names the params field that says which model a job runs: the agent then
    measures service time per model too, which is what the scheduler weighs for such jobs."""

    name: str
    params: type[BaseModel]
    run: Callable[..., Any]
    inline: bool = False
    takes_frame: bool = False
    cancellable: bool = False
    max_runtime_s: float | None = None
    model_param: str | None = None


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


def _sleep(params: SleepParams, cancel: threading.Event) -> dict[str, Any]:
    """Waits on `cancel` rather than time.sleep, so a deadline or a drain ends it at once."""
    if cancel.wait(params.seconds):
        raise JobFailed("cancelled")
    return SleepOutput(slept_s=params.seconds).model_dump()


def _noop(params: NoopParams) -> Any:
    return params.echo


def builtin_kinds() -> KindRegistry:
    """`sleep` (part of the protocol every agent speaks) and `noop` (tests, benchmarks)."""
    return KindRegistry([JobKind(SLEEP_KIND, SleepParams, _sleep, cancellable=True), JobKind(NOOP_KIND, NoopParams, _noop, inline=True)])
