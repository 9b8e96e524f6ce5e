"""What this device is: read once at start from /proc, /sys and /dev (under a configurable root).

Everything reads files rather than calling vendor tools, so it works in a slim container
with the host's /proc and /sys mounted, and tests can point it at a fake tree.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from pathlib import Path

# USB ids of the Coral USB Accelerator before (Global Unichip) and after (Google) firmware load.
_CORAL_USB_IDS = {("1a6e", "089a"), ("18d1", "9302")}


@dataclass(frozen=True)
class DeviceInfo:
    arch: str
    board: str
    os: str
    cores: int
    ram_mb: int
    accelerators: list[str]


def _read(path: Path) -> str | None:
    try:
        return path.read_bytes().replace(b"\x00", b"").decode("utf-8", errors="replace").strip()
    except OSError:
        return None


def board_model(root: Path) -> str:
    """`Raspberry Pi 5 Model B Rev 1.0`, `NVIDIA Jetson Orin Nano Developer Kit`, or the DMI name on a PC."""
    for rel in ("proc/device-tree/model", "sys/firmware/devicetree/base/model", "sys/class/dmi/id/product_name"):
        value = _read(root / rel)
        if value:
            return value
    return "unknown"


def ram_mb(root: Path) -> int:
    text = _read(root / "proc/meminfo") or ""
    for line in text.splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    return 0


def accelerators(root: Path, board: str) -> list[str]:
    found: list[str] = []
    if "jetson" in board.lower() or (root / "etc/nv_tegra_release").exists() or (root / "proc/driver/nvidia/version").exists():
        found.append("cuda")
    if (root / "dev/apex_0").exists() or _coral_on_usb(root):
        found.append("edgetpu")
    if (root / "dev/hailo0").exists():
        found.append("hailo")
    return found


def _coral_on_usb(root: Path) -> bool:
    devices = root / "sys/bus/usb/devices"
    if not devices.is_dir():
        return False
    for dev in devices.iterdir():
        ids = (_read(dev / "idVendor"), _read(dev / "idProduct"))
        if ids in _CORAL_USB_IDS:
            return True
    return False


def probe_device(root: Path = Path("/")) -> DeviceInfo:
    board = board_model(root)
    return DeviceInfo(
        arch=platform.machine() or "unknown",
        board=board,
        os=f"{platform.system()} {platform.release()}",
        cores=os.cpu_count() or 1,
        ram_mb=ram_mb(root),
        accelerators=accelerators(root, board),
    )

