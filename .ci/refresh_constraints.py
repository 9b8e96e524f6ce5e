"""Rewrite constraints.txt: the dependency versions edgehive is installed and tested with.

`./edgehive.sh constraints [PYTHON ...]` runs this. For each Python (default: every CPython
3.10-3.13 under pyenv, plus the one running this), it makes a throw-away venv and asks pip what
`pip install '.[onnx]'` would install there today (`--dry-run --report`: nothing is installed).
A package resolved to one version everywhere is pinned plainly; one whose newest release has
left an older Python behind (numpy, onnxruntime) is pinned per Python with a marker.
`./edgehive.sh up` and `test` install with `-c constraints.txt`, and tests/test_install.py installs
the built wheel with it on the lowest and highest Python, so what is pinned is what is tested.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / "constraints.txt"
SUPPORTED = ("3.10", "3.11", "3.12", "3.13")


def pythons() -> list[Path]:
    """One interpreter per supported minor version: pyenv's, else this one's."""
    found: dict[str, Path] = {}
    for root in (Path.home() / ".pyenv" / "versions", Path("/root/.pyenv/versions")):
        for version in sorted(root.glob("3.*")) if root.is_dir() else []:
            minor = ".".join(version.name.split(".")[:2])
            if minor in SUPPORTED and (version / "bin" / "python").is_file():
                found.setdefault(minor, version / "bin" / "python")
    this = f"{sys.version_info.major}.{sys.version_info.minor}"
    found.setdefault(this, Path(sys.executable))
    return [found[m] for m in sorted(found, key=lambda m: tuple(int(p) for p in m.split(".")))]


def resolve(python: Path) -> tuple[str, dict[str, str]]:
    """(minor version, {project: version}) that pip would install for `.[onnx]` with `python`."""
    with tempfile.TemporaryDirectory(prefix="edgehive-constraints-") as tmp:
        venv = Path(tmp) / "venv"
        subprocess.run([str(python), "-m", "venv", str(venv)], check=True)
        minor = subprocess.run([str(venv / "bin" / "python"), "-c", "import sys; print(f'{sys.version_info[0]}.{sys.version_info[1]}')"],
                               check=True, capture_output=True, text=True).stdout.strip()
        report = Path(tmp) / "report.json"
        subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--dry-run",
                        "--ignore-installed", "--report", str(report), f"{ROOT}[onnx]"], check=True)
        installs = json.loads(report.read_text())["install"]
    pins = {item["metadata"]["name"].lower().replace("_", "-"): item["metadata"]["version"] for item in installs}
    pins.pop("edgehive", None)
    return minor, pins


def render(resolved: dict[str, dict[str, str]]) -> str:
    by_project: dict[str, dict[str, str]] = defaultdict(dict)
    for minor, pins in resolved.items():
        for project, version in pins.items():
            by_project[project][minor] = version
    lines = [
        "# The versions edgehive is installed and tested with (pip install -c constraints.txt).",
        f"# Resolved for Python {', '.join(resolved)} by `./edgehive.sh constraints`; do not edit by hand.",
    ]
    order = sorted(resolved, key=_key)
    for project in sorted(by_project):
        versions = by_project[project]
        if len(set(versions.values())) == 1 and len(versions) == len(resolved):
            lines.append(f"{project}=={next(iter(versions.values()))}")
            continue
        # One line per run of consecutive Pythons that resolved the same version.
        runs: list[tuple[str, list[str]]] = []
        for minor in order:
            version = versions.get(minor)
            if version is not None and runs and runs[-1][0] == version and order.index(runs[-1][1][-1]) == order.index(minor) - 1:
                runs[-1][1].append(minor)
            elif version is not None:
                runs.append((version, [minor]))
        for version, minors in runs:
            lines.append(f"{project}=={version}; {_marker(minors[0], minors[-1], order)}")
    return "\n".join(lines) + "\n"


def _key(minor: str) -> tuple[int, ...]:
    return tuple(int(p) for p in minor.split("."))


def _marker(low: str, high: str, order: list[str]) -> str:
    """The python_version marker of the Pythons low..high (inclusive) among `order`."""
    if low == high:
        return f'python_version == "{low}"'
    if high == order[-1]:
        return f'python_version >= "{low}"'
    if low == order[0]:
        return f'python_version <= "{high}"'
    return f'python_version >= "{low}" and python_version <= "{high}"'


def main(argv: list[str]) -> int:
    chosen = [Path(p) for p in argv] or pythons()
    resolved: dict[str, dict[str, str]] = {}
    for python in chosen:
        minor, pins = resolve(python)
        print(f"Python {minor}: {len(pins)} packages", file=sys.stderr)
        resolved[minor] = pins
    TARGET.write_text(render(resolved))
    print(f"wrote {TARGET}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
