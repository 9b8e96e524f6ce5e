"""Footprint benchmark: the memory each service of `edgehive up` holds, against floors from the same run.

    .venv/bin/python bench/footprint.py [--settle S] [--samples N] [--json PATH]

What runs: Debian's `mosquitto` from the project's config, then `edgehive up` with its
embedded broker off (`EDGEHIVE_EMBEDDED_BROKER=false`, pointed at that Mosquitto), so `up`
starts its children exactly as on a first run: the coordinator, one agent (every model
present in models/, as many instances as workers), the demo camera (2 fps), the demo
sensors (20 Hz) and the telemetry sink (line-protocol file in a temp folder). Beside it,
`edgehive sensor` as a real thermometer (DS18B20, two probes whose sysfs files are faked in
the temp folder, since this machine has no 1-Wire bus): the demo sensors simulate, a real
thermometer reads files, and the two should cost the same. A watcher
waits until the fleet is in its steady state (the coordinator reports the agent online,
a detection result and a sensor reading have arrived), lets it run `--settle` seconds, then
reads every process `--samples` times, a second apart, and keeps the largest reading.

RSS counts every page a process maps, shared libraries included, so it is what `top`
shows and what the issue's targets are stated in. PSS splits shared pages among the
processes that map them (what the stack as a whole costs); USS is what the process alone
holds. All three come from `psutil.Process.memory_full_info()` (/proc/PID/smaps_rollup).

Floors, measured in the same run and read the same way:

* `bare python`: the interpreter with nothing imported;
* `libs`: the interpreter with what every service needs (pydantic, paho-mqtt, orjson)
  imported, and nothing of edgehive's (until 2026-12-04, pydantic-settings too);
* `agent floor`: the interpreter with numpy, OpenCV and LiteRT imported and one model
  (the person detector) loaded and run once: the least an agent with a model can hold;
* `agent floor, every TFLite`: the same with one instance of every TFLite model in models/;
* `agent floor, models loaded`: the same with one instance of each model the agent says it
  loaded (its capabilities message), onnxruntime and the ONNX models included (an ONNX model
  whose manifest entry says `reshape_input` is loaded at the manifest's input size, as the
  agent loads it: the bench writes that copy to the temp folder).

`--models` sets EDGEHIVE_MODELS for the agent (default: every model present, as `up` does);
the report names the models the agent says it loaded (its capabilities message).

Targets (from the issue): coordinator, sink and sensor at most 40 MB RSS each; the agent
at most the floor for the models it loads (`agent floor, models loaded`) + 15 MB. (Until
2026-12-04 the agent was held to `agent floor`, the person model alone, whatever it loaded.)
The exit status is 0 when all are met, 1 when one is missed.
`--edgehive CMD` runs another build's `edgehive` (its `up` starts that build's children).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

import orjson
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
# bench/ is not a package: dispatch.py is imported as a sibling module.
from dispatch import Processes, display_path, edgehive_command, machine, start_mosquitto, wait_until

from edgehive.bus import MqttBus
from edgehive.schemas import CoordinatorStats, Topics, decode
from edgehive.settings import MqttUrl

MiB = 2**20
TARGET_SERVICE_RSS_MB = 40.0
SERVICES_WITH_TARGET = ("coordinator", "sink", "sensor (demo)", "sensor (ds18b20)")
TARGET_AGENT_OVER_FLOOR_MB = 15.0
ROOT = Path(__file__).resolve().parents[1]
LOADED_FLOOR = "agent floor, models loaded"

# Each floor prints "ready" once it holds what it should, then waits to be read and stopped.
_WAIT = "print('ready', flush=True); import time; time.sleep(3600)"
_AGENT_FLOOR = """
import sys
import numpy as np, cv2
from ai_edge_litert.interpreter import Interpreter
keep = []
for path in sys.argv[1:]:
    if path.endswith(".onnx"):  # as the agent runs it: one session, one intra-op thread, on the CPU
        import onnxruntime
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads, options.log_severity_level = 1, 1, 3
        session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        feed = session.get_inputs()[0]
        session.run(None, {feed.name: np.zeros(feed.shape, np.float32)})
        keep.append(session)
        continue
    interpreter = Interpreter(model_path=path, num_threads=1)
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    interpreter.set_tensor(detail["index"], np.zeros(detail["shape"], dtype=detail["dtype"]))
    interpreter.invoke()
    keep.append(interpreter)
"""
FLOORS: dict[str, tuple[str, ...]] = {
    "bare python": ("-c", _WAIT),
    "libs": ("-c", "import pydantic, paho.mqtt.client, orjson\n" + _WAIT),
}


@dataclass
class Reading:
    """The largest of the samples taken of one process, in MiB."""

    name: str
    pid: int
    rss_mb: float
    pss_mb: float
    uss_mb: float
    threads: int
    heavy_modules: str = ""  # filled in for our services: what the process imported that the issue wants gone


def sample(procs: dict[str, psutil.Process], samples: int) -> dict[str, Reading]:
    """Read each process `samples` times, a second apart; keep each figure's largest value."""
    best: dict[str, Reading] = {}
    for i in range(samples):
        if i:
            time.sleep(1.0)
        for name, proc in procs.items():
            with contextlib.suppress(psutil.Error):
                info = proc.memory_full_info()
                now = Reading(name, proc.pid, info.rss / MiB, info.pss / MiB, info.uss / MiB, proc.num_threads())
                old = best.get(name)
                if old is not None:
                    now = Reading(name, proc.pid, max(old.rss_mb, now.rss_mb), max(old.pss_mb, now.pss_mb),
                                  max(old.uss_mb, now.uss_mb), max(old.threads, now.threads))
                best[name] = now
    return {name: Reading(r.name, r.pid, round(r.rss_mb, 1), round(r.pss_mb, 1), round(r.uss_mb, 1), r.threads)
            for name, r in best.items()}


def heavy_modules(pid: int) -> str:
    """Which of numpy, OpenCV, LiteRT, ONNX Runtime and OpenSSL's libssl (the `ssl` module loaded) a live
    process has mapped (its shared libraries)."""
    markers = {"numpy": "/numpy/", "cv2": "/cv2/", "litert": "/ai_edge_litert/", "onnxruntime": "/onnxruntime/", "ssl": "/libssl"}
    found: set[str] = set()
    with contextlib.suppress(psutil.Error):
        for mapping in psutil.Process(pid).memory_maps(grouped=True):
            found.update(name for name, marker in markers.items() if marker in mapping.path)
    return ",".join(sorted(found)) or "-"


# --------------------------------------------------------------------------------------------
# The stack, as `edgehive up` starts it
# --------------------------------------------------------------------------------------------


class Watcher:
    """Tells when the fleet is in its steady state: agent online, detections and readings flowing."""

    def __init__(self, url: str, prefix: str) -> None:
        self.topics = Topics(prefix)
        self.nodes_online = 0
        self.detections = 0
        self.readings = 0
        self.bus = MqttBus(MqttUrl.parse(url), self.topics, f"bench-footprint-{os.getpid()}", source="bench")
        self.bus.subscribe(self.topics.coordinator_stats, self._on_stats, lambda t, p: decode(CoordinatorStats, p), qos=0)
        self.bus.subscribe(self.topics.pattern("result").replace("/+/+", "/detections/+"), self._on_detection, qos=0)
        self.bus.subscribe(self.topics.pattern("sensor"), self._on_reading, qos=0)
        self.agent_models: list[str] = []
        self.bus.subscribe(self.topics.pattern("capabilities"), self._on_capabilities, qos=1)

    def _on_capabilities(self, topic: str, payload: bytes) -> None:
        """The models the agent loaded and warmed up, in its own words."""
        with contextlib.suppress(orjson.JSONDecodeError, AttributeError, TypeError):
            self.agent_models = list(orjson.loads(payload).get("models", []))

    def _on_stats(self, topic: str, stats: CoordinatorStats) -> None:
        self.nodes_online = stats.nodes_online

    def _on_detection(self, topic: str, payload: bytes) -> None:
        self.detections += 1

    def _on_reading(self, topic: str, payload: bytes) -> None:
        self.readings += 1

    def steady(self) -> bool:
        return self.nodes_online >= 1 and self.detections >= 2 and self.readings >= 2


def service_name(proc: psutil.Process) -> str:
    """`coordinator`, `agent`, ...: the subcommand in `python -m edgehive.cli <sub>` (how `up` starts them)."""
    with contextlib.suppress(psutil.Error):
        argv = proc.cmdline()
        if "edgehive.cli" in argv:
            return argv[argv.index("edgehive.cli") + 1]
    return f"pid {proc.pid}"


def up_env(url: str, prefix: str, workdir: Path, models: str = "") -> dict[str, str]:
    """`up`'s defaults, with the embedded broker off and files in the temp folder; the caller's EDGEHIVE_* dropped."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEHIVE_")}
    env.update(
        EDGEHIVE_MQTT_URL=url, EDGEHIVE_PREFIX=prefix, EDGEHIVE_EMBEDDED_BROKER="false", EDGEHIVE_STATUS_EVERY_S="0",
        EDGEHIVE_STATE_DIR=str(workdir / "state"), EDGEHIVE_TELEMETRY_FILE=str(workdir / "telemetry.lp"),
        EDGEHIVE_LOG_LEVEL="WARNING", EDGEHIVE_MODELS_DIR=str(ROOT / "models"),
    )
    if models:
        env["EDGEHIVE_MODELS"] = models
    return env


def thermometer_env(url: str, prefix: str, workdir: Path) -> dict[str, str]:
    """`edgehive sensor` with EDGEHIVE_SENSOR_TYPE=ds18b20 on a faked w1 sysfs folder of two probes."""
    devices = workdir / "w1"
    for serial, millidegrees in (("28-0316a2795aff", 21500), ("28-0316a2795b00", 22125)):
        (devices / serial).mkdir(parents=True)
        (devices / serial / "temperature").write_text(f"{millidegrees}\n")
    env = up_env(url, prefix, workdir)
    env.update(EDGEHIVE_NODE_ID="thermometer", EDGEHIVE_SENSOR_TYPE="ds18b20", EDGEHIVE_W1_DEVICES_DIR=str(devices),
               EDGEHIVE_SENSOR_RATE_HZ="1")
    return env


def measure_stack(args: argparse.Namespace, workdir: Path) -> tuple[dict[str, Reading], dict[str, object]]:
    """Mosquitto, then `edgehive up` against it; the readings of `up` and each child once steady."""
    processes = Processes(workdir)
    try:
        port, _config = start_mosquitto(workdir, processes)
        url = f"mqtt://127.0.0.1:{port}"
        prefix = f"footprint-{uuid.uuid4().hex[:8]}/v1"
        exe = edgehive_command(args.edgehive)
        # From the temp folder: `up` starts its children as `python -m edgehive.cli`, which puts the
        # working directory first on sys.path, and a checkout's own edgehive/ folder there would
        # shadow the build under test (--edgehive).
        up = processes.start("up", [exe, "up"], up_env(url, prefix, workdir, args.models), cwd=workdir)
        # A real thermometer's publisher beside `up`'s simulated demo set: the sysfs files of two
        # DS18B20 probes are faked in the temp folder (this machine has no 1-Wire bus).
        thermometer = processes.start("thermometer", [exe, "sensor"], thermometer_env(url, prefix, workdir))
        watcher = Watcher(url, prefix)
        watcher.bus.start(timeout_s=10)
        try:
            wait_until(watcher.steady, args.timeout, "agent online with detections and sensor readings", processes.check_alive)
            time.sleep(args.settle)
            procs = {"up": psutil.Process(up.pid)}
            for child in psutil.Process(up.pid).children():
                procs[service_name(child)] = child
            procs["sensor (demo)"] = procs.pop("sensor")
            procs["sensor (ds18b20)"] = psutil.Process(thermometer.pid)
            readings = sample(procs, args.samples)
            for reading in readings.values():
                reading.heavy_modules = heavy_modules(reading.pid)
            info = {"detections_seen": watcher.detections, "readings_seen": watcher.readings, "agent_loaded": watcher.agent_models}
            return readings, info
        finally:
            watcher.bus.stop()
    finally:
        processes.stop_all()


# --------------------------------------------------------------------------------------------
# Floors
# --------------------------------------------------------------------------------------------


def agent_models(models_dir: Path) -> tuple[Path, list[Path]]:
    """(the person model, every .tflite model the agent would load from models_dir)."""
    manifest = orjson.loads((models_dir / "manifest.json").read_bytes())
    files = {m["name"]: models_dir / m["file"] for m in manifest["models"]}
    present = [p for p in files.values() if p.suffix == ".tflite" and p.is_file()]
    person = files.get("person")
    if person is None or not person.is_file():
        raise SystemExit(f"the person model is not in {models_dir}: fetch it with `edgehive models`")
    return person, present


def loaded_model_files(models_dir: Path, names: list[str], workdir: Path) -> list[Path]:
    """The file of each model the agent loaded; an ONNX model the agent reshapes, reshaped the
    same way into `workdir` (its input dims set to the manifest's input size)."""
    from edgehive.agents.inference.onnx import _with_input_size  # numpy: the bench's process, not a floor's

    manifest = {m["name"]: m for m in orjson.loads((models_dir / "manifest.json").read_bytes())["models"]}
    files: list[Path] = []
    for name in names:
        entry = manifest.get(name)
        if entry is None:
            continue
        path = models_dir / entry["file"]
        if path.suffix == ".onnx" and entry.get("reshape_input"):
            reshaped = workdir / f"{name}-reshaped.onnx"
            reshaped.write_bytes(_with_input_size(path, path.read_bytes(), tuple(entry["input_size"])))
            path = reshaped
        files.append(path)
    return files


def measure_floor(name: str, argv: list[str], samples: int, timeout_s: float) -> Reading:
    """Start a floor interpreter, wait for its "ready", read it like the services, stop it."""
    proc = subprocess.Popen([sys.executable, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # blocks until the floor holds what it should
        if line.strip() != "ready":
            raise RuntimeError(f"floor {name!r} failed: {proc.stderr.read()[-2000:] if proc.stderr else ''}")
        return sample({name: psutil.Process(proc.pid)}, samples)[name]
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def measure_floors(args: argparse.Namespace, agent_loaded: list[str]) -> tuple[dict[str, Reading], list[str]]:
    person, every = agent_models(ROOT / "models")
    floors = {name: measure_floor(name, list(argv), args.samples, 10) for name, argv in FLOORS.items()}
    agent_code = _AGENT_FLOOR + _WAIT
    floors["agent floor"] = measure_floor("agent floor", ["-c", agent_code, str(person)], args.samples, 10)
    floors["agent floor, every TFLite"] = measure_floor(
        "agent floor, every TFLite", ["-c", agent_code, *map(str, every)], args.samples, 10)
    with tempfile.TemporaryDirectory(prefix="edgehive-footprint-floor-") as folder:
        loaded = loaded_model_files(ROOT / "models", agent_loaded, Path(folder))
        floors[LOADED_FLOOR] = measure_floor(LOADED_FLOOR, ["-c", agent_code, *map(str, loaded)], args.samples, 30)
    return floors, [p.name for p in every]


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def verdicts(stack: dict[str, Reading], floors: dict[str, Reading]) -> dict[str, dict[str, object]]:
    out: dict[str, dict[str, object]] = {}
    for name in SERVICES_WITH_TARGET:
        reading = stack.get(name)
        out[name] = {"rss_mb": reading.rss_mb if reading else None, "limit_mb": TARGET_SERVICE_RSS_MB,
                     "pass": reading is not None and reading.rss_mb <= TARGET_SERVICE_RSS_MB}
    agent, floor = stack.get("agent"), floors[LOADED_FLOOR]
    limit = round(floor.rss_mb + TARGET_AGENT_OVER_FLOOR_MB, 1)
    out["agent"] = {"rss_mb": agent.rss_mb if agent else None, "limit_mb": limit,
                    "over_floor_mb": round(agent.rss_mb - floor.rss_mb, 1) if agent else None,
                    "pass": agent is not None and agent.rss_mb <= limit}
    return out


def fmt(r: Reading, extra: str = "") -> str:
    return f"  {r.name:<26}{r.rss_mb:>9.1f}{r.pss_mb:>9.1f}{r.uss_mb:>9.1f}{r.threads:>9}  {extra}"


def report(stack: dict[str, Reading], floors: dict[str, Reading], verdict: dict[str, dict[str, object]],
           info: dict[str, object], args: argparse.Namespace) -> str:
    ok = {True: "PASS", False: "MISS"}
    header = f"  {'':<26}{'RSS MB':>9}{'PSS MB':>9}{'USS MB':>9}{'threads':>9}  heavy libraries mapped"
    order = ["up", "coordinator", "agent", "camera", "sensor (demo)", "sink", "sensor (ds18b20)"]
    names = [n for n in order if n in stack] + sorted(set(stack) - set(order))
    lines = [
        f"command: {' '.join([display_path(sys.executable), *sys.argv])}",
        f"machine: {info['nproc']} cores, {info['cpu_model']}; {info['mosquitto']}; Python {info['python']}",
        (f"stack: `edgehive up` (embedded broker off) on Mosquitto, plus a DS18B20 sensor on faked sysfs; agent loaded: "
         f"{', '.join(info['agent_loaded']) or '?'} (x workers); TFLite floor: {', '.join(info['agent_models'])}; "  # type: ignore[arg-type]
         f"settled {args.settle:g} s, largest of {args.samples} samples 1 s apart"),
        "",
        header,
        "services (steady state: agent online, detections and sensor readings flowing)",
        *(fmt(stack[n], stack[n].heavy_modules) for n in names),
        (f"  {'sum':<26}{sum(r.rss_mb for r in stack.values()):>9.1f}{sum(r.pss_mb for r in stack.values()):>9.1f}"
         f"{sum(r.uss_mb for r in stack.values()):>9.1f}"),
        "floors (same run, read the same way)",
        *(fmt(r) for r in floors.values()),
        "",
    ]
    for name, v in verdict.items():
        if name == "agent":
            lines.append(f"target agent <= {LOADED_FLOOR} + {TARGET_AGENT_OVER_FLOOR_MB:g} MB RSS ({v['limit_mb']} MB):"
                         f"{'':<4}{ok[bool(v['pass'])]}  ({v['rss_mb']} MB, floor + {v['over_floor_mb']} MB)")
        else:
            lines.append(f"target {name} <= {TARGET_SERVICE_RSS_MB:g} MB RSS:{'':<{33 - len(name)}}"
                         f"{ok[bool(v['pass'])]}  ({v['rss_mb']} MB)")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--settle", type=float, default=10.0, help="seconds the steady fleet runs before it is read")
    parser.add_argument("--samples", type=int, default=5, help="readings per process, a second apart (the largest is kept)")
    parser.add_argument("--timeout", type=float, default=120.0, help="give up when the fleet is not steady after this many seconds")
    parser.add_argument("--models", default="", help="EDGEHIVE_MODELS of the agent (default: every model present in models/)")
    parser.add_argument("--edgehive", default=None, metavar="CMD", help="the edgehive command to run `up` with (default: the one beside this Python)")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the figures as JSON here")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder (logs, broker config, telemetry file)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    workdir = Path(tempfile.mkdtemp(prefix="edgehive-footprint-"))
    try:
        stack, info = measure_stack(args, workdir)
    finally:
        if args.keep:
            print(f"logs and config kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    floors, models = measure_floors(args, list(info["agent_loaded"]))  # type: ignore[call-overload]
    info.update(machine(), agent_models=models)
    verdict = verdicts(stack, floors)
    print(report(stack, floors, verdict, info, args))
    if args.json:
        document = {"command": " ".join(sys.argv), "settings": vars(args) | {"json": str(args.json)}, "info": info,
                    "services": [asdict(r) for r in stack.values()], "floors": [asdict(r) for r in floors.values()],
                    "verdict": verdict}
        args.json.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2, default=str))
    return 0 if all(v["pass"] for v in verdict.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
