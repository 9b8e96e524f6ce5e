"""The `fusion` job kind: one window of a sensor group in, the fused estimate and posterior out.

The agent keeps nothing between windows: the prior arrives in the job and the posterior leaves
in the result, where the coordinator picks it up for the group's next window. The params and
output models are the contract with the coordinator (schemas/fusion.py).
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from edgehive.schemas.fusion import (
    FusionEstimate,
    FusionOrientation,
    FusionParams,
    FusionRejection,
    ImuSample,
    ImuWindow,
    KalmanWindow,
)
from edgehive.schemas.kinds import FUSION_KIND

from ..kinds import JobFailed, JobKind
from .imu import fuse_imu
from .kalman import fuse_window


def run_fusion(params: FusionParams) -> dict[str, Any]:
    window = params.root
    try:
        output = _fuse_kalman(window) if isinstance(window, KalmanWindow) else _fuse_imu(window)
    except (ValidationError, ValueError, TypeError) as error:
        raise JobFailed(f"fusion window {window.window} of {window.group}: {_short(error)}") from None
    return output.model_dump(mode="json")


def _fuse_kalman(window: KalmanWindow) -> FusionEstimate:
    out = fuse_window(window.prior, window.readings, window.config)
    return FusionEstimate(
        group=window.group, quantity=window.quantity, unit=window.unit, window=window.window,
        estimate=out.estimate, variance=out.variance, used=out.used,
        rejected=[FusionRejection(sensor=r.sensor, reason=r.reason, count=r.count) for r in out.rejected],
        readings=len(window.readings), window_start=window.window_start, window_end=window.window_end,
        state=out.state,
    )


def _fuse_imu(window: ImuWindow) -> FusionOrientation:
    sensors = {row.sensor for row in window.readings}
    if len(sensors) > 1:
        raise ValueError(f"an imu group fuses one IMU, this window has {len(sensors)}: {', '.join(sorted(sensors))}")
    samples = [ImuSample(accel=(r.ax, r.ay, r.az), gyro=(r.gx, r.gy, r.gz), timestamp=r.timestamp) for r in window.readings]
    out = fuse_imu(window.prior, samples, window.config)
    return FusionOrientation(
        group=window.group, window=window.window, roll=out.roll, pitch=out.pitch, yaw=out.yaw, samples=out.samples,
        window_start=window.window_start, window_end=window.window_end, state=out.state,
    )


def _short(error: Exception) -> str:
    if isinstance(error, ValidationError):
        first = error.errors()[0]
        return f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"
    return str(error)[:300]


def fusion_kind() -> JobKind:
    return JobKind(FUSION_KIND, FusionParams, run_fusion)
