"""The light services do not load numpy, OpenCV or an HTTP client they never use.

Each of these imports costs a service 10 to 25 MB of RSS (bench/footprint.py); on a 1 GB
Pi running every service of `edgehive up` that is most of the memory they hold. A fresh
interpreter goes the way `edgehive <command>` goes (the CLI's parser for that command, then
the service's own module) and says which of the heavy modules it ended up with.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from vision_fixtures import models_dir  # noqa: F401 - fixture

HEAVY = ("numpy", "cv2", "urllib3", "ai_edge_litert", "onnxruntime", "pydantic_settings", "asyncio", "dotenv")

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
        ("frigate", "edgehive.frigate.service"),
    ],
)
def test_light_service_imports_nothing_heavy(command: str, module: str) -> None:
    assert heavy_modules_after(command, module) == []


# What loading ssl and urllib.request for real brings in (edgehive/lazymodules.py), and what
# pydantic's plugin search imports (edgehive/pydanticplugins.py).
DEFERRED = ("_ssl", "http.client", "importlib.metadata")

DEFERRED_PROBE = """
import contextlib, io, sys
from edgehive import cli
with contextlib.redirect_stdout(io.StringIO()):
    try:
        cli.main([{command!r}, "--help"])
    except SystemExit:
        pass
import {module}
print(",".join(m for m in {deferred!r} if m in sys.modules))
import ssl, urllib.request, paho.mqtt.client
context = ssl.create_default_context()  # a later use: the real module, and paho holds the same one
print(type(context).__name__, paho.mqtt.client.ssl is ssl, hasattr(urllib.request, "HTTPSHandler"),
      ",".join(m for m in {deferred!r} if m in sys.modules))
"""


@pytest.mark.parametrize(("command", "module"), [("coordinator", "edgehive.coordinator.service"), ("sensor", "edgehive.sensors.publisher"),
                                                 ("agent", "edgehive.agents.agent")])
def test_the_coordinator_the_sensors_and_the_agent_load_ssl_and_urllib_only_when_used(command: str, module: str) -> None:
    """paho imports `ssl` and `urllib.request`. These services talk plain MQTT unless their
    settings say TLS, so both stay unloaded (about 1.8 MB): an import hands out a stand-in whose
    code runs at its first use. Used, they are the real modules, HTTPS included. Nor does
    pydantic's plugin search import `importlib.metadata` (1.6 MB more)."""
    code = DEFERRED_PROBE.format(command=command, module=module, deferred=DEFERRED)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    before, after = done.stdout.splitlines()[-2:]
    assert before == ""
    assert after == "SSLContext True True _ssl,http.client"


def test_the_probe_sees_a_heavy_import() -> None:
    """The camera needs OpenCV: the same probe reports it, so an empty list above means something."""
    assert "cv2" in heavy_modules_after("camera", "edgehive.sensors.camera")


AGENT_PROBE = """
import json, sys
from pathlib import Path
from edgehive.agents.inference import available_backends
from edgehive.agents.probe import probe_device
from edgehive.agents.vision import load_pool
pool = load_pool(Path({models_dir!r}), {models!r}, "auto", 1, 2)
print(json.dumps([pool.models(), available_backends(), probe_device().accelerators, "onnxruntime" in sys.modules,
                  "tarfile" in sys.modules]))
"""


@pytest.mark.parametrize(("models", "imports_onnxruntime"), [(["face"], False), (["face", "centerface"], True)])
def test_the_agent_imports_onnxruntime_only_for_an_onnx_model(models_dir: Path, models: list[str], imports_onnxruntime: bool) -> None:
    """ONNX Runtime costs an agent about 25 MB: one with only TFLite models loads the model, fills
    in its capabilities (backends, accelerators) and still lists `onnx` as a backend, without it.
    Nor does loading models import what only fetching them needs (tarfile)."""
    code = AGENT_PROBE.format(models_dir=str(models_dir), models=models)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    loaded, backends, accelerators, imported, tarfile = json.loads(done.stdout.strip().splitlines()[-1])
    assert loaded == sorted(models)
    assert "litert" in backends and "onnx" in backends  # installed here, so listed either way
    assert accelerators == []  # no NVIDIA GPU here: onnxruntime's providers are not asked for
    assert imported is imports_onnxruntime
    assert not tarfile  # only fetching models (npm tarballs) needs it
