"""Fusion benchmark: sensor readings through a real Mosquitto, windows fused on two agents.

    .venv/bin/python bench/fusion.py [--groups G] [--readings N] [--window W] [--batch B] [--json PATH]

What runs: Debian's `mosquitto` from the project's config, one `edgehive coordinator` with G
sensor groups (three sensors each, count windows of W readings), two `edgehive agent`
processes, and a publisher in this process that sends N readings (JSON, QoS 1) as fast as the
client takes them, round robin over the sensors, while a subscriber counts the fused results
on `results/fusion/+`.

It measures, in one run and on the same data:

* readings/s ingested: readings the coordinator filed into windows (its `fusion_readings`
  counter on `coordinator/stats`) over the time from the first publish;
* windows/s fused end to end: fusion results received over the same clock;
* the raw floor: the same windows fused by `fuse_window` in one process, one after another
  per group, prior carried, no MQTT, no JSON — the math alone on one core.

The ratio end to end / raw says what the system costs on top of the math. A group's windows
are fused one after another (each needs the previous posterior), so with few groups the
round trip, not the math, bounds windows/s; `--groups` shows that.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import orjson

# bench/ is not a package: dispatch.py is imported as a sibling module.
from dispatch import CpuMeter, Processes, component_env, edgehive_command, start_mosquitto, wait_until

from edgehive.agents.fusion import FilterState, KalmanConfig, Reading, fuse_window
from edgehive.bus import MqttBus
from edgehive.schemas import Topics
from edgehive.settings import MqttUrl

NOISE = (0.1, 0.3, 0.6)


def make_readings(groups: int, count: int, t0: float, seed: int = 1) -> list[tuple[str, str, float, float]]:
    """(group, sensor, value, ts) in publishing order: round robin over every group's three sensors."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        g, k = divmod(i % (3 * groups), 3)
        value = 21.0 + 0.5 * math.sin(i / 500) + rng.normal(0, NOISE[k])
        out.append((f"g{g}", f"g{g}-s{k}", float(value), t0 + i * 1e-4))
    return out


def raw_floor(readings: list[tuple[str, str, float, float]], window: int) -> tuple[float, int]:
    """Seconds to fuse every complete window with the filter alone, and how many windows."""
    by_group: dict[str, list[Reading]] = {}
    for group, sensor, value, ts in readings:
        by_group.setdefault(group, []).append(Reading(sensor=sensor, value=value, timestamp=ts))
    config = KalmanConfig()
    windows = 0
    started = time.perf_counter()
    for rows in by_group.values():
        prior: FilterState | None = None
        for k in range(0, len(rows) - window + 1, window):
            prior = fuse_window(prior, rows[k:k + window], config).state
            windows += 1
    return time.perf_counter() - started, windows


def batched(topics: Topics, readings: list[tuple[str, str, float, float]], batch: int) -> list[tuple[str, bytes]]:
    """One message per reading, or per `batch` consecutive readings of one sensor (a JSON array)."""
    if batch == 1:
        return [(topics.sensor(sensor, "temperature"), orjson.dumps({"v": 1, "value": value, "unit": "°C", "ts": ts})) for _, sensor, value, ts in readings]
    pending: dict[str, list[dict[str, object]]] = {}
    out = []
    for _, sensor, value, ts in readings:
        rows = pending.setdefault(sensor, [])
        rows.append({"v": 1, "value": value, "unit": "°C", "ts": ts})
        if len(rows) == batch:
            out.append((topics.sensor(sensor, "temperature"), orjson.dumps(rows)))
            pending[sensor] = []
    out += [(topics.sensor(sensor, "temperature"), orjson.dumps(rows)) for sensor, rows in pending.items() if rows]
    return out


def run_system(args: argparse.Namespace, readings: list[tuple[str, str, float, float]], workdir: Path) -> dict[str, float]:
    processes = Processes(workdir)
    try:
        port, _ = start_mosquitto(workdir, processes)
        url = f"mqtt://127.0.0.1:{port}"
        prefix = f"bench-{uuid.uuid4().hex[:8]}/v1"
        settings = SimpleNamespace(heartbeat_s=0.5, workers=1, slots=4)
        groups = {f"g{g}": {"quantity": "temperature", "sensors": [f"g{g}-s{k}" for k in range(3)], "window_count": args.window} for g in range(args.groups)}
        exe = edgehive_command(None)
        processes.start("coordinator", [exe, "coordinator"], component_env(
            url, prefix, workdir / "state", settings, EDGEHIVE_NODE_ID="coordinator", EDGEHIVE_STATS_INTERVAL_S="0.1",
            EDGEHIVE_FUSION_GROUPS=orjson.dumps(groups).decode(), EDGEHIVE_FUSION_QUEUE_MAX="100000", EDGEHIVE_SENSOR_MAX_AGE_S="3600"))
        for node in ("bench-a", "bench-b"):
            processes.start(node, [exe, "agent"], component_env(url, prefix, workdir / "state", settings, EDGEHIVE_NODE_ID=node))

        topics = Topics(prefix)
        lock = threading.Lock()
        seen: dict[str, float] = {"results": 0, "filed": 0, "online": 0, "overflow": 0}
        marks: dict[str, float] = {}

        def on_result(topic: str, payload: bytes) -> None:
            with lock:
                seen["results"] += 1
                marks["last_result"] = time.perf_counter()

        def on_stats(topic: str, payload: bytes) -> None:
            stats = orjson.loads(payload)
            with lock:
                seen["online"] = stats["nodes_online"]
                seen["overflow"] = sum(stats.get("fusion_overflow", {}).values())
                filed = sum(stats.get("fusion_readings", {}).values())
                if filed > seen["filed"]:
                    seen["filed"] = filed
                    marks["last_filed"] = time.perf_counter()

        watcher = MqttBus(MqttUrl.parse(url), topics, f"bench-watch-{uuid.uuid4().hex[:6]}", source="bench")
        watcher.subscribe(f"{prefix}/results/fusion/+", on_result, qos=1)
        watcher.subscribe(topics.coordinator_stats, on_stats, qos=0)
        watcher.start(timeout_s=10)
        wait_until(lambda: seen["online"] == 2, 30, "two agents online", processes.check_alive)

        payloads = batched(topics, readings, args.batch)
        publisher = MqttBus(MqttUrl.parse(url), topics, f"bench-pub-{uuid.uuid4().hex[:6]}", source="bench", qos0_queue_max=len(payloads) + 10)
        publisher.start(timeout_s=10)
        expected_windows = len(readings) // args.window
        meter = CpuMeter({**{name: proc.pid for name, proc in processes.children.items()}, "bench (publisher)": os.getpid()})
        meter.start()
        started = time.perf_counter()
        for topic, payload in payloads:
            publisher.publish(topic, payload, qos=1)
        published = time.perf_counter()
        wait_until(lambda: seen["filed"] >= len(readings), 300, "every reading filed", processes.check_alive)
        wait_until(lambda: seen["results"] >= expected_windows, 300, "every window fused", processes.check_alive)
        cpu = meter.stop()
        publisher.stop()
        watcher.stop()
        return {
            "publish_s": published - started, "ingest_s": marks["last_filed"] - started, "fused_s": marks["last_result"] - started,
            "windows": seen["results"], "overflow": seen["overflow"], "cpu_pct": cpu,
        }
    finally:
        processes.stop_all()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--groups", type=int, default=8, help="sensor groups (three sensors each)")
    parser.add_argument("--readings", type=int, default=48_000, help="readings published in all")
    parser.add_argument("--window", type=int, default=30, help="readings per window (count windows)")
    parser.add_argument("--batch", type=int, default=1, help="readings per message (a JSON array when above 1)")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args(argv)
    per_round = 3 * args.groups * args.window
    count = max(per_round, args.readings // per_round * per_round)  # whole windows in every group
    readings = make_readings(args.groups, count, time.time())

    raw_s, raw_windows = raw_floor(readings, args.window)
    with tempfile.TemporaryDirectory(prefix="edgehive-bench-fusion-") as tmp:
        system = run_system(args, readings, Path(tmp))
    raw_rate = raw_windows / raw_s
    e2e_rate = system["windows"] / system["fused_s"]
    figures = {
        "groups": args.groups, "window": args.window, "batch": args.batch, "readings": count, "windows": raw_windows,
        "readings_per_s_published": count / system["publish_s"], "readings_per_s_ingested": count / system["ingest_s"],
        "windows_per_s_end_to_end": e2e_rate, "windows_per_s_raw": raw_rate, "readings_per_s_raw": count / raw_s,
        "ratio_end_to_end_vs_raw": e2e_rate / raw_rate, "overflow": system["overflow"],
    }
    print(f"fusion: {args.groups} groups × 3 sensors, windows of {args.window} readings, {count:,} readings, {raw_windows:,} windows, "
          f"{args.batch} reading(s) a message")
    print(f"  ingested by the coordinator: {figures['readings_per_s_ingested']:,.0f} readings/s (published at {figures['readings_per_s_published']:,.0f}/s)")
    print(f"  fused end to end:            {e2e_rate:,.0f} windows/s ({count / system['fused_s']:,.0f} readings/s)")
    print(f"  raw fuse_window, one process: {raw_rate:,.0f} windows/s ({figures['readings_per_s_raw']:,.0f} readings/s)")
    print(f"  end to end / raw:            {figures['ratio_end_to_end_vs_raw']:.2f}; windows refused at the bound: {system['overflow']:.0f}")
    fused_s = system["fused_s"]
    print("  CPU per process over the run, % of one core (ms per window):")
    for name, pct in system["cpu_pct"].items():  # type: ignore[union-attr]
        print(f"    {name:<20} {pct:6.1f} %  ({pct / 100 * fused_s / raw_windows * 1000:.2f} ms)")
    figures["cpu_pct"] = system["cpu_pct"]
    if args.json:
        args.json.write_text(orjson.dumps(figures, option=orjson.OPT_INDENT_2).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
