"""`pip install` of the built wheel, not the editable checkout, on the lowest and highest Python.

What a user gets from `pip install edgehive-*.whl` is what this builds: a wheel from a clean
copy of the source tree, installed with its dependencies (at the versions of constraints.txt)
into a fresh venv of CPython 3.10 and of 3.13, the ends of `requires-python` (from pyenv, where
this machine has them). Each venv then runs the commands a new user types: `edgehive --help`,
`edgehive models` (which needs the manifest shipped as package data), real detections on the
bundled photo with both backends, and on the highest Python a short `edgehive up` whose demo
camera's frames come back as detections. pip's own cache keeps the second run fast.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import Recorder, free_port, port_answers, wait_until
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from vision_fixtures import MODELS_DIR

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
CONSTRAINTS = ROOT / "constraints.txt"
LOWEST, HIGHEST = "3.10", "3.13"
PIP_TIMEOUT_S = 900
# Everything under the source tree that is not source: the wheel must be built from what git has.
NOT_SOURCE = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", "*.tflite", "*.onnx",
                                    ".edgehive", ".mypy_cache", ".ruff_cache", ".pytest_cache", "cache")


def python_for(minor: str) -> Path | None:
    """pyenv's CPython `minor`, or this interpreter when it is that version; None where absent."""
    if f"{sys.version_info.major}.{sys.version_info.minor}" == minor:
        return Path(sys.executable)
    for root in (Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions", Path("/root/.pyenv/versions")):
        for version in sorted(root.glob(f"{minor}.*")) if root.is_dir() else []:
            if (version / "bin" / "python").is_file():
                return version / "bin" / "python"
    return None


def pinned(minor: str) -> dict[str, str]:
    """constraints.txt's pins for Python `minor`, by project (markers evaluated for it)."""
    pins: dict[str, str] = {}
    for line in CONSTRAINTS.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"python_version": minor}):
                pins[canonicalize_name(req.name)] = str(req.specifier).removeprefix("==")
    return pins


def run(cmd: list[str | Path], timeout: float = 120, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, **kwargs)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))} exited {proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel of a clean copy of the source tree (a build in the tree would reuse its build/)."""
    tmp = tmp_path_factory.mktemp("wheel")
    shutil.copytree(ROOT, tmp / "src", symlinks=True, ignore=NOT_SOURCE)
    run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", tmp / "dist", tmp / "src"], timeout=PIP_TIMEOUT_S)
    [built] = (tmp / "dist").glob("edgehive-*.whl")
    return built


@pytest.fixture(scope="module", params=[LOWEST, HIGHEST])
def venv(request: pytest.FixtureRequest, wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh venv of that Python with the wheel and its `onnx` extra installed as constrained."""
    python = python_for(request.param)
    if python is None:
        pytest.skip(f"no CPython {request.param} on this machine (pyenv)")
    folder = tmp_path_factory.mktemp(f"py{request.param}") / "venv"
    run([python, "-m", "venv", folder])
    run([folder / "bin" / "python", "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-c", CONSTRAINTS, f"{wheel}[onnx]"],
        timeout=PIP_TIMEOUT_S)
    yield folder


def installed(venv: Path) -> dict[str, str]:
    out = run([venv / "bin" / "python", "-m", "pip", "list", "--format", "freeze", "--disable-pip-version-check"]).stdout
    return {canonicalize_name(name): version for name, _, version in (line.partition("==") for line in out.splitlines())}


def test_the_wheel_installs_the_pinned_versions_and_its_commands_run(venv: Path, tmp_path: Path) -> None:
    minor = run([venv / "bin" / "python", "-c", "import sys; print(f'{sys.version_info[0]}.{sys.version_info[1]}')"]).stdout.strip()
    versions, pins = installed(venv), pinned(minor)
    for project in ("numpy", "opencv-python-headless", "ai-edge-litert", "onnxruntime", "pydantic", "paho-mqtt"):
        assert project in pins, f"constraints.txt pins no {project} for Python {minor}"
        assert versions.get(project) == pins[project], f"{project}: installed {versions.get(project)}, constraints.txt says {pins[project]}"

    edgehive = venv / "bin" / "edgehive"
    assert "usage: edgehive" in run([edgehive, "--help"]).stdout
    assert run([edgehive, "models", "--help"]).stdout.startswith("usage: edgehive models ")
    # A folder without a manifest of its own: `edgehive models` reads the one in the package.
    # The models were fetched once for the suite; here they are checked against their sha256.
    models = tmp_path / "models"
    models.mkdir()
    for path in [*MODELS_DIR.glob("*.tflite"), *MODELS_DIR.glob("*.onnx")]:
        shutil.copy(path, models)
    listed = run([edgehive, "models", "--models-dir", models], cwd=tmp_path).stdout.splitlines()
    assert [line.split()[:2] for line in listed] == [
        ["present", "face"], ["present", "person"], ["present", "face-far"], ["present", "objects"], ["present", "centerface"]]

    # Both backends detect on the photo the package ships (sensors/demo), in this Python.
    script = (
        "import sys, cv2, edgehive\n"
        "from pathlib import Path\n"
        "from edgehive.agents.detection import load_detector\n"
        "from edgehive.agents.inference import create_backend\n"
        "from edgehive.agents.modelstore import load_manifest\n"
        "photo = cv2.imread(str(Path(edgehive.__file__).parent / 'sensors' / 'demo' / '01-astronaut.jpg'))\n"
        "manifest = load_manifest(Path(sys.argv[1]))\n"
        "for name, backend in (('objects', 'litert'), ('centerface', 'onnx')):\n"
        "    found = load_detector(manifest.get(name), create_backend({'type': backend})).detect(photo)\n"
        "    print(name, found[0].label if found else '-')\n"
    )
    detected = run([venv / "bin" / "python", "-c", script, models], cwd=tmp_path)
    assert detected.stdout.split("\n")[:2] == ["objects person", "centerface face"], detected.stdout
    assert "XNNPACK" not in detected.stderr, "LiteRT's INFO line reached stderr"

    if minor == HIGHEST:
        short_up(edgehive, models, tmp_path)


def short_up(edgehive: Path, models: Path, tmp_path: Path) -> None:
    """`edgehive up` from the installed package until the demo camera's photo comes back as a
    detection of a person and the live table shows the node, then Ctrl-C: a clean stop, no
    traceback, no escape codes in a pipe."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEHIVE_")}
    env.update(EDGEHIVE_MQTT_URL=f"mqtt://127.0.0.1:{port}", EDGEHIVE_MODELS_DIR=str(models), EDGEHIVE_NODE_ID="wheel",
               EDGEHIVE_STATE_DIR=str(tmp_path / "state"), EDGEHIVE_TELEMETRY_FILE=str(tmp_path / "telemetry.lp"),
               EDGEHIVE_STATUS_EVERY_S="0.5")
    up = subprocess.Popen([str(edgehive), "up", "--no-demo-sensors"], env=env, cwd=tmp_path,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out: list[str] = []
    err: list[str] = []
    # Both pipes are read as the lines come: the test waits on the table, and a full pipe would stall `up`.
    readers = [threading.Thread(target=sink.extend, args=(stream,), daemon=True) for stream, sink in ((up.stdout, out), (up.stderr, err))]
    for reader in readers:
        reader.start()
    try:
        wait_until(lambda: port_answers(port), 30, "the embedded broker")
        recorder = Recorder(f"mqtt://127.0.0.1:{port}", "edgehive/v1")
        try:
            found = wait_until(lambda: next((r for r in recorder.json("results/detections/demo") if r.get("ok")), None), 90, "a demo detection")
        finally:
            recorder.close()
        assert found["output"]["detections"][0]["label"] == "person"
        # The table is drawn every 0.5 s: the first one after the agent's birth names it.
        wait_until(lambda: any(line.startswith("nodes: 1 online / 1 known") for line in list(out)), 30, "the node in the live table")
    finally:
        up.send_signal(signal.SIGINT)
        up.wait(timeout=60)
        for reader in readers:
            reader.join(timeout=10)
        for pipe in (up.stdout, up.stderr):
            if pipe is not None:
                pipe.close()
    stdout, stderr = "".join(out), "".join(err)
    assert up.returncode == 0, stderr[-3000:]
    assert "Traceback" not in stderr and "XNNPACK" not in stderr, stderr[-3000:]
    assert "\x1b[" not in stdout, "into a pipe the status table is plain lines"


# Where ai-edge-litert publishes wheels for CPython 3.10-3.13 (checked with `pip download --no-deps
# --only-binary=:all: --platform P --python-version V ai-edge-litert`): the marker must ask for it
# there, and nowhere else (a requirement without a wheel would fail the whole install).
LITERT_WHEELS = {
    ("Linux", "x86_64"): True, ("Linux", "aarch64"): True, ("Darwin", "arm64"): True, ("Windows", "AMD64"): True,
    ("Linux", "armv7l"): False, ("Linux", "armv6l"): False, ("Darwin", "x86_64"): False,
}


def test_litert_is_required_exactly_where_it_has_wheels() -> None:
    text = (ROOT / "pyproject.toml").read_text()
    [line] = [line for line in text.splitlines() if line.strip().startswith('"ai-edge-litert')]
    litert = Requirement(line.strip().rstrip(",").strip('"'))
    assert litert.marker is not None
    for (system, machine), has_wheels in LITERT_WHEELS.items():
        assert litert.marker.evaluate({"platform_system": system, "platform_machine": machine}) is has_wheels, (system, machine)
