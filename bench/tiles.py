"""Tiles and pipelines benchmark: a 1080p camera tiled over 1 and 2 agents, and a two-stage pipeline.

    .venv/bin/python bench/tiles.py [--seconds 10] [--fps 15] [--json PATH]

What runs, each row on a fresh fleet (Debian's `mosquitto` from the project's config, one
`edgehive coordinator`, agents with `EDGEHIVE_WORKERS=1`, `EDGEHIVE_SLOTS=2`,
`EDGEHIVE_INFERENCE_THREADS=1`, LiteRT): this process is one camera publishing a 1920x1080
JPEG (a blurred photo with the astronaut pasted at 128 px, a person too small to be seen
untiled) at `--fps` in the frame envelope, as `edgehive camera` does; every result on
`results/detections/{camera}` is timed from the frame's `captured` to its arrival.

Rows:
* `1080p untiled, 1 agent`: `tiles: off`, the reference (the person is missed);
* `1080p tiled auto, 1 agent` and `..., 2 agents`: `tiles: auto` (nine parts with `objects`);
* `pipeline, 2 agents`: the 512x512 astronaut photo, `objects` then `face-far` on each
  person, one agent per model; each stage's `elapsed_ms` as the results report it.

The raw floor is measured in this process in the same run, half before the rows and half
after (drift on a shared machine hits both): decode the 1080p JPEG once and run the same
nine parts one after another with the same Detector (1 thread), frames/s on one core.
"Tiled efficiency" = the 1-agent tiled frames/s ÷ that floor. Nothing here is judged: the
figures are recorded in BENCHMARKS.md with what limits them.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dispatch import Processes, component_env, edgehive_command, machine, percentile, start_mosquitto, wait_until

from edgehive.bus import MqttBus
from edgehive.schemas import CoordinatorStats, Topics, decode, envelope
from edgehive.settings import MqttUrl

ROOT = Path(__file__).resolve().parent.parent
CAMERA = "drive"


def test_frames() -> tuple[bytes, bytes]:
    """(the 1080p frame with a small person, the 512x512 astronaut photo) as JPEGs."""
    import cv2
    import numpy as np
    import skimage.data

    astronaut = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)
    canvas = cv2.GaussianBlur(cv2.resize(cv2.cvtColor(skimage.data.coffee(), cv2.COLOR_RGB2BGR), (1920, 1080)), (0, 0), 25)
    canvas[700:828, 1500:1628] = cv2.resize(astronaut, (128, 128), interpolation=cv2.INTER_AREA)
    encode = lambda image: cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()  # noqa: E731
    assert isinstance(canvas, np.ndarray)
    return encode(canvas), encode(astronaut)


def raw_tiled_fps(jpeg: bytes, models_dir: Path, seconds: float) -> float:
    """The floor: one process decodes the frame and runs every part of the auto plan, in turn."""
    import cv2
    import numpy as np

    from edgehive.agents.detection import load_detector
    from edgehive.agents.detection.tiles import crop, to_frame
    from edgehive.agents.inference import BackendChoice, create_backend
    from edgehive.agents.modelstore import load_manifest
    from edgehive.coordinator.tiles import plan_tiles

    spec = load_manifest(models_dir).get("objects")
    config, why = BackendChoice("litert", 1).choose(spec.model_format)
    if config is None:
        raise SystemExit(f"raw objects: {why}")
    detector = load_detector(spec, create_backend(config))
    detector.warm_up()
    frames = 0
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        size = (image.shape[1], image.shape[0])
        for rect in plan_tiles("auto", size, detector.input_size):
            if rect is None:
                detector.process(image)
            else:
                to_frame(detector.process(crop(image, rect)), rect, size)
        frames += 1
    return frames / (time.monotonic() - start)


@contextmanager
def fleet(workdir: Path, args: argparse.Namespace, agents: dict[str, str], cameras: dict[str, Any]) -> Iterator[tuple[str, str, Processes]]:
    processes = Processes(workdir)
    settings = SimpleNamespace(heartbeat_s=1.0, workers=1, slots=2)
    try:
        port, _ = start_mosquitto(workdir, processes)
        url, prefix, state = f"mqtt://127.0.0.1:{port}", f"bench-{uuid.uuid4().hex[:8]}/v1", workdir / "state"
        exe = edgehive_command(None)
        processes.start("coordinator", [exe, "coordinator"], component_env(
            url, prefix, state, settings, EDGEHIVE_NODE_ID="coordinator", EDGEHIVE_CAMERAS=orjson.dumps(cameras).decode()))  # type: ignore[arg-type]
        for node, models in agents.items():
            processes.start(node, [exe, "agent"], component_env(
                url, prefix, state, settings, EDGEHIVE_NODE_ID=node, EDGEHIVE_MODELS_DIR=str(args.models_dir),  # type: ignore[arg-type]
                EDGEHIVE_MODELS=models, EDGEHIVE_BACKEND="litert", EDGEHIVE_INFERENCE_THREADS="1"))
        yield url, prefix, processes
    finally:
        processes.stop_all()


class Camera:
    """One camera at a fixed rate and the result listener."""

    def __init__(self, url: str, prefix: str) -> None:
        self.topics = Topics(prefix)
        self.results: list[dict[str, Any]] = []
        self.latencies: list[float] = []
        self.stats: CoordinatorStats | None = None
        self._lock = threading.Lock()
        self.bus = MqttBus(MqttUrl.parse(url), self.topics, f"edgehive-bench-tiles-{uuid.uuid4().hex[:6]}", source="bench")
        self.bus.subscribe(self.topics.result("detections", CAMERA), self._on_result, qos=1, max_bytes=1 << 20)
        self.bus.subscribe(self.topics.coordinator_stats, self._on_stats, lambda t, p: decode(CoordinatorStats, p), qos=0)
        self.bus.start(timeout_s=10)

    def _on_stats(self, topic: str, stats: CoordinatorStats) -> None:
        self.stats = stats

    def _on_result(self, topic: str, payload: bytes) -> None:
        arrived = time.time()
        result = orjson.loads(payload)
        with self._lock:
            self.results.append(result)
            self.latencies.append(arrived - result["timings"]["captured"])

    def run(self, jpeg: bytes, fps: float, seconds: float) -> tuple[float, list[float], list[dict[str, Any]]]:
        """Publish at `fps` for `seconds`; results/s over the window, their latencies, the results."""
        with self._lock:
            self.results.clear()
            self.latencies.clear()
        start = time.monotonic()
        sent = 0
        while (now := time.monotonic()) - start < seconds:
            if sent < (now - start) * fps:
                header = orjson.dumps({"v": 1, "captured": time.time()})
                self.bus.publish(self.topics.frames(CAMERA), envelope.pack(header, jpeg), qos=0)
                sent += 1
            time.sleep(0.002)
        elapsed = time.monotonic() - start
        time.sleep(1.0)  # the last frames' results
        with self._lock:
            return len(self.results) / elapsed, list(self.latencies), list(self.results)

    def close(self) -> None:
        self.bus.stop()


def measure(label: str, args: argparse.Namespace, agents: dict[str, str], cameras: dict[str, Any], jpeg: bytes) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="edgehive-bench-tiles-") as tmp, fleet(Path(tmp), args, agents, cameras) as (url, prefix, processes):
        camera = Camera(url, prefix)
        try:
            wait_until(lambda: camera.stats is not None and camera.stats.nodes_online >= len(agents), 60, "agents online", processes.check_alive)
            camera.run(jpeg, args.fps, 2.0)  # warm-up, not counted
            fps, latencies, results = camera.run(jpeg, args.fps, args.seconds)
        finally:
            camera.close()
    latencies.sort()
    ok = [r for r in results if r.get("ok")]
    people = statistics.mean(sum(d["label"] == "person" for d in r["output"]["detections"]) for r in ok) if ok else 0.0
    nodes = sorted({p["node"] for r in ok for p in r["output"].get("parts") or [{"node": r["node"]}]})
    row: dict[str, Any] = {"row": label, "fps": round(fps, 2), "p50_ms": round(percentile(latencies, 50) * 1000, 1),
                           "p99_ms": round(percentile(latencies, 99) * 1000, 1), "people_per_frame": round(people, 2),
                           "parts": len(ok[0]["output"].get("parts") or [None]) if ok else 0, "nodes": nodes}
    stages = [r["output"].get("stages") for r in ok if r["output"].get("stages")]
    if stages:
        row["stage1_elapsed_ms"] = round(statistics.median(r["output"]["elapsed_ms"] for r in ok), 1)
        row["stage2_elapsed_ms"] = round(statistics.median(s[0]["elapsed_ms"] for s in stages), 1)
        row["faces_per_frame"] = round(statistics.mean(len(s[0]["detections"]) for s in stages), 2)
    print(f"  {label:<32} {row['fps']:6.2f} frames/s  p50 {row['p50_ms']:7.1f} ms  p99 {row['p99_ms']:7.1f} ms  "
          f"parts {row['parts']}  people/frame {row['people_per_frame']}  nodes {','.join(nodes)}"
          + (f"  stage 1 {row['stage1_elapsed_ms']} ms, stage 2 {row['stage2_elapsed_ms']} ms, faces/frame {row['faces_per_frame']}"
             if stages else ""), flush=True)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="counted seconds per row")
    parser.add_argument("--fps", type=float, default=15.0, help="the camera's frame rate")
    parser.add_argument("--models-dir", type=Path, default=ROOT / "models")
    parser.add_argument("--json", type=Path, default=None, help="write every figure here")
    args = parser.parse_args(argv)
    wide, portrait = test_frames()
    print(f"tiles benchmark on {machine()}; camera at {args.fps:g} fps, {args.seconds:g} s per row", flush=True)
    floor_s = max(3.0, args.seconds / 2)
    floor_before = raw_tiled_fps(wide, args.models_dir, floor_s)  # half before the system rows, half after: drift hits both
    rows = [
        measure("1080p untiled, 1 agent", args, {"agent-1": "objects"}, {"*": {"model": "objects", "tiles": "off"}}, wide),
        measure("1080p tiled auto, 1 agent", args, {"agent-1": "objects"}, {"*": {"model": "objects"}}, wide),
        measure("1080p tiled auto, 2 agents", args, {"agent-1": "objects", "agent-2": "objects"}, {"*": {"model": "objects"}}, wide),
        measure("pipeline objects>face-far, 2 agents", args, {"agent-1": "objects", "agent-2": "face-far"},
                {"*": {"model": "objects", "tiles": "off", "stages": [{"model": "face-far", "on": ["person"]}]}}, portrait),
    ]
    floor = (floor_before + raw_tiled_fps(wide, args.models_dir, floor_s)) / 2
    efficiency = rows[1]["fps"] / floor if floor else float("nan")
    print(f"  raw tiled floor (1 process, nine parts in turn): {floor:.2f} frames/s; 1-agent tiled efficiency {efficiency:.2f}; "
          f"2 agents / 1 agent: {rows[2]['fps'] / max(rows[1]['fps'], 1e-9):.2f}x", flush=True)
    if args.json:
        args.json.write_bytes(orjson.dumps({"rows": rows, "raw_tiled_fps": floor, "efficiency_1_agent": efficiency}, option=orjson.OPT_INDENT_2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
