"""The fusion math of issue 4 against simulated sensors with a known ground truth: the Kalman
filter beats its best sensor, shrugs off a stuck or spiking one and says so, the IMU filter
follows a known trajectory, the state survives JSON between windows, and non-finite input is
refused at the model boundary."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pydantic import ValidationError

from edgehive.agents.fusion import (
    FilterState,
    FusionOutput,
    ImuConfig,
    ImuSample,
    ImuState,
    KalmanConfig,
    Reading,
    fuse_imu,
    fuse_window,
)
from edgehive.sensors.simulated import Faults, ImuSpec, ImuTrajectory, SensorSpec, SimulatedImu, SimulatedSensor, TemperatureTruth

WINDOWS = 250
PER_WINDOW = 5  # readings per sensor per 1 s window
EPOCH = 1_700_000_000.0
NOISES = {"t-good": 0.2, "t-mid": 0.5, "t-poor": 1.0}


def _specs(faults: dict[str, Faults] | None = None) -> list[SensorSpec]:
    faults = faults or {}
    return [SensorSpec(sensor=name, noise_std=std, seed=100 + i, faults=faults.get(name, Faults())) for i, (name, std) in enumerate(NOISES.items())]


def _run(specs: list[SensorSpec], *, round_trip: bool = False, seed: int = 7):
    """Fuse WINDOWS windows; return (fused RMSE, per-sensor raw RMSE, outputs)."""
    truth = TemperatureTruth(seed, WINDOWS + 1)
    sensors = [SimulatedSensor(spec, truth) for spec in specs]
    config = KalmanConfig()
    state: FilterState | None = None
    fused_err: list[float] = []
    raw_err: dict[str, list[float]] = {s.spec.sensor: [] for s in sensors}
    outputs: list[FusionOutput] = []
    for w in range(WINDOWS):
        readings: list[Reading] = []
        for k, sensor in enumerate(sensors):
            times = [w + (j + 0.5) / PER_WINDOW + 0.01 * k for j in range(PER_WINDOW)]
            own = [r for r in (sensor.read(t, epoch=EPOCH) for t in times) if r is not None]
            readings += own
            if own:
                raw = np.mean([r.value for r in own])
                raw_err[sensor.spec.sensor].append(raw - np.mean([truth(r.timestamp - EPOCH) for r in own]))
        if round_trip and state is not None:
            state = FilterState.model_validate_json(state.model_dump_json())
        out = fuse_window(state, readings, config)
        state = out.state
        outputs.append(out)
        fused_err.append(out.estimate - truth(out.window_end - EPOCH))
    def rmse(errs: list[float]) -> float:
        return float(np.sqrt(np.mean(np.square(errs))))

    return rmse(fused_err), {name: rmse(e) for name, e in raw_err.items()}, outputs


def _rejected(outputs: list[FusionOutput], sensor: str, reason: str) -> list[int]:
    """Indices of the windows where `sensor` was rejected for `reason`."""
    return [i for i, out in enumerate(outputs) if any(r.sensor == sensor and r.reason == reason for r in out.rejected)]


def test_fused_estimate_beats_the_best_single_sensor() -> None:
    fused, raw, outputs = _run(_specs())
    best = min(raw.values())
    print(f"\nfused RMSE {fused:.4f}; raw per-window means: " + ", ".join(f"{k} {v:.4f}" for k, v in raw.items()))
    assert fused < best, f"fused RMSE {fused:.4f} is not below the best sensor's {best:.4f}"
    assert not any(r.reason == "stuck" for out in outputs for r in out.rejected), "a healthy sensor was called stuck"
    gated = sum(r.count for out in outputs for r in out.rejected)
    assert gated < 0.02 * WINDOWS * PER_WINDOW * len(NOISES), f"{gated} healthy readings gated"
    learned = outputs[-1].state.sensors
    for name, std in NOISES.items():
        assert 0.5 < math.sqrt(learned[name].noise_var) / std < 1.5, f"{name}: noise learned badly"


@pytest.mark.parametrize("fault", ["stuck", "spiking", "stuck_then_spiking"])
def test_a_faulty_sensor_is_rejected_and_does_not_hurt(fault: str) -> None:
    # The best sensor fails: if it were still fused, it would drag the estimate the most.
    faults = {
        "stuck": Faults(stuck_from=80.0),
        "spiking": Faults(spike_probability=0.1, spike_magnitude=5.0),
        "stuck_then_spiking": Faults(stuck_from=60.0, stuck_until=140.0, spike_probability=0.1, spike_magnitude=5.0),
    }[fault]
    faulty, _, outputs = _run(_specs({"t-good": faults}))
    without, _, _ = _run([s for s in _specs() if s.sensor != "t-good"])
    print(f"\n{fault}: fused RMSE {faulty:.4f} with the faulty sensor, {without:.4f} without it")
    reason = {"stuck": "stuck", "spiking": "gated", "stuck_then_spiking": "stuck"}[fault]
    windows = _rejected(outputs, "t-good", reason)
    if fault == "stuck_then_spiking":
        # Stuck (it never moves) from 60 s to 140 s, then alive again but spiking: rejected as
        # stuck while stuck, fused again once it moves, its spikes gated.
        assert windows and windows[0] <= 62 and all(60 <= i < 141 for i in windows), windows
        gated_after = [i for i in _rejected(outputs, "t-good", "gated") if i >= 141]
        assert len(gated_after) > 0.3 * (WINDOWS - 141), "spikes after the thaw were not gated"
        assert sum("t-good" in out.used for out in outputs[145:]) > 0.9 * (WINDOWS - 145), "the thawed sensor was not fused again"
    elif fault == "stuck":
        assert windows and windows[0] <= 82, "the stuck sensor was not caught soon after it stuck"
        assert windows == list(range(windows[0], WINDOWS)), "a stuck sensor must stay rejected"
        assert all(i >= 80 for i in windows), "rejected before it stuck"
        assert all("t-good" not in out.used for out in outputs[82:])
    else:
        # 10 % of 5 readings: about 41 % of windows hold a spike, about 125 spikes in all.
        gated = sum(r.count for out in outputs for r in out.rejected if r.sensor == "t-good")
        print(f"spiking: t-good gated {gated} readings in {len(windows)} windows")
        assert len(windows) > 0.3 * WINDOWS and gated > 0.8 * 0.1 * WINDOWS * PER_WINDOW
    assert faulty <= 1.1 * without, f"{fault}: fused RMSE {faulty:.4f} vs {without:.4f} without that sensor"


def test_imu_follows_a_known_trajectory() -> None:
    trajectory = ImuTrajectory()
    imu = SimulatedImu(ImuSpec(seed=3, dropout_probability=0.02), trajectory)
    config = ImuConfig()
    state: ImuState | None = None
    errors: list[tuple[float, float, float]] = []
    rate = 100
    for w in range(60):  # 60 windows of 1 s at 100 Hz
        samples = [s for s in (imu.sample(w + j / rate, epoch=EPOCH) for j in range(rate)) if s is not None]
        out = fuse_imu(state, samples, config)
        state = out.state
        if w >= 5:  # let the integral learn the gyro bias
            roll, pitch, yaw = (math.degrees(a) for a in trajectory.angles(out.window_end - EPOCH))
            yaw_err = (out.yaw - yaw + 180) % 360 - 180
            errors.append((out.roll - roll, out.pitch - pitch, yaw_err))
    rms = np.sqrt(np.mean(np.square(errors), axis=0))
    print(f"\nIMU RMS error: roll {rms[0]:.3f}°, pitch {rms[1]:.3f}°, yaw {rms[2]:.3f}° (gyro only, drifts)")
    assert rms[0] < 2.0 and rms[1] < 2.0, f"roll/pitch RMS {rms[:2]}"


def test_state_round_trips_through_json_between_windows() -> None:
    _, _, memory = _run(_specs({"t-mid": Faults(spike_probability=0.05, spike_magnitude=4.0)}))
    _, _, wire = _run(_specs({"t-mid": Faults(spike_probability=0.05, spike_magnitude=4.0)}), round_trip=True)
    assert [o.estimate for o in wire] == [o.estimate for o in memory]
    assert [o.variance for o in wire] == [o.variance for o in memory]
    assert [o.rejected for o in wire] == [o.rejected for o in memory]

    imu = [SimulatedImu(ImuSpec(seed=5), ImuTrajectory()) for _ in range(2)]
    kept: ImuState | None = None
    carried: ImuState | None = None
    for w in range(10):
        a, b = ([s for s in (sim.sample(w + j / 50, epoch=EPOCH) for j in range(50)) if s] for sim in imu)
        out_kept = fuse_imu(kept, a, ImuConfig())
        out_carried = fuse_imu(carried and ImuState.model_validate_json(carried.model_dump_json()), b, ImuConfig())
        kept, carried = out_kept.state, out_carried.state
        assert (out_carried.roll, out_carried.pitch, out_carried.yaw) == (out_kept.roll, out_kept.pitch, out_kept.yaw)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_input_is_refused(bad: float) -> None:
    with pytest.raises(ValidationError, match="finite number"):
        Reading(sensor="t", value=bad, timestamp=EPOCH)
    with pytest.raises(ValidationError, match="finite number"):
        Reading(sensor="t", value=21.0, timestamp=bad)
    with pytest.raises(ValidationError, match="finite number"):
        Reading.model_validate_json(f'{{"sensor": "t", "value": {"NaN" if math.isnan(bad) else "Infinity"}, "timestamp": 1}}')
    with pytest.raises(ValidationError, match="finite number"):
        ImuSample(accel=(0.0, bad, 9.8), gyro=(0.0, 0.0, 0.0), timestamp=EPOCH)
    with pytest.raises(ValidationError, match="finite number"):
        FilterState(estimate=bad, variance=1.0, timestamp=EPOCH)
    with pytest.raises(ValidationError, match="extra"):
        Reading(sensor="t", value=21.0, timestamp=EPOCH, unit="C")  # type: ignore[call-arg]


def test_empty_and_stale_windows() -> None:
    first = fuse_window(None, [Reading(sensor="a", value=20.0, timestamp=10.0), Reading(sensor="b", value=22.0, timestamp=10.5)], KalmanConfig())
    assert 20.0 <= first.estimate <= 22.0 and first.used == ["a", "b"]
    empty = fuse_window(first.state, [], KalmanConfig())
    assert empty.state == first.state and empty.used == []
    stale = fuse_window(first.state, [Reading(sensor="a", value=21.0, timestamp=9.0)], KalmanConfig())
    assert [(r.sensor, r.reason) for r in stale.rejected] == [("a", "stale")]
    with pytest.raises(ValueError, match="first window"):
        fuse_window(None, [], KalmanConfig())


def test_a_filter_thrown_far_off_reacquires_the_truth_instead_of_collapsing_to_zero() -> None:
    """Two of the first window's three readings absurd (finite, so not refused at the door): the
    median start is absurd, the next window gates every reading and widens the variance to match.
    The window after must land on the sensors' value: the update used to cancel catastrophically
    (1.8e19 − 1.8e19 + 21 → 0.0) and report 0 °C with a variance of 0.0002."""
    t, config = 1_800_000_000.0, KalmanConfig()
    first = [Reading(sensor="t1", value=21.0, timestamp=t), Reading(sensor="t2", value=1.8e19, timestamp=t + 0.1),
             Reading(sensor="t3", value=1.8e19, timestamp=t + 0.2)]
    out = fuse_window(None, first, config)
    estimates = []
    for k in range(1, 4):
        window = [Reading(sensor=s, value=21.0 + 0.01 * i, timestamp=t + k + 0.1 * i) for i, s in enumerate(("t1", "t2", "t3"))]
        out = fuse_window(out.state, window, config)
        estimates.append(out.estimate)
    assert estimates[0] > 1e18  # everything gated: the filter widens, it does not move yet
    assert estimates[1] == pytest.approx(21.01, abs=0.05) and estimates[2] == pytest.approx(21.01, abs=0.05), estimates
