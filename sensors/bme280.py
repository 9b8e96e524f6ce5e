"""Bosch BME280 (temperature, pressure, humidity) over I²C through `smbus2`.

The chip reports raw ADC counts; the compensation formulas and the factory trimming values
(read once from its NVM) turn them into °C, hPa and %RH. The floating-point formulas are the
datasheet's (BME280 datasheet rev 1.6, section 8.1). The bus is any object with smbus2's
`read_byte_data`, `read_i2c_block_data` and `write_byte_data`, so a test can stand in for the
chip without touching our own code.

Where there is no bus (a laptop, a container without `/dev/i2c-1`) opening fails with a
`Bme280Error` that says what to enable, never a traceback.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

from ..errors import EdgehiveError

CHIP_ID = 0x60
_REG_ID, _REG_RESET, _REG_CTRL_HUM, _REG_STATUS, _REG_CTRL_MEAS, _REG_CONFIG, _REG_DATA = 0xD0, 0xE0, 0xF2, 0xF3, 0xF4, 0xF5, 0xF7
_OTHER_CHIPS = {0x58: "a BMP280 (no humidity)", 0x56: "a BMP280 sample", 0x57: "a BMP280 sample", 0x61: "a BME680"}


class Bme280Error(EdgehiveError, RuntimeError):
    """The sensor cannot be used; the message says why and what to do."""


class I2CBus(Protocol):
    def read_byte_data(self, address: int, register: int) -> int: ...
    def read_i2c_block_data(self, address: int, register: int, length: int) -> list[int]: ...
    def write_byte_data(self, address: int, register: int, value: int) -> None: ...


@dataclass(frozen=True)
class Measurement:
    temperature_c: float
    pressure_hpa: float
    humidity_pct: float


@dataclass(frozen=True)
class Calibration:
    t: tuple[int, int, int]
    p: tuple[int, int, int, int, int, int, int, int, int]
    h: tuple[int, int, int, int, int, int]


def _u16(lo: int, hi: int) -> int:
    return lo | hi << 8


def _s16(lo: int, hi: int) -> int:
    value = _u16(lo, hi)
    return value - 0x10000 if value & 0x8000 else value


def _s8(value: int) -> int:
    return value - 0x100 if value & 0x80 else value


def parse_calibration(block1: list[int], h1: int, block2: list[int]) -> Calibration:
    """Trimming values: 0x88..0x9F (24 bytes), 0xA1, and 0xE1..0xE7 (7 bytes)."""
    b = block1
    t = (_u16(b[0], b[1]), _s16(b[2], b[3]), _s16(b[4], b[5]))
    p = (_u16(b[6], b[7]), *(_s16(b[i], b[i + 1]) for i in range(8, 24, 2)))
    e = block2
    h4 = _s8(e[3]) << 4 | (e[4] & 0x0F)
    h5 = _s8(e[5]) << 4 | (e[4] >> 4)
    h = (h1, _s16(e[0], e[1]), e[2], h4, h5, _s8(e[6]))
    return Calibration(t, p, h)  # type: ignore[arg-type]  # p has the datasheet's 9 values: mypy cannot count a generator's


def compensate(cal: Calibration, adc_t: int, adc_p: int, adc_h: int) -> Measurement:
    """Raw counts → physical units (datasheet's double-precision formulas)."""
    t1, t2, t3 = cal.t
    var1 = (adc_t / 16384.0 - t1 / 1024.0) * t2
    var2 = (adc_t / 131072.0 - t1 / 8192.0) ** 2 * t3
    t_fine = var1 + var2
    temperature = t_fine / 5120.0

    p1, p2, p3, p4, p5, p6, p7, p8, p9 = cal.p
    var1 = t_fine / 2.0 - 64000.0
    var2 = var1 * var1 * p6 / 32768.0 + var1 * p5 * 2.0
    var2 = var2 / 4.0 + p4 * 65536.0
    var1 = (p3 * var1 * var1 / 524288.0 + p2 * var1) / 524288.0
    var1 = (1.0 + var1 / 32768.0) * p1
    if var1 == 0:
        pressure = 0.0  # the datasheet's guard against a division by zero
    else:
        pressure = 1048576.0 - adc_p
        pressure = (pressure - var2 / 4096.0) * 6250.0 / var1
        var1 = p9 * pressure * pressure / 2147483648.0
        var2 = pressure * p8 / 32768.0
        pressure = pressure + (var1 + var2 + p7) / 16.0

    h1, h2, h3, h4, h5, h6 = cal.h
    hum = t_fine - 76800.0
    hum = (adc_h - (h4 * 64.0 + h5 / 16384.0 * hum)) * (h2 / 65536.0 * (1.0 + h6 / 67108864.0 * hum * (1.0 + h3 / 67108864.0 * hum)))
    hum = hum * (1.0 - h1 * hum / 524288.0)
    return Measurement(temperature, pressure / 100.0, min(100.0, max(0.0, hum)))


class Bme280:
    """One BME280 in forced mode: each `read()` triggers a measurement and waits for it."""

    def __init__(self, bus: I2CBus, address: int = 0x76) -> None:
        self.bus, self.address = bus, address
        try:
            chip = bus.read_byte_data(address, _REG_ID)
        except OSError as error:
            raise Bme280Error(f"no answer from I²C address {address:#04x} ({error.strerror or error}): check wiring and the address (0x76 or 0x77)") from None
        if chip != CHIP_ID:
            what = _OTHER_CHIPS.get(chip, "not a BME280")
            raise Bme280Error(f"device at {address:#04x} has chip id {chip:#04x}: {what}")
        self.calibration = parse_calibration(
            bus.read_i2c_block_data(address, 0x88, 24), bus.read_byte_data(address, 0xA1), bus.read_i2c_block_data(address, 0xE1, 7)
        )
        bus.write_byte_data(address, _REG_CTRL_HUM, 0x01)  # humidity oversampling ×1 (takes effect with ctrl_meas)
        bus.write_byte_data(address, _REG_CONFIG, 0x00)  # no IIR filter: fusion does the filtering

    def read(self) -> Measurement:
        self.bus.write_byte_data(self.address, _REG_CTRL_MEAS, 0b001_001_01)  # T ×1, P ×1, forced mode
        for _ in range(50):
            if not self.bus.read_byte_data(self.address, _REG_STATUS) & 0x08:
                break
            time.sleep(0.002)
        d = self.bus.read_i2c_block_data(self.address, _REG_DATA, 8)
        adc_p = d[0] << 12 | d[1] << 4 | d[2] >> 4
        adc_t = d[3] << 12 | d[4] << 4 | d[5] >> 4
        adc_h = d[6] << 8 | d[7]
        return compensate(self.calibration, adc_t, adc_p, adc_h)


def open_bme280(bus_number: int, address: int) -> Bme280:
    """The BME280 on `/dev/i2c-{bus_number}`, or a Bme280Error saying what is missing."""
    try:
        from smbus2 import SMBus
    except ImportError:
        raise Bme280Error("smbus2 is not installed (pip install smbus2)") from None
    try:
        bus = SMBus(bus_number)
    except FileNotFoundError:
        raise Bme280Error(
            f"I²C bus {bus_number} not found (/dev/i2c-{bus_number}): enable I²C (raspi-config, or dtparam=i2c_arm=on; "
            "on balena set the configuration variable BALENA_HOST_CONFIG_dtparam to \"i2c_arm=on\") and give the container the device"
        ) from None
    except PermissionError:
        raise Bme280Error(f"no permission to open /dev/i2c-{bus_number}: add the user to the i2c group") from None
    return Bme280(bus, address)
