"""Live load and health for heartbeats: CPU, memory, temperature, throttling, GPU load."""

from __future__ import annotations

from pathlib import Path

import psutil

# Raspberry Pi firmware's throttle flags (same bits as `vcgencmd get_throttled`).
_PI_UNDERVOLTED = 0x1
_PI_FREQ_CAPPED = 0x2
_PI_THROTTLED = 0x4
_PI_THROTTLE_PATH = "sys/devices/platform/soc/soc:firmware/get_throttled"
_JETSON_GPU_LOAD = ("sys/devices/gpu.0/load", "sys/devices/platform/gpu.0/load", "sys/devices/platform/17000000.gpu/load")


class HealthReader:
    """Reads the device's state; paths are relative to `root` so tests can fake /sys."""

    def __init__(self, root: Path = Path("/")) -> None:
        self.root = root
        psutil.cpu_percent(interval=None)  # prime: the first reading is meaningless

    def cpu_pct(self) -> float:
        return float(psutil.cpu_percent(interval=None))

    def mem_pct(self) -> float:
        return float(psutil.virtual_memory().percent)

    def temperature_c(self) -> float | None:
        """The hottest thermal zone, in °C (the SoC on a Pi, the max of CPU/GPU zones on a Jetson)."""
        temps = []
        for zone in sorted((self.root / "sys/class/thermal").glob("thermal_zone*/temp")):
            try:
                temps.append(int(zone.read_text().strip()) / 1000.0)
            except (OSError, ValueError):
                continue
        plausible = [t for t in temps if -40.0 <= t <= 150.0]
        return max(plausible) if plausible else None

    def throttled(self) -> bool:
        """True while the firmware caps the clock for heat or low voltage (Raspberry Pi)."""
        try:
            flags = int((self.root / _PI_THROTTLE_PATH).read_text().strip(), 16)
        except (OSError, ValueError):
            return False
        return bool(flags & (_PI_UNDERVOLTED | _PI_FREQ_CAPPED | _PI_THROTTLED))

    def gpu_pct(self) -> float | None:
        """Jetson GPU load (sysfs reports per mille)."""
        for rel in _JETSON_GPU_LOAD:
            try:
                return min(100.0, int((self.root / rel).read_text().strip()) / 10.0)
            except (OSError, ValueError):
                continue
        return None
