"""Sensor readings on `sensors/{sensor}/{quantity}` (what the coordinator fuses: schemas/fusion.py).

A reading is JSON, or a bare number so that `mosquitto_pub -m 21.5` works; a bare number has
no unit and no timestamp, so it is taken in the quantity's canonical unit and stamped on
arrival. An IMU publishes on quantity `imu`, one sample a message.

Units are checked, not guessed: each known quantity has one canonical unit and a few spellings
of it, and a reading in any other unit is refused on `errors` (a Fahrenheit sensor in a Celsius
group would otherwise bias the estimate without anyone noticing). Values are checked against
physics, not opinion: a temperature below absolute zero, a relative humidity outside 0-100 %
or a pressure that is not positive cannot have been measured, and one such value would throw a
fusion filter off for many windows. This module is the one check both the coordinator and the
telemetry sink apply, so the two never disagree about which readings exist.
"""

from __future__ import annotations

import math

import orjson
from pydantic import Field, ValidationError

from ..errors import EdgehiveError
from .base import MAX_COUNT, Message, decode

IMU_QUANTITY = "imu"

# quantity → (canonical unit, accepted spellings). Unknown quantities take any unit as given.
UNITS: dict[str, tuple[str, frozenset[str]]] = {
    "temperature": ("°C", frozenset({"°C", "C", "degC", "celsius", "Celsius"})),
    "humidity": ("%", frozenset({"%", "%RH", "pct", "percent"})),
    "pressure": ("hPa", frozenset({"hPa", "mbar"})),
}

# quantity → (lowest, lowest allowed?, highest or None) in the canonical unit, and what the
# range is, for the refusal. Only bounds physics sets; other quantities are not bounded.
ABSOLUTE_ZERO_C = -273.15
RANGES: dict[str, tuple[float, bool, float | None, str]] = {
    "temperature": (ABSOLUTE_ZERO_C, True, None, f"absolute zero is {ABSOLUTE_ZERO_C} °C"),
    "humidity": (0.0, True, 100.0, "relative humidity is 0 to 100 %"),
    "pressure": (0.0, False, None, "a pressure is above 0 hPa"),
}

Vector3 = tuple[float, float, float]


class SensorReading(Message):
    """One scalar reading; the sensor and the quantity are the topic's last two levels."""

    value: float = Field(description="Finite; within what physics allows for known quantities: temperature at least "
                                     "-273.15 °C (absolute zero), humidity 0 to 100 %, pressure above 0 hPa")
    unit: str | None = Field(None, max_length=16, description="Defaults to the quantity's canonical unit")
    ts: float | None = Field(None, gt=0, description="When it was measured (epoch s); default: arrival")
    seq: int | None = Field(None, ge=0, le=MAX_COUNT, description="The sensor's own counter, to spot gaps")


class ImuReading(Message):
    """One IMU sample on `sensors/{sensor}/imu`: specific force (m/s²) and angular rate (rad/s), body frame."""

    accel: Vector3
    gyro: Vector3
    ts: float | None = Field(None, gt=0)
    seq: int | None = Field(None, ge=0, le=MAX_COUNT)


class ReadingError(EdgehiveError, ValueError):
    """A reading that must not be fused; the message says why."""


def parse_reading(quantity: str, payload: bytes) -> SensorReading | ImuReading:
    """JSON (either model, by quantity) or a bare number; units normalised to the canonical one."""
    if quantity == IMU_QUANTITY:
        return decode(ImuReading, payload)
    text = payload.strip()
    if text[:1] != b"{":
        try:
            value = float(text)
        except ValueError:
            raise ReadingError(f"not a reading: expected JSON or a bare number, got {text[:40]!r}") from None
        if not math.isfinite(value):
            raise ReadingError(f"value {text[:40].decode(errors='replace')} is not a finite number")
        return SensorReading(value=check_range(quantity, value), unit=canonical_unit(quantity))
    try:
        reading = decode(SensorReading, payload)
    except ValidationError as error:
        raise ReadingError(_first_error(error)) from None
    unit = canonical_unit(quantity, reading.unit)
    check_range(quantity, reading.value)  # after the unit check: the bounds are in the canonical unit
    return reading if unit == reading.unit else reading.model_copy(update={"unit": unit})


MAX_BATCH = 1000


def parse_readings(quantity: str, payload: bytes) -> list[SensorReading | ImuReading]:
    """One reading, or a JSON array of reading objects (a fast sensor batches to save messages).
    One bad element refuses the whole message, naming it, so a sender learns what to fix."""
    if payload.lstrip()[:1] != b"[":
        return [parse_reading(quantity, payload)]
    try:
        items = orjson.loads(payload)
    except orjson.JSONDecodeError as error:
        raise ReadingError(f"not a JSON array of readings: {error}") from None
    if not 1 <= len(items) <= MAX_BATCH or not all(isinstance(item, dict) for item in items):
        raise ReadingError(f"a batch is a JSON array of 1 to {MAX_BATCH} reading objects")
    readings: list[SensorReading | ImuReading] = []
    for i, item in enumerate(items):
        try:
            readings.append(parse_reading(quantity, orjson.dumps(item)))
        except (ReadingError, ValidationError) as error:
            detail = _first_error(error) if isinstance(error, ValidationError) else str(error)
            raise ReadingError(f"reading {i} of the batch: {detail}") from None
    return readings


def canonical_unit(quantity: str, unit: str | None = None) -> str | None:
    """The canonical unit for `unit` of `quantity`; raises ReadingError for a unit of another kind."""
    known = UNITS.get(quantity)
    if known is None:
        return unit
    canonical, spellings = known
    if unit is None or unit in spellings:
        return canonical
    raise ReadingError(f"unit {unit[:16]!r} is not a unit of {quantity} (expected {canonical})")


def check_range(quantity: str, value: float) -> float:
    """`value` (in `quantity`'s canonical unit) if physics allows it; raises ReadingError if not.
    A unit conversion, if one is ever added, must come before this check."""
    bound = RANGES.get(quantity)
    if bound is None:
        return value
    low, low_allowed, high, why = bound
    if value < low or (value == low and not low_allowed) or (high is not None and value > high):
        canonical = UNITS[quantity][0]
        raise ReadingError(f"value {value:g} {canonical} is impossible for {quantity} ({why})")
    return value


def _first_error(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "reading"
    return f"{where}: {first['msg']}"
