"""`edgehive sensor`: readings on `sensors/{sensor}/{quantity}`, simulated or from a BME280.

Simulated sensors read a ground truth of absolute time (`LiveTruth`), so several sensor
processes with the same seed measure the same room, each with its own noise, bias, drift,
dropout and faults; `demo` runs a ready-made set (three temperature sensors of different
quality, one of them spiking, and an IMU on a known trajectory) for `edgehive up`.

Readings go out on a fixed clock grid at `sensor_rate_hz`, as JSON with value, unit, timestamp
and sequence (the same shape `mosquitto_pub -m` users can send, see schemas/sensors.py).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import orjson
from pydantic import Field, field_validator, model_validator

from edgehive.bus import BusError, MqttBus
from edgehive.schemas import TopicError, Topics
from edgehive.schemas.sensors import IMU_QUANTITY, UNITS
from edgehive.settings import CommonSettings
from edgehive.signals import Stop, StopLike

from .bme280 import Bme280Error, open_bme280
from .ds18b20 import Ds18b20Error, Probe, find_probes

if TYPE_CHECKING:
    from .simulated import SimulatedImu

log = logging.getLogger(__name__)

SensorType = Literal["temperature", "humidity", "pressure", "imu", "bme280", "ds18b20", "demo"]

# The simulated world: what each quantity's truth looks like.
TRUTHS: dict[str, tuple[float, float, float]] = {"temperature": (21.0, 2.0, 600.0), "humidity": (45.0, 5.0, 900.0), "pressure": (1013.0, 1.5, 1800.0)}


class SensorSettings(CommonSettings):
    """Settings of `edgehive sensor` (each an `EDGEHIVE_*` variable and a command-line option)."""

    sensor: str = Field("", description="Sensor id, the {sensor} level of sensors/{sensor}/{quantity} (default: the node id)")
    sensor_type: SensorType = Field("temperature", description="temperature, humidity, pressure or imu (simulated), bme280 (I2C) or ds18b20 (1-Wire) (real), or demo (a ready-made set)")
    sensor_rate_hz: float = Field(10.0, gt=0, le=1000, description="Readings per second")
    sensor_noise_std: float = Field(0.3, ge=0, description="Simulated white noise (standard deviation, in the quantity's unit)")
    sensor_bias: float = Field(0.0, description="Simulated constant offset")
    sensor_drift_per_s: float = Field(0.0, description="Simulated offset growing by this much per second")
    sensor_dropout: float = Field(0.0, ge=0, lt=1, description="Probability that a simulated reading is missing")
    sensor_stuck_after_s: float = Field(0.0, ge=0, description="Simulated sensor freezes at its value after this many seconds (0: never)")
    sensor_spike_probability: float = Field(0.0, ge=0, le=1, description="Probability of a simulated spike per reading")
    sensor_spike_magnitude: float = Field(5.0, ge=0, description="Size of a simulated spike")
    sensor_seed: int = Field(0, description="Seed of the simulated noise (the truth is shared by all simulated sensors)")
    sensor_batch: int = Field(1, ge=1, le=1000, description="Readings per message: above 1, a JSON array (saves messages for fast sensors such as an IMU)")
    sensor_duration_s: float = Field(0.0, ge=0, description="Stop after this many seconds (0: run until stopped)")
    w1_devices_dir: str = Field("/sys/bus/w1/devices", description="Where the kernel lists 1-Wire devices (DS18B20 probes are 28-*)")
    i2c_bus: int = Field(1, ge=0, description="I2C bus of the BME280 (/dev/i2c-N)")
    i2c_address: str = Field("0x76", description="I2C address of the BME280 (0x76 or 0x77)")

    @field_validator("i2c_address")
    @classmethod
    def _address(cls, value: str) -> str:
        if not 0x03 <= int(value, 0) <= 0x77:
            raise ValueError("an I2C address is between 0x03 and 0x77")
        return value

    @model_validator(mode="after")
    def _sensor_id(self) -> SensorSettings:
        if not self.sensor:
            self.sensor = self.node_id
        Topics(self.prefix).sensor(self.sensor, IMU_QUANTITY)  # TopicError when it cannot be a topic level
        return self


@dataclass
class Channel:
    """One stream of readings: a sensor id, a quantity, and how to read the next value."""

    sensor: str
    quantity: str
    read: Callable[[float, float], dict[str, object] | None]  # (now, seconds since start) → payload fields
    seq: int = 0
    batch: list[dict[str, object]] = field(default_factory=list)




def _imu(imu: SimulatedImu) -> Callable[[float, float], dict[str, object] | None]:
    def read(now: float, elapsed: float) -> dict[str, object] | None:
        sample = imu.sample(elapsed)
        return None if sample is None else {"accel": [round(v, 5) for v in sample.accel], "gyro": [round(v, 6) for v in sample.gyro]}

    return read


def simulated(sensor: str, quantity: str, settings: SensorSettings, **overrides: object) -> Channel:
    # The simulation (and numpy, which draws its noise) is imported by the sensors that
    # simulate, not by every publisher: a real thermometer's process stays small.
    from .simulated import Faults, LiveTruth, SensorSpec, SimulatedSensor

    mean, amplitude, period = TRUTHS[quantity]
    live = LiveTruth(list(TRUTHS).index(quantity), mean=mean, amplitude=amplitude, period_s=period)
    created = time.time()  # drift and faults count seconds from here; the truth is absolute

    def truth(elapsed: float) -> float:
        return live(created + elapsed)
    fields: dict[str, object] = {
        "sensor": sensor, "noise_std": settings.sensor_noise_std, "bias": settings.sensor_bias, "drift_per_s": settings.sensor_drift_per_s,
        "dropout_probability": settings.sensor_dropout, "seed": settings.sensor_seed,
        "faults": Faults(stuck_from=settings.sensor_stuck_after_s or None,
                         spike_probability=settings.sensor_spike_probability, spike_magnitude=settings.sensor_spike_magnitude),
    }
    fields.update(overrides)
    simulation = SimulatedSensor(SensorSpec.model_validate(fields), truth)
    unit = UNITS[quantity][0]

    def read(now: float, elapsed: float) -> dict[str, object] | None:
        value = simulation.sample(now - created)  # the truth at `now`, whenever the run started
        return None if value is None else {"value": round(value, 4), "unit": unit}

    return Channel(sensor, quantity, read)


def bme280_channels(settings: SensorSettings) -> list[Channel]:
    chip = open_bme280(settings.i2c_bus, int(settings.i2c_address, 0))
    latest: dict[str, float] = {}

    def reader(quantity: str) -> Callable[[float, float], dict[str, object] | None]:
        def read(now: float, elapsed: float) -> dict[str, object] | None:
            if quantity == "temperature":  # one measurement serves the three channels of a tick
                m = chip.read()
                latest.update(temperature=m.temperature_c, pressure=m.pressure_hpa, humidity=m.humidity_pct)
            return {"value": round(latest[quantity], 3), "unit": UNITS[quantity][0]}

        return read

    return [Channel(settings.sensor, q, reader(q)) for q in ("temperature", "pressure", "humidity")]


def ds18b20_channels(settings: SensorSettings) -> list[Channel]:
    """One channel per probe: the sensor id itself for a single probe, `{sensor}-{serial}` for several."""
    probes = find_probes(Path(settings.w1_devices_dir))

    def reader(probe: Probe) -> Callable[[float, float], dict[str, object] | None]:
        def read(now: float, elapsed: float) -> dict[str, object] | None:
            value = probe.read_c()
            return None if value is None else {"value": value, "unit": UNITS["temperature"][0]}

        return read

    single = len(probes) == 1
    return [Channel(settings.sensor if single else f"{settings.sensor}-{p.serial}", "temperature", reader(p)) for p in probes]


def demo_channels(settings: SensorSettings) -> list[Channel]:
    """`{sensor}-t1..t3`: good, fair and poor thermometers (t3 also spikes), and `{sensor}-imu`."""
    from .simulated import Faults, ImuSpec, ImuTrajectory, SimulatedImu

    base = settings.sensor
    return [
        simulated(f"{base}-t1", "temperature", settings, noise_std=0.1, seed=1),
        simulated(f"{base}-t2", "temperature", settings, noise_std=0.3, bias=0.0, seed=2),
        simulated(f"{base}-t3", "temperature", settings, noise_std=0.8, seed=3, faults=Faults(spike_probability=0.02, spike_magnitude=8.0)),
        Channel(f"{base}-imu", IMU_QUANTITY, _imu(SimulatedImu(ImuSpec(seed=4), ImuTrajectory()))),
    ]


def demo_groups(sensor: str = "demo") -> dict[str, dict[str, object]]:
    """The fusion groups matching `demo_channels`, for the coordinator `edgehive up` starts."""
    return {
        "room": {"quantity": "temperature", "sensors": [f"{sensor}-t1", f"{sensor}-t2", f"{sensor}-t3"], "window_s": 1.0},
        "motion": {"quantity": IMU_QUANTITY, "sensors": [f"{sensor}-imu"], "window_s": 1.0},
    }


def make_channels(settings: SensorSettings) -> list[Channel]:
    kind = settings.sensor_type
    if kind == "demo":
        return demo_channels(settings)
    if kind == "bme280":
        return bme280_channels(settings)
    if kind == "ds18b20":
        return ds18b20_channels(settings)
    if kind == IMU_QUANTITY:
        from .simulated import ImuSpec, ImuTrajectory, SimulatedImu

        spec = ImuSpec(seed=settings.sensor_seed, dropout_probability=settings.sensor_dropout)
        return [Channel(settings.sensor, IMU_QUANTITY, _imu(SimulatedImu(spec, ImuTrajectory())))]
    return [simulated(settings.sensor, kind, settings)]


class SensorPublisher:
    """Publishes every channel once per tick of a fixed clock grid."""

    def __init__(self, settings: SensorSettings, channels: list[Channel]) -> None:
        self.settings = settings
        self.channels = channels
        self.topics = Topics(settings.prefix)
        self.bus = MqttBus(settings.broker, self.topics, f"edgehive-sensor-{settings.sensor}", source=settings.sensor)
        self.published = 0

    def run(self, stop: StopLike) -> None:
        self.bus.start(timeout_s=None)
        # QoS 0 readings published before the first connection are dropped by the client (the
        # first one always was): start the clock once the broker takes them. A broker that is
        # not there yet is waited for as long as it takes, as before, just without losing readings.
        while not stop.is_set() and not self.bus.connected.wait(0.1):
            pass
        period = 1.0 / self.settings.sensor_rate_hz
        start = time.monotonic()
        started = time.time()
        tick = 0
        try:
            while not stop.is_set():
                now = time.time()
                if self.settings.sensor_duration_s and now - started >= self.settings.sensor_duration_s:
                    break
                for channel in self.channels:
                    self._publish(channel, now, now - started)
                tick = max(tick + 1, int((time.monotonic() - start) / period))  # missed ticks are skipped, not bunched
                stop.wait(max(0.0, start + tick * period - time.monotonic()))
        finally:
            self.bus.stop()

    def _publish(self, channel: Channel, now: float, elapsed: float) -> None:
        fields = channel.read(now, elapsed)
        if fields is None:
            return  # a dropout: nothing is sent, the sequence number shows the gap
        channel.seq += 1
        channel.batch.append({"v": 1, **fields, "ts": round(now, 4), "seq": channel.seq})
        if len(channel.batch) < self.settings.sensor_batch:
            return
        body = channel.batch[0] if len(channel.batch) == 1 else channel.batch
        channel.batch = []
        if self.bus.publish(self.topics.sensor(channel.sensor, channel.quantity), orjson.dumps(body), qos=0):
            self.published += 1


def run_sensor(settings: SensorSettings, stop: StopLike | None = None) -> int:
    """Run until SIGTERM/SIGINT (or `stop`); 2 with a clear message when the sensor cannot be used."""
    try:
        channels = make_channels(settings)
        for channel in channels:  # an id that cannot be a topic level fails here, not mid-run
            Topics(settings.prefix).sensor(channel.sensor, channel.quantity)
    except TopicError as error:
        print(f"edgehive sensor: {error}", file=sys.stderr)
        return 2
    except Bme280Error as error:
        print(f"edgehive sensor: BME280: {error}", file=sys.stderr)
        return 2
    except Ds18b20Error as error:
        print(f"edgehive sensor: DS18B20: {error}", file=sys.stderr)
        return 2
    if stop is None:
        stop = Stop().install()
    try:
        SensorPublisher(settings, channels).run(stop)
    except BusError as error:
        print(f"edgehive sensor: {error}", file=sys.stderr)
        return 2
    return 0
