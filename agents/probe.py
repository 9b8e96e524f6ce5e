"""What this device is: read once at start from /proc, /sys and /dev (under a configurable root).

Everything reads files rather than calling vendor tools, so it works in a slim container
with the host's /proc and /sys mounted, and tests can point it at a fake tree. The GPU
accelerators also depend on the inference runtime (which execution providers onnxruntime
offers); that list is a parameter, so tests pass it beside their fake tree.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from .inference.onnx import offered_providers

# Where an NVIDIA GPU shows itself: PCs (driver loaded), then Jetsons across L4T releases.
_NVIDIA_GPU = (
    "dev/nvidia0", "proc/driver/nvidia/version",
    "dev/nvhost-*", "dev/nvgpu/igpu0", "sys/devices/gpu.0", "sys/devices/platform/gpu.0",
    "sys/devices/platform/*.gpu", "sys/devices/platform/bus@0/*.gpu", "sys/devices/*.ga10b", "sys/devices/platform/*.ga10b",
)
_GPU_PROVIDERS = (("cuda", "CUDAExecutionProvider"), ("tensorrt", "TensorrtExecutionProvider"))
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


def nvidia_gpu(root: Path) -> bool:
    """An NVIDIA GPU's device nodes or driver files: a PC's /dev/nvidia0 or /proc/driver/nvidia,
    a Jetson's /dev/nvhost-* nodes or its integrated GPU in sysfs (named differently per L4T)."""
    return any(next(root.glob(pattern), None) is not None for pattern in _NVIDIA_GPU)


def accelerators(root: Path, onnx_providers: Collection[str] = ()) -> list[str]:
    """What this device can accelerate inference with. `cuda` and `tensorrt` need both an NVIDIA
    GPU and an onnxruntime that offers that execution provider (`onnx_providers`, onnxruntime's
    names): a GPU the runtime cannot use accelerates nothing, and neither does a GPU build of
    onnxruntime on a machine without a GPU."""
    found: list[str] = []
    if nvidia_gpu(root):
        found += [name for name, provider in _GPU_PROVIDERS if provider in onnx_providers]
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


def probe_device(root: Path = Path("/"), onnx_providers: Collection[str] | None = None) -> DeviceInfo:
    """`onnx_providers`: the execution providers onnxruntime offers (default: ask the installed
    one, only where there is an NVIDIA GPU: nothing else reads them, and importing onnxruntime
    costs an agent that loads no ONNX model about 25 MB)."""
    if onnx_providers is None:
        onnx_providers = offered_providers() if nvidia_gpu(root) else ()
    return DeviceInfo(
        arch=platform.machine() or "unknown",
        board=board_model(root),
        os=f"{platform.system()} {platform.release()}",
        cores=os.cpu_count() or 1,
        ram_mb=ram_mb(root),
        accelerators=accelerators(root, onnx_providers),
    )

