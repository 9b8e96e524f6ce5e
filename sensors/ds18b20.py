"""DS18B20 1-Wire thermometers through the Linux w1 driver's sysfs files.

The most common thermometer on a Pi: with `dtoverlay=w1-gpio` the kernel lists each probe as
`/sys/bus/w1/devices/28-<serial>/`, and reading its `w1_slave` file triggers a conversion
(~750 ms at 12 bits) and returns two lines: the scratchpad with `YES` when the CRC matched, and
`t=<millidegrees>`. A failed CRC, or the power-on value 85 °C that a probe returns before its
first conversion, is a missing reading, not a value. Newer kernels also offer `temperature`
(millidegrees alone), used when present.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import EdgehiveError

POWER_ON_MILLIDEGREES = 85000


class Ds18b20Error(EdgehiveError, RuntimeError):
    """No probe can be read; the message says what to enable."""


@dataclass(frozen=True)
class Probe:
    serial: str  # e.g. 28-0316a2795aff
    path: Path

    def read_c(self) -> float | None:
        """°C, or None for a failed conversion (bad CRC, power-on value, probe gone)."""
        try:
            plain = self.path / "temperature"
            if plain.is_file():
                text = plain.read_text().strip()
                millidegrees = int(text) if text else None
            else:
                lines = (self.path / "w1_slave").read_text().splitlines()
                if len(lines) < 2 or not lines[0].strip().endswith("YES") or "t=" not in lines[1]:
                    return None
                millidegrees = int(lines[1].rsplit("t=", 1)[1])
        except (OSError, ValueError):
            return None
        if millidegrees is None or millidegrees == POWER_ON_MILLIDEGREES:
            return None
        return millidegrees / 1000.0


def find_probes(devices_dir: Path) -> list[Probe]:
    """Every DS18B20 (family code 28) the w1 bus lists, by serial."""
    if not devices_dir.is_dir():
        raise Ds18b20Error(
            f"no 1-Wire bus at {devices_dir}: enable it (dtoverlay=w1-gpio in config.txt; on balena the configuration variable "
            "BALENA_HOST_CONFIG_dtoverlay=\"w1-gpio\") and give the container the host's /sys (io.balena.features.sysfs)"
        )
    probes = [Probe(p.name, p) for p in sorted(devices_dir.glob("28-*"))]
    if not probes:
        raise Ds18b20Error(f"the 1-Wire bus at {devices_dir} lists no DS18B20 (no 28-* device): check the wiring and the 4.7 kΩ pull-up")
    return probes
