"""The names of the built-in job kinds, and the params and output models of the simple ones.

A kind's name is what travels in `kind` (job requests, jobs, results, job states) and in the
result topic `results/{kind}/{source}`: the coordinator, the agents, the sink, the benchmarks
and Home Assistant's discovery configs must spell it the same way, so it is spelled here only.
The richer kinds keep their contracts next to their outputs: `detections` in `vision.py`,
`fusion` in `fusion.py`.
"""

from __future__ import annotations

from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field

SLEEP_KIND: Final = "sleep"  # part of the protocol every agent speaks: waits, then says how long
NOOP_KIND: Final = "noop"  # echoes its params: tests and the dispatch benchmark
DETECT_KIND: Final = "detections"  # object detection on a camera frame; results on results/detections/{camera}
FUSION_KIND: Final = "fusion"  # one window of a sensor group; results on results/fusion/{group}

BUILTIN_KINDS: Final = (SLEEP_KIND, NOOP_KIND, DETECT_KIND, FUSION_KIND)

MAX_SLEEP_S = 600.0


class SleepParams(BaseModel):
    """`sleep`'s params: how long the job holds a worker."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    seconds: float = Field(0.05, ge=0, le=MAX_SLEEP_S, description="How long to sleep; at most ten minutes")


class SleepOutput(BaseModel):
    """`sleep`'s output."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    slept_s: float = Field(ge=0, le=MAX_SLEEP_S, description="The seconds asked for")


class NoopParams(BaseModel):
    """`noop`'s params: anything goes; `echo` comes back as the output (null when absent)."""

    model_config = ConfigDict(extra="allow")
    echo: Any = None
