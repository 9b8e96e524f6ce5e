"""Live load and health for heartbeats: CPU, memory, temperature, throttling, GPU load.

Read from sysfs, which every container with the host's /sys sees. On a Jetson whose jetson-stats
service answers (jtop.py), the GPU load and temperatures come from jtop instead.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import psutil

from .jtop import JtopReader, jtop_gpu_pct, jtop_temperature_c

log = logging.getLogger(__name__)

# Raspberry Pi firmware's throttle flags (same bits as `vcgencmd get_throttled`).
_PI_UNDERVOLTED = 0x1
_PI_FREQ_CAPPED = 0x2
_PI_THROTTLED = 0x4
_PI_THROTTLE_PATH = "sys/devices/platform/soc/soc:firmware/get_throttled"
_JETSON_GPU_LOAD = ("sys/devices/gpu.0/load", "sys/devices/platform/gpu.0/load", "sys/devices/platform/17000000.gpu/load")


class HealthReader:
    """Reads the device's state; paths are relative to `root` so tests can fake /sys."""

    def __init__(self, root: Path = Path("/"), use_jtop: bool = True) -> None:
        self.root = root
        psutil.cpu_percent(interval=None)  # prime: the first reading is meaningless
        self.jtop = JtopReader.open(root) if use_jtop else None

    @property
    def source(self) -> str:
        """Where the GPU load and temperatures come from: `jtop` or `sysfs`."""
        return "jtop" if self.jtop is not None else "sysfs"

    def _jtop_stats(self) -> dict[str, Any] | None:
        if self.jtop is None:
            return None
        try:
            return self.jtop.stats()
        except Exception as exc:  # the service stopped or the client broke: sysfs from now on
            log.warning("jtop stopped answering (%s): reading sysfs from now on", exc)
            self.jtop.close()
            self.jtop = None
            return None

    def close(self) -> None:
        if self.jtop is not None:
            self.jtop.close()
            self.jtop = None

    def cpu_pct(self) -> float:
        return float(psutil.cpu_percent(interval=None))

    def mem_pct(self) -> float:
        return float(psutil.virtual_memory().percent)

    def temperature_c(self) -> float | None:
        """The hottest thermal zone, in °C (the SoC on a Pi, the max of CPU/GPU zones on a Jetson)."""
        stats = self._jtop_stats()
        if stats is not None and (hottest := jtop_temperature_c(stats)) is not None:
            return hottest
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
        stats = self._jtop_stats()
        if stats is not None and (load := jtop_gpu_pct(stats)) is not None:
            return load
        for rel in _JETSON_GPU_LOAD:
            try:
                return min(100.0, int((self.root / rel).read_text().strip()) / 10.0)
            except (OSError, ValueError):
                continue
        return None
