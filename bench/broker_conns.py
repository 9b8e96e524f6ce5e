"""Mosquitto with thousands of agent connections: what one connection per device costs the broker.

    .venv/bin/python bench/broker_conns.py [--nodes 1000,5000] [--seconds 10] [--json PATH]

bench/fleetsim.py plays many nodes over a few connections, which measures the coordinator; a
real fleet opens one connection per device, which is the broker's cost. Here, for each size, a
fresh Mosquitto runs from the project's config (broker/mosquitto.conf, `render_config`), and
this process (asyncio, raw MQTT 3.1.1, no client library, so that it is not the bottleneck)
opens N connections as agents do: CONNECT with a will, SUBSCRIBE to `nodes/{node}/jobs` (QoS 1),
a retained `online` status, then a heartbeat of agent size every second, spread over the second.
One more connection subscribes to every heartbeat, as the coordinator does. Measured: the time
to connect them all, and over `--seconds` of heartbeats Mosquitto's CPU (% of one core) and its
RSS, against the same broker idle. This process raises its open-file limit to
what N connections need; Mosquitto inherits it (a container gets Docker's default, 1,048,576).
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import struct
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dispatch import Processes, machine, start_mosquitto


def _length(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _str(s: str | bytes) -> bytes:
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("!H", len(b)) + b


def connect_packet(client_id: str, will_topic: str) -> bytes:
    flags = 0x02 | 0x04 | 0x08 | 0x20  # clean session, will, will QoS 1, will retain
    body = _str("MQTT") + bytes([4, flags]) + struct.pack("!H", 30) + _str(client_id) + _str(will_topic) + _str(b"offline")
    return b"\x10" + _length(len(body)) + body


def subscribe_packet(mid: int, topic: str) -> bytes:
    body = struct.pack("!H", mid) + _str(topic) + b"\x01"
    return b"\x82" + _length(len(body)) + body


def publish_packet(topic: str, payload: bytes, retain: bool = False) -> bytes:
    body = _str(topic) + payload
    return bytes([0x30 | int(retain)]) + _length(len(body)) + body


async def agent(port: int, prefix: str, node: str, connected: asyncio.Event, counter: list[int], stop: asyncio.Event,
                offset: float) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(connect_packet(node, f"{prefix}/nodes/{node}/status"))
    await reader.readexactly(4)  # CONNACK
    writer.write(subscribe_packet(1, f"{prefix}/nodes/{node}/jobs"))
    writer.write(publish_packet(f"{prefix}/nodes/{node}/status", b'{"v":1,"state":"online"}', retain=True))
    await writer.drain()
    await reader.readexactly(5)  # SUBACK
    counter[0] += 1
    if counter[0] == counter[1]:
        connected.set()
    beat = orjson.dumps({"v": 1, "node": node, "boot_id": "b1", "seq": 0, "ts": 0.0, "cpu_pct": 10.0, "mem_pct": 20.0,
                         "temp_c": 50.0, "in_flight": 0, "queued": 0, "jobs_done": 0, "jobs_failed": 0,
                         "service_by_kind": {"detections": 0.02}, "held": [], "running": []})
    await connected.wait()
    await asyncio.sleep(offset)
    while not stop.is_set():
        writer.write(publish_packet(f"{prefix}/nodes/{node}/heartbeat", beat))
        await writer.drain()
        await asyncio.sleep(1.0)
    writer.close()


async def coordinator_like(port: int, prefix: str, received: list[int], stop: asyncio.Event) -> None:
    """One subscriber to every heartbeat and status, as the coordinator (and the sink) is: the
    broker delivers each heartbeat once more."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(connect_packet(f"watcher-{uuid.uuid4().hex[:6]}", f"{prefix}/watcher"))
    await reader.readexactly(4)
    writer.write(subscribe_packet(1, f"{prefix}/nodes/+/heartbeat"))
    await writer.drain()
    while not stop.is_set():
        try:
            chunk = await asyncio.wait_for(reader.read(1 << 16), 0.5)
        except TimeoutError:
            continue
        if not chunk:
            return
        received[0] += len(chunk)
    writer.close()


async def run_fleet(port: int, prefix: str, n: int, seconds: float, broker: psutil.Process) -> dict[str, Any]:
    connected, stop = asyncio.Event(), asyncio.Event()
    counter = [0, n]
    received = [0]
    watcher = asyncio.create_task(coordinator_like(port, prefix, received, stop))
    started = time.monotonic()
    tasks = [asyncio.create_task(agent(port, prefix, f"node-{i:05d}", connected, counter, stop, i / n)) for i in range(n)]
    await asyncio.wait_for(connected.wait(), 120)
    connect_s = time.monotonic() - started
    await asyncio.sleep(1.5)
    times = broker.cpu_times()
    cpu0, t0 = times.user + times.system, time.monotonic()
    await asyncio.sleep(seconds)
    times = broker.cpu_times()
    elapsed = time.monotonic() - t0
    cpu = 100 * (times.user + times.system - cpu0) / elapsed
    rss = broker.memory_info().rss
    stop.set()
    await asyncio.gather(*tasks, watcher, return_exceptions=True)
    return {"connect_all_s": round(connect_s, 2), "broker_cpu_pct": round(cpu, 1), "broker_rss_mb": round(rss / 2**20, 1),
            "delivered_mb": round(received[0] / 2**20, 1)}


def measure(n: int, seconds: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="edgehive-bench-conns-") as tmp:
        processes = Processes(Path(tmp))
        try:
            port, _ = start_mosquitto(Path(tmp), processes)
            broker = psutil.Process(processes.children["mosquitto"].pid)
            idle_rss = broker.memory_info().rss
            row = {"nodes": n, "idle_rss_mb": round(idle_rss / 2**20, 1)}
            row |= asyncio.run(run_fleet(port, f"conns-{uuid.uuid4().hex[:6]}/v1", n, seconds, broker))
            row["rss_per_connection_kb"] = round((row["broker_rss_mb"] - row["idle_rss_mb"]) * 1024 / n, 1)
        finally:
            processes.stop_all()
    print(f"  {n:>6} connections: all connected in {row['connect_all_s']} s; heartbeats at {n}/s: Mosquitto "
          f"{row['broker_cpu_pct']} % of a core, RSS {row['broker_rss_mb']} MB (idle {row['idle_rss_mb']} MB, "
          f"{row['rss_per_connection_kb']} KB per connection)", flush=True)
    return row


SYSTEMD_DEFAULT_NOFILE = 1024  # the soft open-file limit a systemd service gets unless its unit sets LimitNOFILE


def kept_open_file_limit() -> int | None:
    """The soft open-file limit Mosquitto runs with when started under systemd's default (as
    Debian's unit starts it): does it raise its own limit? Read from /proc/PID/limits."""
    import subprocess

    from dispatch import MOSQUITTO, free_port

    command = f"ulimit -Sn {SYSTEMD_DEFAULT_NOFILE} && exec {MOSQUITTO} -p {free_port()}"
    proc = subprocess.Popen(["sh", "-c", command], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        for line in Path(f"/proc/{proc.pid}/limits").read_text().splitlines():
            if line.startswith("Max open files"):
                return int(line.split()[3])
        return None
    finally:
        proc.terminate()
        proc.wait(10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", default="1000,5000", help="connection counts, comma-separated")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds of heartbeats measured")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    sizes = [int(n) for n in args.nodes.split(",")]
    kept = kept_open_file_limit()
    print(f"Mosquitto started with systemd's default soft limit of {SYSTEMD_DEFAULT_NOFILE} open files keeps {kept}: "
          f"about that many devices (LimitNOFILE raises it)", flush=True)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(sizes) * 2 + 256  # both ends of every connection are on this machine
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    print(f"broker connections on {machine()}; open-file limit {resource.getrlimit(resource.RLIMIT_NOFILE)[0]}", flush=True)
    rows = [measure(n, args.seconds) for n in sizes]
    if args.json:
        args.json.write_bytes(orjson.dumps(rows, option=orjson.OPT_INDENT_2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
