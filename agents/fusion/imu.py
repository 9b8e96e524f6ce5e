"""IMU orientation (roll, pitch, yaw) from accelerometer and gyroscope, one window at a time.

A Mahony filter: the quaternion is integrated from the gyroscope (smooth, but drifts with its
bias) and pulled towards the gravity direction the accelerometer sees (noisy, but drift-free),
a complementary filter on rotations rather than on Euler angles, so it has no gimbal trouble
near ±90° pitch. The integral term learns the gyro bias on the roll and pitch axes. Yaw has no
absolute reference without a magnetometer, so it is gyro-only and drifts; that is physics,
not a bug.

Like the Kalman filter, `fuse_imu` is pure: `ImuState` travels with the job and comes back.
Conventions: body frame x forward, y left, z up; at rest and level the accelerometer reads
(0, 0, +g); Euler angles are ZYX (yaw, then pitch, then roll).
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import BaseModel, ConfigDict

from edgehive.schemas.fusion import ImuConfig, ImuSample, ImuState

__all__ = ["ImuOutput", "fuse_imu"]

_WIRE = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)


class ImuOutput(BaseModel):
    """Orientation at the end of the window, in degrees, and the state for the next window."""

    model_config = _WIRE

    roll: float
    pitch: float
    yaw: float
    samples: int
    window_start: float
    window_end: float
    state: ImuState


def fuse_imu(prior: ImuState | None, samples: list[ImuSample], config: ImuConfig) -> ImuOutput:
    """Run the filter over one window of samples on top of `prior` (None: level from first accel)."""
    ordered = sorted(samples, key=lambda s: s.timestamp)
    if prior is None:
        if not ordered:
            raise ValueError("the first IMU window needs at least one sample")
        prior = ImuState(quaternion=_level_from_accel(np.array(ordered[0].accel)), timestamp=ordered[0].timestamp)
    q = np.array(prior.quaternion, dtype=float)
    integral = np.array(prior.integral, dtype=float)
    t = prior.timestamp
    for sample in ordered:
        dt = min(max(sample.timestamp - t, 0.0), config.max_dt)
        t = max(t, sample.timestamp)
        omega = np.array(sample.gyro, dtype=float)
        accel = np.array(sample.accel, dtype=float)
        norm = float(np.linalg.norm(accel))
        if abs(norm - config.gravity) <= config.accel_tolerance * config.gravity:
            w, x, y, z = q
            predicted_up = np.array([2 * (x * z - w * y), 2 * (w * x + y * z), w * w - x * x - y * y + z * z])
            error = np.cross(accel / norm, predicted_up)
            integral += config.ki * error * dt
            omega = omega + config.kp * error + integral
        else:
            omega = omega + integral  # linear acceleration: trust the gyro alone
        q = q + 0.5 * dt * _multiply(q, np.array([0.0, *omega]))
        q /= np.linalg.norm(q)
    roll, pitch, yaw = _euler_degrees(q)
    w, x, y, z = (float(v) for v in q)
    bx, by, bz = (float(v) for v in integral)
    state = ImuState(quaternion=(w, x, y, z), integral=(bx, by, bz), timestamp=t)
    start = ordered[0].timestamp if ordered else t
    return ImuOutput(roll=roll, pitch=pitch, yaw=yaw, samples=len(ordered), window_start=start, window_end=t, state=state)


def _level_from_accel(accel: np.ndarray) -> tuple[float, float, float, float]:
    """Quaternion with the roll and pitch the accelerometer shows and zero yaw."""
    roll = math.atan2(accel[1], accel[2])
    pitch = math.atan2(-accel[0], math.hypot(accel[1], accel[2]))
    cr, sr = math.cos(roll / 2), math.sin(roll / 2)
    cp, sp = math.cos(pitch / 2), math.sin(pitch / 2)
    return (cr * cp, sr * cp, cr * sp, -sr * sp)


def _multiply(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product a ⊗ b."""
    aw, ax, ay, az = a
    bw, bx, by, bz = b
    return np.array(
        [
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ]
    )


def _euler_degrees(q: np.ndarray) -> tuple[float, float, float]:
    """ZYX Euler angles (roll, pitch, yaw) of a unit quaternion, in degrees."""
    w, x, y, z = q
    roll = math.atan2(2 * (w * x + y * z), 1 - 2 * (x * x + y * y))
    pitch = math.asin(max(-1.0, min(1.0, 2 * (w * y - z * x))))
    yaw = math.atan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))
    return math.degrees(roll), math.degrees(pitch), math.degrees(yaw)
