"""Sensor readings on `sensors/{sensor}/{quantity}` (what the coordinator fuses: schemas/fusion.py).

A reading is JSON, or a bare number so that `mosquitto_pub -m 21.5` works; a bare number has
no unit and no timestamp, so it is taken in the quantity's canonical unit and stamped on
arrival. An IMU publishes on quantity `imu`, one sample a message.

Units are checked, not guessed: each known quantity has one canonical unit and a few spellings
of it, and a reading in any other unit is refused on `errors` (a Fahrenheit sensor in a Celsius
group would otherwise bias the estimate without anyone noticing).
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

Vector3 = tuple[float, float, float]


class SensorReading(Message):
    """One scalar reading; the sensor and the quantity are the topic's last two levels."""

    value: float
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
        return SensorReading(value=value, unit=canonical_unit(quantity))
    try:
        reading = decode(SensorReading, payload)
    except ValidationError as error:
        raise ReadingError(_first_error(error)) from None
    unit = canonical_unit(quantity, reading.unit)
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


def _first_error(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "reading"
    return f"{where}: {first['msg']}"
