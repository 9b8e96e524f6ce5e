"""The light services do not load numpy, OpenCV or an HTTP client they never use.

Each of these imports costs a service 10 to 25 MB of RSS (bench/footprint.py); on a 1 GB
Pi running every service of `edgehive up` that is most of the memory they hold. A fresh
interpreter goes the way `edgehive <command>` goes (the CLI's parser for that command, then
the service's own module) and says which of the heavy modules it ended up with.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("numpy", "cv2", "urllib3", "ai_edge_litert", "onnxruntime")

PROBE = """
import contextlib, io, sys
from edgehive import cli
with contextlib.redirect_stdout(io.StringIO()):
    try:
        cli.main([{command!r}, "--help"])  # the parser `edgehive {command}` builds, settings model included
    except SystemExit:
        pass
import {module}
print(",".join(m for m in {heavy!r} if m in sys.modules))
"""


def heavy_modules_after(command: str, module: str) -> list[str]:
    code = PROBE.format(command=command, module=module, heavy=HEAVY)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    return [m for m in done.stdout.strip().split(",") if m]


@pytest.mark.parametrize(
    ("command", "module"),
    [
        ("coordinator", "edgehive.coordinator.service"),
        ("sink", "edgehive.telemetry.sink"),
        ("sensor", "edgehive.sensors.publisher"),
        ("sensor", "edgehive.sensors.simulated"),  # the demo set and every simulated sensor: pure Python, no numpy
        ("up", "edgehive.up"),
    ],
)
def test_light_service_imports_nothing_heavy(command: str, module: str) -> None:
    assert heavy_modules_after(command, module) == []


def test_the_probe_sees_a_heavy_import() -> None:
    """The camera needs OpenCV: the same probe reports it, so an empty list above means something."""
    assert "cv2" in heavy_modules_after("camera", "edgehive.sensors.camera")
