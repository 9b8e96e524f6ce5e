"""Simulated sensors with a known ground truth, so fusion can be scored and faults rehearsed.

Everything is seeded: the same seed and the same sequence of calls give the same readings.
Each sensor owns its own generator, so adding or removing a sensor from a run does not change
what the others read (a fair "with and without that sensor" comparison).

- `TemperatureTruth`: a slow sinusoid plus a random walk, precomputed on a grid, interpolated.
- `SimulatedSensor`: truth + bias + drift·t + white noise, with dropout, a stuck fault and spikes.
- `ImuTrajectory` / `SimulatedImu`: smooth roll, pitch, yaw; the accelerometer sees gravity
  rotated into the body frame, the gyroscope the body rates plus bias and noise.

Pure Python (`random.Random`, `math`): a publisher draws a few numbers a second, and numpy
would add about 18 MB to every simulated sensor's process (bench/footprint.py).
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Callable
from itertools import accumulate

from pydantic import BaseModel, ConfigDict, Field

from edgehive.schemas.fusion import ImuSample, Reading

_CONFIG = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)
Vector = tuple[float, float, float]


class TemperatureTruth:
    """A ground-truth temperature: mean + amplitude·sin(2πt/period) + a seeded random walk."""

    def __init__(
        self,
        seed: int,
        duration_s: float,
        *,
        mean: float = 21.0,
        amplitude: float = 2.0,
        period_s: float = 600.0,
        walk_std_per_sqrt_s: float = 0.02,
        step_s: float = 0.05,
    ) -> None:
        rng = random.Random(seed)
        self._t = [i * step_s for i in range(math.ceil((duration_s + 2 * step_s) / step_s))]
        step_std = walk_std_per_sqrt_s * math.sqrt(step_s)
        walk = accumulate((rng.gauss(0.0, step_std) for _ in self._t[1:]), initial=0.0)
        self._values = [mean + amplitude * math.sin(2 * math.pi * t / period_s) + w for t, w in zip(self._t, walk, strict=True)]

    def __call__(self, t: float) -> float:
        """The true value at time t (seconds from the start of the run), linearly interpolated
        on the grid; before its start or past its end, the first or last value."""
        i = bisect.bisect_right(self._t, t)
        if i == 0:
            return self._values[0]
        if i == len(self._t):
            return self._values[-1]
        t0, t1, v0, v1 = self._t[i - 1], self._t[i], self._values[i - 1], self._values[i]
        return v0 + (v1 - v0) * (t - t0) / (t1 - t0)


class Faults(BaseModel):
    """Faults to inject: stuck from `stuck_from` s until `stuck_until` (at `stuck_value`, or
    frozen), and spikes (only while not stuck: a frozen driver repeats itself exactly)."""

    model_config = _CONFIG

    stuck_from: float | None = None
    stuck_until: float | None = None
    stuck_value: float | None = None
    spike_probability: float = Field(default=0.0, ge=0, le=1)
    spike_magnitude: float = Field(default=0.0, ge=0)


class SensorSpec(BaseModel):
    """How one simulated sensor misbehaves, in the units of its quantity."""

    model_config = _CONFIG

    sensor: str = Field(min_length=1)
    noise_std: float = Field(default=0.0, ge=0)
    bias: float = 0.0
    drift_per_s: float = 0.0
    dropout_probability: float = Field(default=0.0, ge=0, lt=1)
    faults: Faults = Faults()
    seed: int = 0


class SimulatedSensor:
    """One scalar sensor reading a truth function."""

    def __init__(self, spec: SensorSpec, truth: Callable[[float], float]) -> None:
        self.spec = spec
        self._truth = truth
        self._rng = random.Random(spec.seed)

    def sample(self, t: float) -> float | None:
        """The value read at time t, or None when the reading dropped out."""
        spec, faults = self.spec, self.spec.faults
        # Draw every random number on every call, so a fault does not shift the later stream.
        dropped = self._rng.random() < spec.dropout_probability
        noise = self._rng.gauss(0.0, spec.noise_std) if spec.noise_std > 0 else 0.0
        spiked = self._rng.random() < faults.spike_probability
        sign = 1.0 if self._rng.random() < 0.5 else -1.0
        if dropped:
            return None
        if faults.stuck_from is not None and t >= faults.stuck_from and (faults.stuck_until is None or t < faults.stuck_until):
            if faults.stuck_value is not None:
                return faults.stuck_value
            return self._truth(faults.stuck_from) + spec.bias + spec.drift_per_s * faults.stuck_from
        value = self._truth(t) + spec.bias + spec.drift_per_s * t + noise
        return value + sign * faults.spike_magnitude if spiked else value

    def read(self, t: float, *, epoch: float = 0.0) -> Reading | None:
        """A `Reading` stamped epoch + t, or None on dropout."""
        value = self.sample(t)
        return None if value is None else Reading(sensor=self.spec.sensor, value=value, timestamp=epoch + t)


class ImuTrajectory(BaseModel):
    """Smooth orientation over time (radians): sinusoidal roll and pitch, yaw sinusoid + spin."""

    model_config = _CONFIG

    roll_amplitude: float = 0.5
    roll_period_s: float = 7.0
    pitch_amplitude: float = 0.35
    pitch_period_s: float = 11.0
    yaw_amplitude: float = 0.8
    yaw_period_s: float = 13.0
    yaw_rate: float = 0.05

    def angles(self, t: float) -> tuple[float, float, float]:
        """(roll, pitch, yaw) in radians at time t."""
        wr, wp, wy = (2 * math.pi / p for p in (self.roll_period_s, self.pitch_period_s, self.yaw_period_s))
        return (self.roll_amplitude * math.sin(wr * t), self.pitch_amplitude * math.sin(wp * t), self.yaw_amplitude * math.sin(wy * t) + self.yaw_rate * t)

    def euler_rates(self, t: float) -> tuple[float, float, float]:
        """Time derivatives of (roll, pitch, yaw), analytically."""
        wr, wp, wy = (2 * math.pi / p for p in (self.roll_period_s, self.pitch_period_s, self.yaw_period_s))
        return (
            self.roll_amplitude * wr * math.cos(wr * t),
            self.pitch_amplitude * wp * math.cos(wp * t),
            self.yaw_amplitude * wy * math.cos(wy * t) + self.yaw_rate,
        )

    def body_rates(self, t: float) -> Vector:
        """Angular velocity in the body frame (what an ideal gyroscope reads), ZYX Euler kinematics."""
        roll, pitch, _ = self.angles(t)
        droll, dpitch, dyaw = self.euler_rates(t)
        sr, cr, sp, cp = math.sin(roll), math.cos(roll), math.sin(pitch), math.cos(pitch)
        return (droll - sp * dyaw, cr * dpitch + sr * cp * dyaw, -sr * dpitch + cr * cp * dyaw)

    def specific_force(self, t: float, gravity: float) -> Vector:
        """What an ideal accelerometer reads: the upward reaction to gravity, in the body frame."""
        roll, pitch, _ = self.angles(t)
        sr, cr, sp, cp = math.sin(roll), math.cos(roll), math.sin(pitch), math.cos(pitch)
        return (-gravity * sp, gravity * sr * cp, gravity * cr * cp)


class ImuSpec(BaseModel):
    """Noise and bias of a simulated IMU."""

    model_config = _CONFIG

    accel_noise_std: float = Field(default=0.2, ge=0)  # m/s²
    gyro_noise_std: float = Field(default=0.01, ge=0)  # rad/s
    gyro_bias: tuple[float, float, float] = (0.01, -0.008, 0.005)  # rad/s
    dropout_probability: float = Field(default=0.0, ge=0, lt=1)
    gravity: float = Field(default=9.80665, gt=0)
    seed: int = 0


class SimulatedImu:
    """An accelerometer + gyroscope rigidly moving along an `ImuTrajectory` (rotation only)."""

    def __init__(self, spec: ImuSpec, trajectory: ImuTrajectory) -> None:
        self.spec = spec
        self.trajectory = trajectory
        self._rng = random.Random(spec.seed)

    def sample(self, t: float, *, epoch: float = 0.0) -> ImuSample | None:
        """The sample at time t stamped epoch + t, or None on dropout."""
        spec = self.spec
        dropped = self._rng.random() < spec.dropout_probability
        accel = tuple(a + self._rng.gauss(0.0, spec.accel_noise_std) for a in self.trajectory.specific_force(t, spec.gravity))
        gyro = tuple(w + b + self._rng.gauss(0.0, spec.gyro_noise_std) for w, b in zip(self.trajectory.body_rates(t), spec.gyro_bias, strict=True))
        if dropped:
            return None
        return ImuSample(accel=accel, gyro=gyro, timestamp=epoch + t)  # type: ignore[arg-type]  # 3-vectors


class LiveTruth:
    """A ground truth of absolute time, for publishers that run for ever and in several
    processes: every process with the same seed agrees on the true value at any instant.
    mean + amplitude·sin(2πt/period) + a few slower seeded sinusoids (weather, not noise)."""

    def __init__(self, seed: int, *, mean: float, amplitude: float, period_s: float = 600.0) -> None:
        rng = random.Random(seed)
        self.mean, self.amplitude, self.period_s = mean, amplitude, period_s
        self._waves = [(amplitude * rng.uniform(0.05, 0.2), rng.uniform(period_s * 1.5, period_s * 6), rng.uniform(0, 2 * math.pi)) for _ in range(3)]

    def __call__(self, t: float) -> float:
        value = self.mean + self.amplitude * math.sin(2 * math.pi * t / self.period_s)
        return value + sum(a * math.sin(2 * math.pi * t / p + phase) for a, p, phase in self._waves)
