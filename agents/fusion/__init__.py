"""Sensor fusion math for agents: pure functions, the filter state travels with the job.

out = fuse_window(prior_state, readings, KalmanConfig())   # one quantity, many sensors
orientation = fuse_imu(prior_imu_state, samples, ImuConfig())
next_prior = out.state                                      # JSON-safe, any node can go on
"""

from edgehive.schemas.fusion import FilterState, ImuConfig, ImuSample, ImuState, KalmanConfig, Reading, SensorState

from .imu import ImuOutput, fuse_imu
from .kalman import FusionOutput, Rejection, fuse_window

__all__ = [
    "FilterState",
    "FusionOutput",
    "ImuConfig",
    "ImuOutput",
    "ImuSample",
    "ImuState",
    "KalmanConfig",
    "Reading",
    "Rejection",
    "SensorState",
    "fuse_imu",
    "fuse_window",
]
