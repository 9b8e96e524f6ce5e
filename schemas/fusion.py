"""The `fusion` job kind's contract: a sensor group's window in, the fused estimate out.

The coordinator files readings into windows and hands each closed window to an agent as a
`fusion` job whose params are a `KalmanWindow` or an `ImuWindow` (by `method`); the agent
answers with a `FusionEstimate` or a `FusionOrientation` on `results/fusion/{group}`. The
filter's state travels with the job (`prior`) and comes back in the result (`state`), so the
agent keeps nothing and the coordinator never looks inside it.

A window's readings are rows, not objects: `[sensor, value, timestamp]` for a scalar group and
`[sensor, ax, ay, az, gx, gy, gz, timestamp]` for an IMU. A window carries up to thousands of
them, and an array is a third the bytes of an object and cheaper to write and parse on both
sides. `ScalarRow` and `ImuRow` name the positions: the coordinator builds rows with
`window_row`, the agent reads them by name after its params are parsed.

Nothing here imports numpy: the coordinator validates a group's filter tuning at start-up with
`KalmanConfig` and `ImuConfig`, and the simulated sensors build `Reading` and `ImuSample`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, RootModel, model_validator

from .base import MAX_COUNT, Ident, Part
from .sensors import ImuReading, ReadingError, SensorReading, canonical_unit, check_range

FusionMethod = Literal["kalman", "imu"]
RejectReason = Literal["gated", "stuck", "stale"]
Vector3 = tuple[float, float, float]
SensorName = Annotated[str, Field(min_length=1)]

_WIRE = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)

# -- rows: one reading of a window ------------------------------------------------------------


class ScalarRow(NamedTuple):
    """One reading of a scalar group's window: the JSON array `[sensor, value, timestamp]`.
    Its fields are a `Reading`'s, so the filter takes rows as they are."""

    sensor: SensorName
    value: float
    timestamp: float


class ImuRow(NamedTuple):
    """One IMU sample of a window: the JSON array `[sensor, ax, ay, az, gx, gy, gz, timestamp]`
    (specific force in m/s², angular rate in rad/s, body frame)."""

    sensor: SensorName
    ax: float
    ay: float
    az: float
    gx: float
    gy: float
    gz: float
    timestamp: float


# What the coordinator keeps and sends: plain tuples, which orjson writes as arrays (it refuses
# NamedTuples) and which cost a third of a NamedTuple to build, per reading, on its hot path.
ScalarRowData = tuple[str, float, float]
ImuRowData = tuple[str, float, float, float, float, float, float, float]
RowData = ScalarRowData | ImuRowData


def window_row(sensor: str, reading: SensorReading | ImuReading, timestamp: float) -> RowData:
    """The row of one reading in a window, in `ScalarRow` / `ImuRow` order."""
    if isinstance(reading, ImuReading):
        (ax, ay, az), (gx, gy, gz) = reading.accel, reading.gyro
        return (sensor, ax, ay, az, gx, gy, gz, timestamp)
    return (sensor, reading.value, timestamp)


# -- the filters' inputs, tuning and state ------------------------------------------------------


class Reading(BaseModel):
    """One measurement of the group's quantity by one sensor (seconds since the epoch)."""

    model_config = _WIRE

    sensor: str = Field(min_length=1)
    value: float
    timestamp: float


class ImuSample(BaseModel):
    """One IMU sample: specific force in m/s² and angular rate in rad/s, body frame."""

    model_config = _WIRE

    accel: Vector3
    gyro: Vector3
    timestamp: float


class KalmanConfig(BaseModel):
    """Tuning of the scalar filter; a sensor group's `config` (see agents/fusion/kalman.py)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)

    process_noise_per_s: float = Field(default=1e-3, ge=0)
    initial_variance: float = Field(default=100.0, gt=0)
    initial_noise_var: float = Field(default=1.0, gt=0)
    noise_floor: float = Field(default=1e-4, gt=0)
    noise_alpha: float = Field(default=0.05, gt=0, le=1)
    gate_chi2: float = Field(default=9.0, gt=0)
    stuck_repeats: int = Field(default=4, ge=1)
    biases: dict[str, float] = Field(default_factory=dict)


class ImuConfig(BaseModel):
    """Gains of the IMU filter: `kp` sets how fast the accelerometer corrects (1/s), `ki` the bias learning."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)

    kp: float = Field(default=1.0, ge=0)
    ki: float = Field(default=0.05, ge=0)
    gravity: float = Field(default=9.80665, gt=0)
    accel_tolerance: float = Field(default=0.15, gt=0)  # skip correction when |a| is this far from g
    max_dt: float = Field(default=0.5, gt=0)  # longer gaps are not integrated as one step


class SensorState(BaseModel):
    """What the scalar filter has learned about one sensor, carried from window to window."""

    model_config = _WIRE

    noise_var: float = Field(gt=0)
    bias: float = 0.0
    last_value: float | None = None
    repeats: int = Field(default=0, ge=0)  # consecutive readings equal to last_value


class FilterState(BaseModel):
    """The scalar filter's posterior of one window and the prior of the next."""

    model_config = _WIRE

    estimate: float
    variance: float = Field(gt=0)
    timestamp: float
    sensors: dict[str, SensorState] = Field(default_factory=dict)


class ImuState(BaseModel):
    """Orientation quaternion (w, x, y, z, body to world) and the learned gyro correction."""

    model_config = _WIRE

    quaternion: tuple[float, float, float, float]
    integral: Vector3 = (0.0, 0.0, 0.0)
    timestamp: float


# -- params: the window as a job ----------------------------------------------------------------


class _Window(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    group: Ident
    quantity: Ident
    unit: str | None = Field(None, description="The quantity's canonical unit, when it has one")
    window: int = Field(ge=1, le=MAX_COUNT, description="The group's window counter")
    window_start: float = Field(description="Epoch s; for count windows, the first reading's time")
    window_end: float


class KalmanWindow(_Window):
    """Params of a scalar group's `fusion` job."""

    method: Literal["kalman"]
    prior: FilterState | None = Field(None, description="The previous window's posterior; none for the group's first")
    readings: list[ScalarRow] = Field(min_length=1, description="[sensor, value, timestamp] per reading")
    config: KalmanConfig = Field(default_factory=KalmanConfig)

    @model_validator(mode="after")
    def _possible_values(self) -> KalmanWindow:
        """A window submitted by hand (`jobs/submit`) gets the range check the coordinator's door
        gives every reading (schemas/sensors.py), when its unit is the quantity's own."""
        try:
            canonical_unit(self.quantity, self.unit)
        except ReadingError:
            return self  # another unit: values are not comparable with the bounds
        for i, row in enumerate(self.readings):
            try:
                check_range(self.quantity, row.value)
            except ReadingError as error:
                raise ValueError(f"readings[{i}]: {error}") from None
        return self


class ImuWindow(_Window):
    """Params of an IMU group's `fusion` job."""

    method: Literal["imu"]
    prior: ImuState | None = Field(None, description="The previous window's posterior; none for the group's first")
    readings: list[ImuRow] = Field(min_length=1, description="[sensor, ax, ay, az, gx, gy, gz, timestamp] per sample")
    config: ImuConfig = Field(default_factory=ImuConfig)


class FusionParams(RootModel[Annotated[KalmanWindow | ImuWindow, Field(discriminator="method")]]):
    """The params of a `fusion` job, by `method`."""


def window_params(method: FusionMethod, group: str, quantity: str, unit: str | None, window: int, window_start: float,
                  window_end: float, prior: dict[str, Any] | None, readings: list[RowData], config: dict[str, Any]) -> dict[str, Any]:
    """A `KalmanWindow` / `ImuWindow` as the JSON object the coordinator puts in the job, without
    building the model: validating a window's rows on the coordinator, which only ever built them,
    would cost more than the rest of the window's filing (measured 2026-12-04 on the 2-core VM: 28 µs
    a 30-reading window to build and dump the model, 0.5 µs for this dict). tests/test_schemas.py
    checks that what this writes parses as FusionParams, field for field."""
    return {"method": method, "group": group, "quantity": quantity, "unit": unit, "window": window,
            "window_start": window_start, "window_end": window_end, "prior": prior, "readings": readings, "config": config}


# -- outputs ------------------------------------------------------------------------------------


class FusionRejection(Part):
    sensor: str
    reason: RejectReason
    count: int = Field(ge=1, le=MAX_COUNT)


class FusionEstimate(Part):
    """`output` of a scalar fusion result on `results/fusion/{group}` (method `kalman`)."""

    method: Literal["kalman"] = "kalman"
    group: Ident
    quantity: Ident
    unit: str | None = None
    window: int = Field(ge=1, le=MAX_COUNT, description="The group's window counter; consecutive results count up by one")
    estimate: float
    variance: float = Field(ge=0)
    used: list[str]
    rejected: list[FusionRejection]
    readings: int = Field(ge=0, le=MAX_COUNT)
    window_start: float
    window_end: float
    state: FilterState = Field(description="The posterior, which the coordinator hands to the group's next window")


class FusionOrientation(Part):
    """`output` of an IMU fusion result on `results/fusion/{group}` (method `imu`): degrees."""

    method: Literal["imu"] = "imu"
    group: Ident
    window: int = Field(ge=1, le=MAX_COUNT)
    roll: float
    pitch: float
    yaw: float
    samples: int = Field(ge=0, le=MAX_COUNT)
    window_start: float
    window_end: float
    state: ImuState = Field(description="The posterior, which the coordinator hands to the group's next window")


FusionOutput = Annotated[FusionEstimate | FusionOrientation, Field(discriminator="method")]
