"""The `fusion` job kind: one window of a sensor group in, the fused estimate and posterior out.

The agent keeps nothing between windows: the prior arrives in the job and the posterior leaves
in the result, where the coordinator picks it up for the group's next window.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edgehive.schemas import Ident
from edgehive.schemas.kinds import FUSION_KIND
from edgehive.schemas.sensors import FusionEstimate, FusionOrientation, FusionRejection

from ..kinds import JobFailed, JobKind
from .imu import ImuConfig, ImuSample, ImuState, fuse_imu
from .kalman import FilterState, KalmanConfig, Reading, fuse_window


class FusionParams(BaseModel):
    """What the coordinator puts in a fusion job (see coordinator/fusion.py)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    method: Literal["kalman", "imu"]
    group: Ident
    quantity: Ident
    unit: str | None = None
    window: int = Field(ge=1)
    window_start: float
    window_end: float
    prior: dict[str, Any] | None = None
    readings: list[list[Any]] = Field(min_length=1, description="[sensor, value, ts], or [sensor, ax, ay, az, gx, gy, gz, ts] for imu")
    config: dict[str, Any] = Field(default_factory=dict)


def run_fusion(params: FusionParams) -> dict[str, Any]:
    try:
        output = _fuse_kalman(params) if params.method == "kalman" else _fuse_imu(params)
    except (ValidationError, ValueError, TypeError, IndexError) as error:
        raise JobFailed(f"fusion window {params.window} of {params.group}: {_short(error)}") from None
    return output.model_dump(mode="json")


def _fuse_kalman(params: FusionParams) -> FusionEstimate:
    readings = [Reading(sensor=row[0], value=row[1], timestamp=row[2]) for row in params.readings]
    prior = FilterState.model_validate(params.prior) if params.prior else None
    out = fuse_window(prior, readings, KalmanConfig.model_validate(params.config))
    return FusionEstimate(
        group=params.group, quantity=params.quantity, unit=params.unit, window=params.window,
        estimate=out.estimate, variance=out.variance, used=out.used,
        rejected=[FusionRejection(sensor=r.sensor, reason=r.reason, count=r.count) for r in out.rejected],
        readings=len(readings), window_start=params.window_start, window_end=params.window_end,
        state=out.state.model_dump(mode="json"),
    )


def _fuse_imu(params: FusionParams) -> FusionOrientation:
    sensors = {row[0] for row in params.readings}
    if len(sensors) > 1:
        raise ValueError(f"an imu group fuses one IMU, this window has {len(sensors)}: {', '.join(sorted(sensors))}")
    samples = [ImuSample(accel=(r[1], r[2], r[3]), gyro=(r[4], r[5], r[6]), timestamp=r[7]) for r in params.readings]
    prior = ImuState.model_validate(params.prior) if params.prior else None
    out = fuse_imu(prior, samples, ImuConfig.model_validate(params.config))
    return FusionOrientation(
        group=params.group, window=params.window, roll=out.roll, pitch=out.pitch, yaw=out.yaw, samples=out.samples,
        window_start=params.window_start, window_end=params.window_end, state=out.state.model_dump(mode="json"),
    )


def _short(error: Exception) -> str:
    if isinstance(error, ValidationError):
        first = error.errors()[0]
        return f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"
    return str(error)[:300]


def fusion_kind() -> JobKind:
    return JobKind(FUSION_KIND, FusionParams, run_fusion)
