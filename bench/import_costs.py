"""What the modules on the coordinator's start path cost it, and what deferring them saves.

bench/footprint.py reads the whole stack; this script takes the coordinator's start apart. One
fresh interpreter per variant and run goes the way `edgehive coordinator` starts: the CLI's
parser for the command, the settings read (no broker needed), the service's module imported, the
heap that starting freed returned (edgehive/heap.py). It then reports its RSS and which of the
modules in question it holds. The variants differ only in what runs first:

- `nothing deferred`: the start before the fourth round (every module imported for real, pydantic's
  plugin search included);
- `ssl deferred`, `+ urllib.request deferred`: edgehive/lazymodules.py, with pydantic's plugin
  search;
- `+ no pydantic plugin search`: edgehive/pydanticplugins.py too, as the CLI does:
  what the coordinator and the sensors run since the fourth round;
- `+ hashlib, hmac, secrets deferred` (measurement only, not applied): OpenSSL's libcrypto, which
  paho's `hashlib` and pydantic's `secrets` (through `hmac`) load, not loaded. For the
  coordinator, the same again after `secrets.token_hex(4)`, which its constructor calls.

Variants alternate within each round, so a busy machine weighs on all of them alike.

    .venv/bin/python bench/import_costs.py [--runs 5] [--command coordinator|sensor]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WATCHED = ("_ssl", "http.client", "urllib.request", "importlib.metadata", "_hashlib", "email.parser", "zipfile")

_PYDANTICS_SEARCH = "import pydantic.plugin._loader  # pydantic's own loader first: the CLI's stand-in then stands aside"
_DEFER = "lazymodules.defer('ssl', 'urllib.request')"

VARIANTS: dict[str, str] = {
    "nothing deferred": _PYDANTICS_SEARCH,
    "ssl deferred": "lazymodules.defer('ssl')\n" + _PYDANTICS_SEARCH,
    "+ urllib.request deferred": _DEFER + "\n" + _PYDANTICS_SEARCH,
    "+ no pydantic plugin search": _DEFER,
    "+ hashlib, hmac, secrets deferred": "lazymodules.defer('ssl', 'urllib.request', 'hashlib', 'hmac', 'secrets')",
}

_CHILD = """
import json, sys
from edgehive import lazymodules
{prelude}
from edgehive import cli, heap

def rss_mib():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")

def loaded(name):
    return name in sys.modules and not lazymodules.deferred(name)

command = sys.argv[1]
args = cli.build_parser(only=command).parse_args([command, "--mqtt-url", "mqtt://127.0.0.1:1"])
service = {{"coordinator": "edgehive.coordinator.service", "sensor": "edgehive.sensors.publisher"}}[command]
model = cli.settings_model(command)
__import__(service)
settings = model()
heap.release_startup_garbage()
result = {{"rss_mib": rss_mib(), "loaded": [m for m in json.loads(sys.argv[2]) if loaded(m)]}}
if "secrets" in sys.argv[3:]:
    import secrets
    secrets.token_hex(4)  # what Coordinator() does first
    result |= {{"rss_after_token_hex_mib": rss_mib(), "loaded_after_token_hex": [m for m in json.loads(sys.argv[2]) if loaded(m)]}}
print(json.dumps(result))
"""


def measure(command: str, prelude: str) -> dict[str, object]:
    extra = ["secrets"] if "'secrets'" in prelude and command == "coordinator" else []
    done = subprocess.run([sys.executable, "-c", _CHILD.format(prelude=prelude), command, json.dumps(WATCHED), *extra],
                          cwd="/", capture_output=True, text=True, check=True)
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="fresh interpreters per variant")
    parser.add_argument("--command", choices=("coordinator", "sensor"), default="coordinator")
    args = parser.parse_args(argv)
    results: dict[str, list[dict[str, object]]] = {name: [] for name in VARIANTS}
    for _ in range(args.runs):
        for name, prelude in VARIANTS.items():
            results[name].append(measure(args.command, prelude))
    print(f"command: {' '.join([sys.executable, *sys.argv])}")
    print(f"`edgehive {args.command}` start path, RSS in MiB after the heap release: median (min-max) of {args.runs} fresh interpreters")
    base = statistics.median(float(r["rss_mib"]) for r in results["nothing deferred"])  # type: ignore[arg-type]
    for name, runs in results.items():
        rss = [float(r["rss_mib"]) for r in runs]  # type: ignore[arg-type]
        median = statistics.median(rss)
        print(f"  {name:<36}{median:6.1f} ({min(rss):.1f}-{max(rss):.1f})  {median - base:+5.1f}  loaded: {', '.join(runs[-1]['loaded']) or '-'}")  # type: ignore[arg-type]
        if "rss_after_token_hex_mib" in runs[-1]:
            after = [float(r["rss_after_token_hex_mib"]) for r in runs]  # type: ignore[arg-type]
            print(f"  {'  then secrets.token_hex(4)':<36}{statistics.median(after):6.1f} ({min(after):.1f}-{max(after):.1f})  "
                  f"{statistics.median(after) - base:+5.1f}  loaded: {', '.join(runs[-1]['loaded_after_token_hex']) or '-'}")  # type: ignore[arg-type]
    return 0


if __name__ == "__main__":
    sys.exit(main())
