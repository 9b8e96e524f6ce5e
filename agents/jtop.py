"""GPU load and temperatures from jetson-stats (`jtop`), where its service runs.

jetson-stats is how Jetson users read their boards: its `jtop` service (run by systemd on the
host) samples the GPU, the thermal zones and the power rails, and serves them on the Unix socket
`/run/jtop.sock`; a container sees it when that socket is mounted in. balenaOS runs no such
service, so there the agent reads sysfs itself (health.py) as it always has. Where the socket
answers and the `jtop` client is installed (`pip install jetson-stats`, a non-balena Jetson),
the agent takes the GPU load and temperatures from jtop instead, the figures `jtop` shows its
user. Any failure of the client falls back to sysfs for good, with one log line.
"""

from __future__ import annotations

import importlib
import logging
import socket
import stat
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

JTOP_SOCKET = "run/jtop.sock"  # under the probed root, like the sysfs paths


def jtop_socket_answers(root: Path) -> bool:
    """True when `root/run/jtop.sock` is a Unix socket that accepts a connection (a service
    listens on it): a stale socket file left by a stopped service does not count."""
    path = root / JTOP_SOCKET
    try:
        if not stat.S_ISSOCK(path.stat().st_mode):
            return False
    except OSError:
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


class JtopReader:
    """The jtop client, started once; `stats()` is its latest sample."""

    def __init__(self, client: Any) -> None:
        self._client = client

    @classmethod
    def open(cls, root: Path) -> JtopReader | None:
        """A started client when the service answers and jetson-stats is installed, else None."""
        if not jtop_socket_answers(root):
            return None
        try:
            module = importlib.import_module("jtop")
        except ImportError:
            log.info("jtop's service answers on %s but jetson-stats is not installed here: reading sysfs", root / JTOP_SOCKET)
            return None
        try:
            client = module.jtop()
            client.start()
        except Exception as exc:  # the client raises its own JtopException, among others
            log.warning("jtop's service answers but its client failed (%s): reading sysfs", exc)
            return None
        log.info("reading GPU load and temperatures from jtop (%s)", root / JTOP_SOCKET)
        return cls(client)

    def stats(self) -> dict[str, Any]:
        stats = self._client.stats
        return dict(stats) if isinstance(stats, dict) else {}

    def close(self) -> None:
        try:
            self._client.close()
        except Exception:  # closing a client whose service went away may raise anything
            pass


def jtop_gpu_pct(stats: dict[str, Any]) -> float | None:
    """jtop's `GPU` entry: the GPU load in percent."""
    value = stats.get("GPU")
    return min(100.0, max(0.0, float(value))) if isinstance(value, (int, float)) else None


def jtop_temperature_c(stats: dict[str, Any]) -> float | None:
    """The hottest of jtop's `Temp …` entries (CPU, GPU, SoC zones), in °C; jtop reports an
    absent or offline sensor as a sentinel below -200, which is skipped."""
    temps = [float(v) for k, v in stats.items() if k.lower().startswith("temp") and isinstance(v, (int, float))]
    plausible = [t for t in temps if -40.0 <= t <= 150.0]
    return max(plausible) if plausible else None
