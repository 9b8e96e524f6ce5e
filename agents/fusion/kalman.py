"""Scalar Kalman filter fusing several sensors of one quantity, one window at a time.

Agents are stateless, so the filter is a pure function: `fuse_window(prior, readings, config)`
takes the posterior of the group's previous window (`FilterState`, JSON on the wire) and returns
the next one inside `FusionOutput`. Any node can run any window; a node dying loses nothing
because the coordinator still holds the prior.

Model: the quantity is a random walk (`process_noise_per_s`, units²/s), each sensor measures it
plus its own bias and white noise. Per-sensor noise variance is not configured but learned from
the innovations (an exponentially weighted mean of `y² − P`, floored), because cheap sensors
rarely match their datasheet and drift with age. Two defences keep bad sensors out:

- Mahalanobis gating: a reading whose `y² / S` exceeds `gate_chi2` (9.0 ≈ 3σ for one degree of
  freedom) is a spike and is not fused; it also does not teach the noise estimate, or spikes
  would widen the gate that should catch them.
- Stuck detection: a sensor repeating the exact same value `stuck_repeats` times in a row (counted
  across windows, via the state) while another sensor of the group moves is stuck. A stuck value
  near the truth passes any gate, which is why it needs its own test.

Per-sensor bias is carried in the state and subtracted, but not estimated: with only sensors of
the same quantity and no reference, a common bias is unobservable, so it comes from calibration.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field

from edgehive.schemas.fusion import FilterState, KalmanConfig, Reading, RejectReason, ScalarRow, SensorState

__all__ = ["FusionOutput", "Rejection", "fuse_window"]

_WIRE = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)


class Rejection(BaseModel):
    """A sensor left out of a window, why, and how many of its readings."""

    model_config = _WIRE

    sensor: str
    reason: RejectReason
    count: int = Field(ge=1)


class FusionOutput(BaseModel):
    """The fused estimate of one window, and the state for the next."""

    model_config = _WIRE

    estimate: float
    variance: float
    used: list[str]
    rejected: list[Rejection]
    window_start: float
    window_end: float
    state: FilterState


def fuse_window(prior: FilterState | None, readings: Sequence[Reading | ScalarRow], config: KalmanConfig) -> FusionOutput:
    """Fuse one window of readings on top of `prior` (None: the group's first window). A fusion
    job's rows (`ScalarRow`) go in as they are: they have a `Reading`'s fields and were checked
    when the job's params were parsed."""
    ordered = sorted(readings, key=lambda r: (r.timestamp, r.sensor))
    if prior is None:
        if not ordered:
            raise ValueError("the first window of a group needs at least one reading")
        values = sorted(r.value - config.biases.get(r.sensor, 0.0) for r in ordered)
        prior = FilterState(estimate=values[len(values) // 2], variance=config.initial_variance, timestamp=ordered[0].timestamp)
    if not ordered:
        return FusionOutput(
            estimate=prior.estimate, variance=prior.variance, used=[], rejected=[], window_start=prior.timestamp, window_end=prior.timestamp, state=prior
        )

    sensors = {name: s.model_copy() for name, s in prior.sensors.items()}
    for r in ordered:
        if r.sensor not in sensors:
            sensors[r.sensor] = SensorState(noise_var=config.initial_noise_var, bias=config.biases.get(r.sensor, 0.0))
    stuck = _stuck_sensors(ordered, sensors, config)

    x, p, t = prior.estimate, prior.variance, prior.timestamp
    used: set[str] = set()
    rejected: Counter[tuple[str, RejectReason]] = Counter()
    worst_gated = 0.0
    for r in ordered:
        if r.timestamp < prior.timestamp:
            rejected[(r.sensor, "stale")] += 1  # belongs to a window already fused
            continue
        if r.sensor in stuck:
            rejected[(r.sensor, "stuck")] += 1
            continue
        p += config.process_noise_per_s * (r.timestamp - t)
        t = r.timestamp
        s = sensors[r.sensor]
        y = r.value - s.bias - x
        innovation_var = p + s.noise_var
        if y * y / innovation_var > config.gate_chi2:
            rejected[(r.sensor, "gated")] += 1
            worst_gated = max(worst_gated, y * y)
            continue
        if p < s.noise_var:
            # Only once the estimate is sharper than the sensor does an innovation say much about
            # the sensor; during start-up y² is mostly the prior's own spread, and learning from
            # it would collapse the noise estimate onto the floor.
            noise = (1 - config.noise_alpha) * s.noise_var + config.noise_alpha * (y * y - p)
            sensors[r.sensor] = s.model_copy(update={"noise_var": max(config.noise_floor, noise)})
        # x + gain·y and p·(1 − gain), written as weighted means: the same numbers, but when the
        # prior is far off and wide (after a window that gated everything) `x + gain·y` cancels
        # catastrophically (1.8e19 + (−1.8e19 + 21) came out 0.0, and 1 − gain rounded to 0).
        x = (s.noise_var * x + p * (r.value - s.bias)) / innovation_var
        p = p * s.noise_var / innovation_var
        used.add(r.sensor)
    if not used and worst_gated > 0:
        # Everything was gated: the filter, not every sensor, is probably wrong (a long outage,
        # a step in the quantity). Widen the variance so the next window can re-acquire.
        p = max(p, worst_gated)

    posterior = FilterState(estimate=x, variance=p, timestamp=max(t, ordered[-1].timestamp), sensors=sensors)
    return FusionOutput(
        estimate=x,
        variance=p,
        used=sorted(used),
        rejected=[Rejection(sensor=s, reason=why, count=n) for (s, why), n in sorted(rejected.items())],
        window_start=ordered[0].timestamp,
        window_end=ordered[-1].timestamp,
        state=posterior,
    )


def _stuck_sensors(ordered: list[Reading | ScalarRow], sensors: dict[str, SensorState], config: KalmanConfig) -> set[str]:
    """Count repeats per sensor (updating `sensors`) and name the ones stuck in this window.

    Exact equality is deliberate: a live analogue signal plus noise never repeats bit for bit,
    while a hung driver or a frozen bus returns the same bytes. A sensor alone, or a group where
    nothing moves, cannot be told apart from a constant quantity, so it is never called stuck.
    """
    flat: set[str] = set()
    moved: set[str] = set()
    for r in ordered:
        s = sensors[r.sensor]
        repeats = s.repeats + 1 if s.last_value is not None and r.value == s.last_value else 0
        sensors[r.sensor] = s.model_copy(update={"last_value": r.value, "repeats": repeats})
        if repeats >= config.stuck_repeats:
            flat.add(r.sensor)
        elif repeats == 0 and s.last_value is not None and math.isfinite(s.last_value):
            moved.add(r.sensor)
    return {name for name in flat if moved - {name}}
