"""Sensor fusion math for agents: pure functions, the filter state travels with the job.

out = fuse_window(prior_state, readings, KalmanConfig())   # one quantity, many sensors
orientation = fuse_imu(prior_imu_state, samples, ImuConfig())
next_prior = out.state                                      # JSON-safe, any node can go on
"""

from .imu import ImuConfig, ImuOutput, ImuSample, ImuState, fuse_imu
from .kalman import FilterState, FusionOutput, KalmanConfig, Reading, Rejection, SensorState, fuse_window

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
