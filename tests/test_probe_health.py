"""Device probe and live health, read from fake /proc, /sys and /dev trees built under tmp_path.

The trees copy what the real kernels expose (device-tree model with its trailing NUL,
millidegree thermal zones, the Pi firmware's hex throttle flags, the Jetson's per-mille
GPU load), so the readers are exercised exactly as on a device.
"""

from __future__ import annotations

import json
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgehive.agents.health import HealthReader
from edgehive.agents.inference import offered_providers
from edgehive.agents.jtop import jtop_socket_answers
from edgehive.agents.probe import DeviceInfo, accelerators, board_model, nvidia_gpu, probe_device, ram_mb

PI5_MODEL = "Raspberry Pi 5 Model B Rev 1.0"
ORIN_MODEL = "NVIDIA Jetson Orin Nano Developer Kit"
THROTTLE = "sys/devices/platform/soc/soc:firmware/get_throttled"


def put(root: Path, rel: str, content: str | bytes) -> Path:
    """Write one file of the fake tree, creating its folders."""
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


def meminfo(total_kb: int) -> str:
    """The first lines of a real /proc/meminfo."""
    return f"MemTotal:       {total_kb} kB\nMemFree:         1234567 kB\nMemAvailable:    2345678 kB\n"


@pytest.fixture
def pi5(tmp_path: Path) -> Path:
    """A Raspberry Pi 5 (8 GB) at 61.5 °C, currently under-volted and throttled."""
    put(tmp_path, "proc/device-tree/model", PI5_MODEL.encode() + b"\x00")
    put(tmp_path, "proc/meminfo", meminfo(8_245_204))
    put(tmp_path, "sys/class/thermal/thermal_zone0/temp", "61500\n")
    put(tmp_path, THROTTLE, "0x50005\n")
    return tmp_path


@pytest.fixture
def orin(tmp_path: Path) -> Path:
    """A Jetson Orin Nano with two thermal zones and the GPU at 73.4 %."""
    put(tmp_path, "proc/device-tree/model", ORIN_MODEL.encode() + b"\x00")
    put(tmp_path, "proc/meminfo", meminfo(7_999_488))
    put(tmp_path, "etc/nv_tegra_release", "# R36 (release), REVISION: 3.0, GCID: 36923193, BOARD: generic, EABI: aarch64\n")
    put(tmp_path, "sys/devices/gpu.0/load", "734\n")
    put(tmp_path, "sys/class/thermal/thermal_zone0/temp", "48250\n")
    put(tmp_path, "sys/class/thermal/thermal_zone1/temp", "52750\n")
    return tmp_path


@pytest.fixture
def pc_with_coral(tmp_path: Path) -> Path:
    """An x86 PC (DMI product name) with a Coral USB Accelerator after firmware load."""
    put(tmp_path, "sys/class/dmi/id/product_name", "OptiPlex 7090\n")
    put(tmp_path, "proc/meminfo", meminfo(16_314_640))
    put(tmp_path, "sys/bus/usb/devices/usb1/idVendor", "1d6b\n")  # a root hub
    put(tmp_path, "sys/bus/usb/devices/usb1/idProduct", "0002\n")
    (tmp_path / "sys/bus/usb/devices/1-0:1.0").mkdir()  # an interface: no ids at all
    put(tmp_path, "sys/bus/usb/devices/2-1/idVendor", "18d1\n")
    put(tmp_path, "sys/bus/usb/devices/2-1/idProduct", "9302\n")
    return tmp_path


# -- probe -------------------------------------------------------------------------------------


def test_pi5_probe(pi5: Path) -> None:
    """Board name without the device tree's NUL, RAM in MB, no accelerator."""
    info = probe_device(pi5)
    assert isinstance(info, DeviceInfo)
    assert info.board == PI5_MODEL
    assert info.ram_mb == 8_245_204 // 1024
    assert info.accelerators == []
    assert info.cores >= 1


# onnxruntime's provider lists: the CPU wheel, and a GPU build (onnxruntime-gpu, JetPack's).
CPU_BUILD = ["AzureExecutionProvider", "CPUExecutionProvider"]
GPU_BUILD = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]


def test_jetson_probe_finds_cuda_and_tensorrt(orin: Path) -> None:
    """A Jetson whose onnxruntime is the GPU build advertises cuda and tensorrt, so that heavy
    models and GPU jobs are sent to it."""
    info = probe_device(orin, onnx_providers=GPU_BUILD)
    assert info.board == ORIN_MODEL
    assert info.ram_mb == 7_999_488 // 1024
    assert info.accelerators == ["cuda", "tensorrt"]


def test_jetson_with_the_cpu_onnxruntime_has_no_gpu_accelerator(orin: Path) -> None:
    """The GPU is there but nothing here can run a model on it: nothing is advertised."""
    assert probe_device(orin, onnx_providers=CPU_BUILD).accelerators == []
    assert probe_device(orin, onnx_providers=[]).accelerators == []


def test_gpu_build_without_a_gpu_advertises_nothing(pi5: Path) -> None:
    """onnxruntime-gpu lists CUDA on any machine; without a GPU device it accelerates nothing."""
    assert probe_device(pi5, onnx_providers=GPU_BUILD).accelerators == []


def test_cuda_build_without_tensorrt(orin: Path) -> None:
    """A CUDA-only build offers no TensorRT provider: only cuda is advertised."""
    assert accelerators(orin, ["CUDAExecutionProvider", "CPUExecutionProvider"]) == ["cuda"]


@pytest.mark.parametrize(
    "rel",
    [
        "dev/nvhost-ctrl-gpu",  # JetPack 4 and 5
        "dev/nvgpu/igpu0/ctrl",  # JetPack 6
        "sys/devices/platform/17000000.gpu/load",  # Orin, L4T 35+
        "sys/devices/platform/bus@0/17000000.gpu/load",  # Orin, L4T 36
        "sys/devices/17000000.ga10b/load",  # Orin, L4T 34
    ],
)
def test_jetson_gpu_device_nodes(tmp_path: Path, rel: str) -> None:
    """Each L4T release shows the integrated GPU in its own place; any of them will do."""
    put(tmp_path, rel, "")
    assert nvidia_gpu(tmp_path)
    assert accelerators(tmp_path, GPU_BUILD) == ["cuda", "tensorrt"]


@pytest.mark.parametrize("rel", ["dev/nvidia0", "proc/driver/nvidia/version"])
def test_pc_with_an_nvidia_gpu(tmp_path: Path, rel: str) -> None:
    """A PC with the NVIDIA driver loaded and onnxruntime-gpu installed has CUDA."""
    put(tmp_path, rel, "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54\n" if "proc" in rel else "")
    assert accelerators(tmp_path, ["CUDAExecutionProvider", "CPUExecutionProvider"]) == ["cuda"]


def test_tegra_release_alone_is_no_gpu(tmp_path: Path) -> None:
    """A container that sees L4T's release file but none of the GPU's device nodes cannot use it."""
    put(tmp_path, "etc/nv_tegra_release", "# R35 (release)\n")
    assert not nvidia_gpu(tmp_path)
    assert accelerators(tmp_path, GPU_BUILD) == []


def test_the_installed_onnxruntime_is_asked_by_default(orin: Path) -> None:
    """Without a provider list the probe asks the onnxruntime installed here (the CPU wheel in
    this test environment): the Jetson tree alone then yields no GPU accelerator."""
    if "CUDAExecutionProvider" in offered_providers():
        pytest.skip("a GPU build of onnxruntime is installed here; the test needs the CPU wheel")
    assert probe_device(orin).accelerators == []


def test_coral_usb_found(pc_with_coral: Path) -> None:
    """The Coral USB ids are recognised among other USB devices and interfaces without ids."""
    info = probe_device(pc_with_coral)
    assert info.board == "OptiPlex 7090"
    assert info.accelerators == ["edgetpu"]


def test_coral_usb_before_firmware_load(tmp_path: Path) -> None:
    """Before its firmware loads, the Coral enumerates as Global Unichip 1a6e:089a."""
    put(tmp_path, "sys/bus/usb/devices/1-1/idVendor", "1a6e")
    put(tmp_path, "sys/bus/usb/devices/1-1/idProduct", "089a")
    assert accelerators(tmp_path) == ["edgetpu"]


def test_other_usb_devices_are_not_coral(tmp_path: Path) -> None:
    """Only the Coral's vendor:product pair counts, not the vendor alone."""
    put(tmp_path, "sys/bus/usb/devices/1-1/idVendor", "18d1")
    put(tmp_path, "sys/bus/usb/devices/1-1/idProduct", "4ee7")  # a Google phone
    assert accelerators(tmp_path) == []


def test_coral_pcie_found(tmp_path: Path) -> None:
    """The PCIe/M.2 Coral shows up as /dev/apex_0."""
    put(tmp_path, "dev/apex_0", "")
    assert accelerators(tmp_path) == ["edgetpu"]


def test_hailo_found(tmp_path: Path) -> None:
    """The Raspberry Pi AI Kit's Hailo shows up as /dev/hailo0."""
    put(tmp_path, "dev/hailo0", "")
    assert accelerators(tmp_path) == ["hailo"]


def test_jetson_with_coral_has_both(orin: Path) -> None:
    """Accelerators add up; one does not hide another."""
    put(orin, "dev/apex_0", "")
    assert accelerators(orin, GPU_BUILD) == ["cuda", "tensorrt", "edgetpu"]


def test_device_tree_fallback_path(tmp_path: Path) -> None:
    """Without /proc/device-tree the firmware path is read instead."""
    put(tmp_path, "sys/firmware/devicetree/base/model", b"Raspberry Pi 4 Model B Rev 1.5\x00")
    assert board_model(tmp_path) == "Raspberry Pi 4 Model B Rev 1.5"


def test_empty_tree(tmp_path: Path) -> None:
    """A bare container sees nothing; the probe still answers with safe values."""
    info = probe_device(tmp_path)
    assert info.board == "unknown"
    assert info.ram_mb == 0
    assert info.accelerators == []
    health = HealthReader(tmp_path)
    assert health.temperature_c() is None
    assert health.throttled() is False
    assert health.gpu_pct() is None


def test_meminfo_without_total(tmp_path: Path) -> None:
    """A truncated meminfo gives 0 rather than a crash."""
    put(tmp_path, "proc/meminfo", "MemFree: 100 kB\n")
    assert ram_mb(tmp_path) == 0


# -- health ------------------------------------------------------------------------------------


def test_pi5_health(pi5: Path) -> None:
    """61.5 °C, throttled now (bits 0 and 2 set), no GPU reading on a Pi."""
    health = HealthReader(pi5)
    assert health.temperature_c() == 61.5
    assert health.throttled() is True
    assert health.gpu_pct() is None


@pytest.mark.parametrize(
    ("flags", "throttled"),
    [("0x0", False), ("0x50005", True), ("0x1", True), ("0x2", True), ("0x4", True), ("0x8", False),
     ("0x50000", False), ("0xe0000", False), ("garbage", False), ("", False)],
)
def test_pi_throttle_flags(tmp_path: Path, flags: str, throttled: bool) -> None:
    """Only the current bits (0-2) count; bits 16+ mean 'happened since boot' and are history."""
    put(tmp_path, THROTTLE, flags + "\n")
    assert HealthReader(tmp_path).throttled() is throttled


def test_jetson_health(orin: Path) -> None:
    """The GPU load is per mille in sysfs; the hottest zone is reported."""
    health = HealthReader(orin)
    assert health.gpu_pct() == pytest.approx(73.4)
    assert health.temperature_c() == 52.75
    assert health.throttled() is False


@pytest.mark.parametrize("rel", ["sys/devices/platform/gpu.0/load", "sys/devices/platform/17000000.gpu/load"])
def test_jetson_gpu_load_other_paths(tmp_path: Path, rel: str) -> None:
    """Different L4T releases put the load file elsewhere."""
    put(tmp_path, rel, "1000\n")
    assert HealthReader(tmp_path).gpu_pct() == 100.0


def test_gpu_load_is_capped(tmp_path: Path) -> None:
    """A glitchy reading above 1000 per mille must not break the heartbeat's 0-100 bound."""
    put(tmp_path, "sys/devices/gpu.0/load", "1500")
    assert HealthReader(tmp_path).gpu_pct() == 100.0


def test_implausible_thermal_values_ignored(tmp_path: Path) -> None:
    """Disconnected sensors report nonsense (-273 °C, 255 °C, text); they must not win the max."""
    put(tmp_path, "sys/class/thermal/thermal_zone0/temp", "-273150")
    put(tmp_path, "sys/class/thermal/thermal_zone1/temp", "255000")
    put(tmp_path, "sys/class/thermal/thermal_zone2/temp", "N/A")
    put(tmp_path, "sys/class/thermal/thermal_zone3/temp", "44000")
    assert HealthReader(tmp_path).temperature_c() == 44.0


def test_only_implausible_thermal_values(tmp_path: Path) -> None:
    """When no zone is believable there is no temperature at all."""
    put(tmp_path, "sys/class/thermal/thermal_zone0/temp", "-273150")
    assert HealthReader(tmp_path).temperature_c() is None


def test_live_cpu_and_memory_in_range(tmp_path: Path) -> None:
    """psutil's readings fit the heartbeat's bounds (0-100)."""
    health = HealthReader(tmp_path)
    assert 0.0 <= health.cpu_pct() <= 100.0
    assert 0.0 < health.mem_pct() <= 100.0


# --- jetson-stats (jtop) ------------------------------------------------------------------------
# jtop's service listens on /run/jtop.sock on a Jetson that runs it (not balenaOS). The socket is
# made real here (a listening Unix socket in the fake tree); the `jtop` client library, which only
# works against that Jetson service, is the one stand-in: a module with jtop's documented surface
# (`jtop()`, `start()`, `stats`, `close()`), put on sys.path.

JTOP_CLIENT = '''
import json, os
class jtop:
    def start(self):
        self._file = os.environ["FAKE_JTOP_STATS"]
    @property
    def stats(self):
        with open(self._file) as fh:
            text = fh.read()
        if text == "gone":
            raise ConnectionError("jtop service stopped")
        return json.loads(text)
    def close(self):
        pass
'''


@pytest.fixture
def jtop_service(tmp_path: Path) -> Iterator[Path]:
    """A root whose run/jtop.sock accepts connections, as while jtop's service runs."""
    root = tmp_path / "r"
    (root / "run").mkdir(parents=True)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(root / "run" / "jtop.sock"))
    server.listen(4)
    yield root
    server.close()


def jtop_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stats: dict[str, object] | str) -> Path:
    lib = tmp_path / "lib"
    put(lib, "jtop/__init__.py", JTOP_CLIENT)
    monkeypatch.syspath_prepend(str(lib))
    monkeypatch.delitem(sys.modules, "jtop", raising=False)
    stats_file = put(tmp_path, "stats.json", json.dumps(stats) if isinstance(stats, dict) else stats)
    monkeypatch.setenv("FAKE_JTOP_STATS", str(stats_file))
    return stats_file


def test_no_jtop_socket_reads_sysfs(orin: Path) -> None:
    health = HealthReader(orin)
    assert health.source == "sysfs" and health.gpu_pct() == 73.4


def test_a_stale_or_fake_socket_file_is_not_jtop(tmp_path: Path) -> None:
    root = tmp_path / "r"
    (root / "run").mkdir(parents=True)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(root / "run" / "jtop.sock"))  # bound, never listening: connections are refused
    assert not jtop_socket_answers(root)
    stale.close()
    (root / "run" / "jtop.sock").unlink()
    put(root, "run/jtop.sock", "")  # a plain file
    assert not jtop_socket_answers(root)


def test_jtop_answering_but_not_installed_reads_sysfs(jtop_service: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "jtop", None)  # `import jtop` fails, as without jetson-stats
    assert jtop_socket_answers(jtop_service)
    assert HealthReader(jtop_service).source == "sysfs"


def test_jtop_answering_gives_gpu_and_temperature_then_sysfs_when_it_stops(
    jtop_service: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    put(jtop_service, "sys/devices/gpu.0/load", "250\n")
    put(jtop_service, "sys/class/thermal/thermal_zone0/temp", "41000\n")
    stats = jtop_installed(tmp_path, monkeypatch, {"GPU": 63.0, "Temp CPU": 48.5, "Temp GPU": 51.0, "Temp PMIC": -256.0, "RAM": 0.4})
    health = HealthReader(jtop_service)
    assert health.source == "jtop"
    assert health.gpu_pct() == 63.0 and health.temperature_c() == 51.0
    assert HealthReader(jtop_service, use_jtop=False).gpu_pct() == 25.0
    stats.write_text("gone")  # the service went away: one warning, then sysfs for good
    assert health.gpu_pct() == 25.0 and health.source == "sysfs" and health.temperature_c() == 41.0
