"""Soak benchmark: does the coordinator's memory level off under a steady job stream?

    .venv/bin/python bench/soak.py [--minutes 5] [--rate 200] [--sample-s 10] [--markdown PATH]

What runs: Debian's `mosquitto` from the project's config, one `edgehive coordinator` and two
`edgehive agent` processes (as bench/dispatch.py starts them, journal on), and a paced
submitter in this process sending `noop` jobs on `jobs/submit` (QoS 1) at `--rate` per
second. Every `--sample-s` seconds the coordinator's resident memory (VmRSS from
/proc/PID/status) is read. The curve is printed with the slope (MB/min, least squares) of
the first and of the second half; a bounded process has a second-half slope near zero.
`--markdown PATH` appends the table and the command to PATH (BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import platform
import shlex
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import orjson
from dispatch import AGENT_IDS, Processes, component_env, edgehive_command, start_mosquitto, wait_until

from edgehive.bus import MqttBus
from edgehive.schemas import CoordinatorStats, Topics, decode
from edgehive.schemas.kinds import NOOP_KIND
from edgehive.settings import MqttUrl


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"no VmRSS for pid {pid}")


def slope_mb_per_min(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MB), in MB per minute."""
    if len(points) < 2:
        return float("nan")
    n = len(points)
    mx = sum(t for t, _ in points) / n
    my = sum(m for _, m in points) / n
    var = sum((t - mx) ** 2 for t, _ in points)
    return 60.0 * sum((t - mx) * (m - my) for t, m in points) / var if var else float("nan")


class Submitter:
    """Paced `noop` submissions from one thread; counts what the coordinator reports done."""

    def __init__(self, url: str, prefix: str, rate: float) -> None:
        self.topics = Topics(prefix)
        self.rate = rate
        self.sent = 0
        self.stats: CoordinatorStats | None = None
        self._stop = threading.Event()
        self.bus = MqttBus(MqttUrl.parse(url), self.topics, f"soak-{uuid.uuid4().hex[:6]}", source="bench")
        self.bus.subscribe(self.topics.coordinator_stats, self._on_stats, lambda t, p: decode(CoordinatorStats, p), qos=0)
        self.bus.start(timeout_s=10)
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _on_stats(self, topic: str, stats: CoordinatorStats) -> None:
        self.stats = stats

    def _run(self) -> None:
        start = time.monotonic()
        run = uuid.uuid4().hex[:6]
        while not self._stop.is_set():
            due = int((time.monotonic() - start) * self.rate)
            while self.sent < due:
                self.bus.publish(self.topics.submit, orjson.dumps({"v": 1, "kind": NOOP_KIND, "id": f"s{run}-{self.sent}"}), qos=1)
                self.sent += 1
            self._stop.wait(0.01)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.bus.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--rate", type=float, default=200.0, help="jobs per second")
    parser.add_argument("--sample-s", type=float, default=10.0)
    parser.add_argument("--heartbeat-s", type=float, default=1.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--slots", type=int, default=64)
    parser.add_argument("--edgehive", default=None, help="another build's edgehive command")
    parser.add_argument("--label", default="", help="what this run measures (for the table)")
    parser.add_argument("--markdown", type=Path, default=None, help="append the table to this file")
    args = parser.parse_args()

    points: list[tuple[float, float]] = []
    with tempfile.TemporaryDirectory(prefix="edgehive-soak-") as tmp:
        workdir = Path(tmp)
        processes = Processes(workdir)
        try:
            port, _ = start_mosquitto(workdir, processes)
            prefix = f"soak-{uuid.uuid4().hex[:8]}/v1"
            url = f"mqtt://127.0.0.1:{port}"
            exe = edgehive_command(args.edgehive)
            coordinator = processes.start("coordinator", [exe, "coordinator"], component_env(url, prefix, workdir / "state", args))
            for node in AGENT_IDS:
                processes.start(node, [exe, "agent"], component_env(url, prefix, workdir / "state", args, EDGEHIVE_NODE_ID=node))
            submitter = Submitter(url, prefix, args.rate)
            wait_until(lambda: submitter.stats is not None and submitter.stats.nodes_online == len(AGENT_IDS), 30,
                       "both agents online", processes.check_alive)
            submitter.start()
            start = time.monotonic()
            end = start + 60.0 * args.minutes
            next_sample = start
            while (now := time.monotonic()) < end + 1e-3:
                if now >= next_sample:
                    processes.check_alive()
                    elapsed, mb = now - start, rss_mb(coordinator.pid)
                    points.append((elapsed, mb))
                    stats = submitter.stats
                    done = stats.done if stats else 0
                    print(f"{elapsed:7.0f} s  {mb:7.1f} MB  submitted {submitter.sent:7d}  done {done:7d}", flush=True)
                    next_sample += args.sample_s
                time.sleep(min(0.2, max(0.0, next_sample - time.monotonic())))
            submitter.stop()
            stats = submitter.stats
        finally:
            processes.stop_all()

    half = len(points) // 2
    first, second = slope_mb_per_min(points[: half + 1]), slope_mb_per_min(points[half:])
    summary = (f"{args.label + ': ' if args.label else ''}{args.minutes:g} min at {args.rate:g} jobs/s, "
               f"RSS {points[0][1]:.1f} → {points[-1][1]:.1f} MB; slope first half {first:+.2f} MB/min, second half {second:+.2f} MB/min; "
               f"submitted {submitter.sent}, done {stats.done if stats else '?'}, failed {stats.failed if stats else '?'}")
    print(summary)
    if args.markdown:
        command = shlex.join(["bench/soak.py", *sys.argv[1:]])
        rows = "\n".join(f"| {t:.0f} | {mb:.1f} |" for t, mb in points)
        with args.markdown.open("a") as out:
            out.write(f"\n#### {args.label or 'run'} ({time.strftime('%Y-%m-%d')}, Python {platform.python_version()})\n\n"
                      f"`.venv/bin/python {command}`\n\n{summary}\n\n| s | coordinator RSS (MB) |\n| --- | --- |\n{rows}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
