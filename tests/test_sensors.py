"""`edgehive sensor`: the BME280 driver against a register map of the chip, the clear error
where there is no I²C bus, simulated readings on a real broker, and the demo set fused end to end."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from harness import Fleet, MosquittoBroker, MosquittoSub, Recorder, wait_nodes_online, wait_until

from edgehive.sensors.bme280 import Bme280, Bme280Error, Calibration, compensate
from edgehive.sensors.ds18b20 import Ds18b20Error, find_probes
from edgehive.sensors.publisher import TRUTHS, demo_groups
from edgehive.sensors.simulated import LiveTruth

# The datasheet's worked example (BMP280/BME280 compensation): adc_T 519888 → 25.08 °C, adc_P 415148 → 100653.27 Pa.
DATASHEET = Calibration(t=(27504, 26435, -1000), p=(36477, -10685, 3024, 2855, 140, -7, 15500, -14600, 6000), h=(75, 362, 0, 317, 50, 30))


def test_compensation_reproduces_the_datasheet_example() -> None:
    m = compensate(DATASHEET, 519888, 415148, 30000)
    assert m.temperature_c == pytest.approx(25.08, abs=0.005)
    assert m.pressure_hpa == pytest.approx(1006.5327, abs=0.001)
    wetter = compensate(DATASHEET, 519888, 415148, 32000)
    assert 0 <= m.humidity_pct < wetter.humidity_pct <= 100  # more counts, more humidity, clamped to 0..100


def _registers(chip_id: int = 0x60) -> dict[int, int]:
    """A BME280's registers holding the datasheet's trimming values and one finished measurement."""
    regs: dict[int, int] = {0xD0: chip_id, 0xF3: 0x00}
    t1, t2, t3 = DATASHEET.t
    words = [t1, t2, t3, *DATASHEET.p]
    for i, word in enumerate(words):
        regs[0x88 + 2 * i], regs[0x89 + 2 * i] = word & 0xFF, (word >> 8) & 0xFF
    h1, h2, h3, h4, h5, h6 = DATASHEET.h
    regs[0xA1] = h1
    regs[0xE1], regs[0xE2], regs[0xE3] = h2 & 0xFF, (h2 >> 8) & 0xFF, h3
    regs[0xE4], regs[0xE5], regs[0xE6], regs[0xE7] = (h4 >> 4) & 0xFF, (h4 & 0x0F) | ((h5 & 0x0F) << 4), (h5 >> 4) & 0xFF, h6 & 0xFF
    adc_p, adc_t, adc_h = 415148, 519888, 30000
    regs.update({0xF7: adc_p >> 12, 0xF8: (adc_p >> 4) & 0xFF, 0xF9: (adc_p & 0xF) << 4,
                 0xFA: adc_t >> 12, 0xFB: (adc_t >> 4) & 0xFF, 0xFC: (adc_t & 0xF) << 4, 0xFD: adc_h >> 8, 0xFE: adc_h & 0xFF})
    return regs


class RegisterBus:
    """The I²C surface of one chip at 0x76: what smbus2 would read from /dev/i2c-1."""

    def __init__(self, regs: dict[int, int]) -> None:
        self.regs, self.writes = regs, []

    def read_byte_data(self, address: int, register: int) -> int:
        if address != 0x76:
            raise OSError(121, "Remote I/O error")
        return self.regs[register]

    def read_i2c_block_data(self, address: int, register: int, length: int) -> list[int]:
        return [self.read_byte_data(address, register + i) for i in range(length)]

    def write_byte_data(self, address: int, register: int, value: int) -> None:
        self.writes.append((register, value))


def test_driver_reads_calibration_and_a_forced_measurement() -> None:
    bus = RegisterBus(_registers())
    chip = Bme280(bus, 0x76)
    assert chip.calibration == DATASHEET
    m = chip.read()
    assert m.temperature_c == pytest.approx(25.08, abs=0.005) and m.pressure_hpa == pytest.approx(1006.5327, abs=0.001)
    assert (0xF4, 0b00100101) in bus.writes  # forced mode, ×1 oversampling


def test_driver_names_the_wrong_chip_and_the_silent_address() -> None:
    with pytest.raises(Bme280Error, match="BMP280"):
        Bme280(RegisterBus(_registers(chip_id=0x58)), 0x76)
    with pytest.raises(Bme280Error, match="0x77"):
        Bme280(RegisterBus(_registers()), 0x77)


def test_bme280_without_an_i2c_bus_is_a_clear_error_not_a_traceback() -> None:
    proc = subprocess.run([sys.executable, "-m", "edgehive.cli", "sensor", "--sensor-type", "bme280", "--i2c-bus", "250"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2
    assert "I²C bus 250 not found (/dev/i2c-250)" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.integration
def test_simulated_sensor_publishes_json_readings_of_its_quantity(mosquitto: MosquittoBroker, prefix: str) -> None:
    port = str(mosquitto.port)
    with MosquittoSub(port, f"{prefix}/sensors/#") as sub:
        proc = subprocess.Popen([sys.executable, "-m", "edgehive.cli", "sensor", "--mqtt-url", mosquitto.url, "--prefix", prefix,
                                 "--sensor", "hall", "--sensor-type", "humidity", "--sensor-rate-hz", "20", "--sensor-duration-s", "3",
                                 "--sensor-noise-std", "0"])
        messages = [sub.next_message(10) for _ in range(10)]
        assert proc.wait(30) == 0
    mean, amplitude, period = TRUTHS["humidity"]
    truth = LiveTruth(list(TRUTHS).index("humidity"), mean=mean, amplitude=amplitude, period_s=period)
    seqs = []
    for topic, payload in messages:
        reading = orjson.loads(payload)
        assert topic == f"{prefix}/sensors/hall/humidity" and reading["unit"] == "%" and reading["v"] == 1
        assert reading["value"] == pytest.approx(truth(reading["ts"]), abs=1e-3)  # no noise: exactly the shared truth
        assert abs(reading["ts"] - time.time()) < 30
        seqs.append(reading["seq"])
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))


@pytest.mark.integration
def test_a_sensor_loses_not_even_its_first_reading(mosquitto: MosquittoBroker, prefix: str) -> None:
    """Readings are QoS 0: one published before the connection is up is gone. The publisher
    starts its clock once connected, so the first reading a subscriber sees is number 1."""
    with MosquittoSub(str(mosquitto.port), f"{prefix}/sensors/#") as sub:
        proc = subprocess.Popen([sys.executable, "-m", "edgehive.cli", "sensor", "--mqtt-url", mosquitto.url, "--prefix", prefix,
                                 "--sensor", "t1", "--sensor-rate-hz", "10", "--sensor-duration-s", "0.5"])
        topic, payload = sub.next_message(10)
        assert proc.wait(30) == 0
    assert topic == f"{prefix}/sensors/t1/temperature" and orjson.loads(payload)["seq"] == 1, payload


@pytest.mark.integration
def test_demo_sensors_are_fused_into_room_and_motion_results(mosquitto: MosquittoBroker, prefix: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    fleet = Fleet(mosquitto, prefix, tmp_path)
    recorder = Recorder(mosquitto.url, prefix)
    try:
        fleet.coordinator(EDGEHIVE_FUSION_GROUPS=orjson.dumps(demo_groups("demo")).decode())
        fleet.agent("pi-1")
        wait_nodes_online(recorder, 1)
        fleet.sensor("demo", EDGEHIVE_SENSOR_TYPE="demo", EDGEHIVE_SENSOR_RATE_HZ="20")
        wait_until(lambda: len(recorder.json("results/fusion/room")) >= 4 and len(recorder.json("results/fusion/motion")) >= 4, 30, "fused demo windows")
        mean, amplitude, period = TRUTHS["temperature"]
        truth = LiveTruth(0, mean=mean, amplitude=amplitude, period_s=period)
        for result in recorder.json("results/fusion/room")[1:]:
            out = result["output"]
            assert result["ok"] and set(out["used"]) <= {"demo-t1", "demo-t2", "demo-t3"} and "demo-t1" in out["used"]
            assert out["window_end"] - out["window_start"] == pytest.approx(1.0)
            assert abs(out["estimate"] - truth(out["window_end"])) < 0.5
        motion = [r["output"] for r in recorder.json("results/fusion/motion")]
        assert all(o["method"] == "imu" and abs(o["roll"]) < 45 and abs(o["pitch"]) < 30 for o in motion)
        assert [o["window"] for o in motion] == list(range(motion[0]["window"], motion[0]["window"] + len(motion)))
    finally:
        recorder.close()
        fleet.stop_all()


@pytest.mark.integration
def test_a_batching_sensor_sends_arrays_of_readings(mosquitto: MosquittoBroker, prefix: str) -> None:
    with MosquittoSub(str(mosquitto.port), f"{prefix}/sensors/#") as sub:
        proc = subprocess.Popen([sys.executable, "-m", "edgehive.cli", "sensor", "--mqtt-url", mosquitto.url, "--prefix", prefix,
                                 "--sensor", "imu1", "--sensor-type", "imu", "--sensor-rate-hz", "100", "--sensor-batch", "10",
                                 "--sensor-duration-s", "2"])
        topic, payload = sub.next_message(10)
        assert proc.wait(30) == 0
    batch = orjson.loads(payload)
    assert topic == f"{prefix}/sensors/imu1/imu" and len(batch) == 10
    assert [r["seq"] for r in batch] == list(range(batch[0]["seq"], batch[0]["seq"] + 10))
    assert all(len(r["accel"]) == 3 and len(r["gyro"]) == 3 for r in batch)
    assert abs(sum(v * v for v in batch[0]["accel"]) ** 0.5 - 9.81) < 1.5  # gravity, plus noise


def _w1_tree(root: Path, probes: dict[str, str]) -> Path:
    """A fake /sys/bus/w1/devices: each probe's w1_slave as the kernel writes it."""
    devices = root / "sys" / "bus" / "w1" / "devices"
    (devices / "w1_bus_master1").mkdir(parents=True)
    for serial, w1_slave in probes.items():
        (devices / serial).mkdir()
        (devices / serial / "w1_slave").write_text(w1_slave)
    return devices


GOOD = "72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n72 01 4b 46 7f ff 0e 10 57 t=23125\n"
BAD_CRC = "72 01 4b 46 7f ff 0e 10 57 : crc=00 NO\n72 01 4b 46 7f ff 0e 10 57 t=23125\n"
POWER_ON = "50 05 4b 46 7f ff 0c 10 1c : crc=1c YES\n50 05 4b 46 7f ff 0c 10 1c t=85000\n"


def test_ds18b20_probes_read_from_the_w1_sysfs_tree(tmp_path: Path) -> None:
    devices = _w1_tree(tmp_path, {"28-0316a2795aff": GOOD, "28-0000075b2c1e": BAD_CRC, "28-01193a5b8f2c": POWER_ON})
    probes = {p.serial: p for p in find_probes(devices)}
    assert set(probes) == {"28-0316a2795aff", "28-0000075b2c1e", "28-01193a5b8f2c"}  # not the bus master
    assert probes["28-0316a2795aff"].read_c() == 23.125
    assert probes["28-0000075b2c1e"].read_c() is None and probes["28-01193a5b8f2c"].read_c() is None
    (devices / "28-0316a2795aff" / "temperature").write_text("-1250\n")  # newer kernels: millidegrees alone
    assert probes["28-0316a2795aff"].read_c() == -1.25


def test_ds18b20_without_a_1_wire_bus_is_a_clear_error(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "edgehive.cli", "sensor", "--sensor-type", "ds18b20", "--w1-devices-dir", str(tmp_path / "none")],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2 and "no 1-Wire bus" in proc.stderr and "dtoverlay=w1-gpio" in proc.stderr and "Traceback" not in proc.stderr
    with pytest.raises(Ds18b20Error, match="lists no DS18B20"):
        find_probes(_w1_tree(tmp_path, {}))


@pytest.mark.integration
def test_ds18b20_sensor_publishes_each_probe(mosquitto: MosquittoBroker, prefix: str, tmp_path: Path) -> None:
    devices = _w1_tree(tmp_path, {"28-0316a2795aff": GOOD, "28-0000075b2c1e": BAD_CRC})
    with MosquittoSub(str(mosquitto.port), f"{prefix}/sensors/#") as sub:
        proc = subprocess.Popen([sys.executable, "-m", "edgehive.cli", "sensor", "--mqtt-url", mosquitto.url, "--prefix", prefix,
                                 "--sensor", "shed", "--sensor-type", "ds18b20", "--w1-devices-dir", str(devices),
                                 "--sensor-rate-hz", "20", "--sensor-duration-s", "1"])
        topic, payload = sub.next_message(10)
        assert proc.wait(30) == 0
    assert topic == f"{prefix}/sensors/shed-28-0316a2795aff/temperature"  # the probe with a bad CRC sends nothing
    reading = orjson.loads(payload)
    assert reading["value"] == 23.125 and reading["unit"] == "°C"
