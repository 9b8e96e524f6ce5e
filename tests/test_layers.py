"""The import layers, read from the source: no service imports another service.

Services (agents/, coordinator/, sensors/, telemetry/, broker/, frigate/) talk over MQTT, so the
contracts between them live in schemas/; a service that imports another's module would
share a definition the other side can change without noticing (as when the coordinator
validated fusion tuning with the agent's own models). The ground floor every service may
import: schemas/ and edgehive's bus, paho client, retained-config reader (Home Assistant), gc thresholds, config file, errors, settings (and their sources), heap release, deferred standard modules, no pydantic plugins, signals and logs. The ground floor imports
only itself. `edgehive`'s commands (cli, up, healthcheck, ...) are the roof: they start the
services, so they may import any of them, and no service imports them.

Every import counts, also one inside a function (a lazy import is still a dependency).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "edgehive"
SERVICES = ("agents", "coordinator", "sensors", "telemetry", "broker", "frigate")
GROUND = ("schemas", "gctune", "configfile", "bus", "pahoclient", "haretained", "errors", "settings", "envsettings", "heap", "lazymodules", "pydanticplugins", "signals", "logs")  # under edgehive.
GROUND_FILES = ("gctune.py", "configfile.py", "bus.py", "pahoclient.py", "haretained.py", "errors.py", "settings.py", "envsettings.py", "heap.py", "lazymodules.py", "pydanticplugins.py", "signals.py", "logs.py", "__init__.py")  # in edgehive/


def folder(name: str) -> Path:
    """The folder of `edgehive.<name>`: a top-level folder of the repository (or under edgehive/)."""
    for candidate in (REPO / name, REPO / PACKAGE / name):
        if candidate.is_dir():
            return candidate
    raise AssertionError(f"no folder for {PACKAGE}.{name}")


def modules_of(top: str) -> Iterator[tuple[Path, str]]:
    """(file, its dotted package) for every .py file of `edgehive.<top>`."""
    root = folder(top)
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        package = ".".join((PACKAGE, top, *parts[:-1]))
        yield path, package


def imported(path: Path, package: str) -> Iterator[tuple[int, str]]:
    """(line, dotted name) of everything the file imports, relative imports resolved;
    `from edgehive import coordinator` as edgehive.coordinator."""
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                if node.level - 1 >= len(base):
                    raise AssertionError(f"{path}:{node.lineno}: relative import beyond the top-level package")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module == PACKAGE:
                for alias in node.names:
                    yield node.lineno, f"{module}.{alias.name}"
            else:
                yield node.lineno, module


def layer(name: str) -> str | None:
    """Which part of edgehive a dotted name belongs to: 'agents', 'schemas', 'bus', ...; None
    outside edgehive or for a name that is not a module (`from edgehive import __version__`)."""
    parts = name.split(".")
    if parts[0] != PACKAGE or len(parts) < 2:
        return None
    top = parts[1]
    if top in SERVICES or top == "schemas":
        return top
    return top if (REPO / PACKAGE / f"{top}.py").is_file() or (REPO / PACKAGE / top).is_dir() else None


def offenders(files: Iterator[tuple[Path, str]], own: str | None, allowed: tuple[str, ...]) -> list[str]:
    found = []
    for path, package in files:
        for line, name in imported(path, package):
            target = layer(name)
            if target is not None and target != own and target not in allowed:
                where = path.relative_to(REPO) if path.is_relative_to(REPO) else path
                found.append(f"{where}:{line} imports {name}")
    return sorted(set(found))


def test_no_service_imports_another_service_or_the_commands() -> None:
    found = [offence for service in SERVICES for offence in offenders(modules_of(service), service, GROUND)]
    assert not found, "a service imports outside itself and the ground floor (schemas/, edgehive.gctune/configfile/bus/pahoclient/haretained/errors/settings/envsettings/heap/lazymodules/pydanticplugins/signals/logs):\n" + "\n".join(found)


def test_the_ground_floor_imports_only_the_ground_floor() -> None:
    schemas = offenders(modules_of("schemas"), "schemas", ("errors",))  # edgehive/errors.py imports nothing
    edgehive = [(REPO / PACKAGE / name, PACKAGE) for name in GROUND_FILES]
    base = offenders(iter(edgehive), None, GROUND)
    found = schemas + base
    assert not found, "the ground floor imports a service or a command:\n" + "\n".join(found)


def test_the_walk_sees_relative_lazy_and_package_imports(tmp_path: Path) -> None:
    """The check itself can fail: each way of reaching another service is caught."""
    source = tmp_path / "probe.py"
    source.write_text(
        "from ..agents.fusion import KalmanConfig\n"
        "from edgehive import coordinator\n"
        "from edgehive import __version__\n"
        "from edgehive.schemas import Topics\n"
        "def later():\n"
        "    import edgehive.sensors.simulated\n"
        "    from edgehive.cli import main\n"
    )
    found = offenders(iter([(source, "edgehive.telemetry")]), "telemetry", GROUND)
    assert [line.split(" imports ")[1] for line in found] == [
        "edgehive.agents.fusion", "edgehive.coordinator", "edgehive.sensors.simulated", "edgehive.cli",
    ]
