"""Real time-series servers for telemetry tests: Debian's InfluxDB 1.x and VictoriaMetrics.

Each binds free ports found at run time, keeps its data in the test's temp folder, and is
polled until it answers; nothing waits a fixed time. `InfluxDB.kill()` then `start()` brings
the same server back on the same ports with the same data, as after a crash.
Import the fixtures into a test module: `from influx_harness import influxdb  # noqa: F401`.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import free_port, port_answers, wait_until

INFLUXD = shutil.which("influxd") or "/usr/bin/influxd"
VICTORIA_METRICS = shutil.which("victoria-metrics") or "/usr/bin/victoria-metrics"

_INFLUXD_CONFIG = """\
reporting-enabled = false
bind-address = "127.0.0.1:{rpc_port}"
[meta]
  dir = "{dir}/meta"
[data]
  dir = "{dir}/data"
  wal-dir = "{dir}/wal"
  query-log-enabled = false
[http]
  bind-address = "127.0.0.1:{port}"
  log-enabled = false
[monitor]
  store-enabled = false
[logging]
  level = "warn"
  suppress-logo = true
"""


def _http(method: str, url: str, data: bytes | None = None, timeout_s: float = 10.0) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=data, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


class _Server:
    """A server process with its files under `workdir`, on a free port, polled until healthy."""

    name = "server"
    health = ("/health", 200)

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        workdir.mkdir(parents=True, exist_ok=True)
        self.log = workdir / f"{self.name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def argv(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(self.argv(), stdout=log, stderr=subprocess.STDOUT)
        path, status = self.health
        wait_until(lambda: self.proc.poll() is not None or (port_answers(self.port) and _http("GET", self.url + path)[0] == status),  # type: ignore[union-attr]
                   30, f"{self.name} to answer {path}")
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} failed to start: {self.log.read_text()[-2000:]}")

    def kill(self) -> None:
        """SIGKILL, as a crash or a pulled plug."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()


class InfluxDB(_Server):
    """`influxd` 1.x with its own config, data and ports under `workdir`; after `kill()` its WAL
    keeps what was acknowledged, and `start()` brings it back on the same ports."""

    name = "influxd"
    health = ("/ping", 204)

    def __init__(self, workdir: Path, database: str = "edgehive") -> None:
        super().__init__(workdir)
        self.database = database
        self.config = workdir / "influxdb.conf"
        self.config.write_text(_INFLUXD_CONFIG.format(rpc_port=free_port(), port=self.port, dir=workdir))

    def argv(self) -> list[str]:
        return [INFLUXD, "-config", str(self.config)]

    def create_database(self) -> None:
        self.query(f'CREATE DATABASE "{self.database}"', method="POST")

    def query(self, q: str, method: str = "GET") -> dict[str, Any]:
        """InfluxQL over HTTP `/query`; raises on an error in any statement."""
        params = urllib.parse.urlencode({"db": self.database, "q": q, "epoch": "ns"})
        status, body = _http(method, f"{self.url}/query?{params}")
        answer = json.loads(body)
        errors = [r["error"] for r in answer.get("results", []) if "error" in r] + ([answer["error"]] if "error" in answer else [])
        if status >= 300 or errors:
            raise AssertionError(f"InfluxQL {q!r} failed ({status}): {errors or body[:300]!r}")
        return answer

    def series(self, q: str) -> list[dict[str, Any]]:
        """Every series of every statement of `q` (name, tags, columns, values)."""
        return [s for result in self.query(q)["results"] for s in result.get("series", [])]

    def rows(self, q: str) -> list[dict[str, Any]]:
        """The points of `q` as dicts of column → value (tags of GROUP BY merged in)."""
        out = []
        for s in self.series(q):
            for values in s["values"]:
                out.append({**s.get("tags", {}), **dict(zip(s["columns"], values))})
        return out


class VictoriaMetrics(_Server):
    """VictoriaMetrics single-node: speaks the InfluxDB v2 write API (`/api/v2/write`)."""

    name = "victoria-metrics"

    def argv(self) -> list[str]:
        # -dedup.minScrapeInterval: one sample per series and ms, so a replay overwrites, as in InfluxDB.
        return [VICTORIA_METRICS, f"-httpListenAddr=127.0.0.1:{self.port}", f"-storageDataPath={self.workdir / 'data'}",
                "-loggerLevel=ERROR", "-retentionPeriod=100y", "-dedup.minScrapeInterval=1ms"]

    def export(self, match: str) -> list[dict[str, Any]]:
        """Raw samples of the series matching a Prometheus selector (`/api/v1/export`), after a flush."""
        _http("GET", self.url + "/internal/force_flush")
        status, body = _http("POST", self.url + "/api/v1/export", urllib.parse.urlencode({"match[]": match}).encode())
        assert status == 200, body[:300]
        return [json.loads(line) for line in body.splitlines() if line.strip()]


def _running(server: _Server) -> Iterator[_Server]:
    server.start()
    yield server
    server.stop()


@pytest.fixture
def influxdb(tmp_path: Path) -> Iterator[InfluxDB]:
    yield from _running(InfluxDB(tmp_path / "influxdb"))  # type: ignore[misc]


@pytest.fixture
def victoria(tmp_path: Path) -> Iterator[VictoriaMetrics]:
    yield from _running(VictoriaMetrics(tmp_path / "victoria"))  # type: ignore[misc]
