"""The ONNX models on each execution provider: milliseconds per inference, and the same detections.

    .venv/bin/python bench/gpu_onnx.py [--models centerface] [--providers cpu,cuda,tensorrt,auto]
                                       [--cpu-threads 1,max] [--runs 200] [--warmup 20] [--json PATH]

For each ONNX model in the manifest and each provider asked for, the model is loaded the way an
agent loads it (`BackendChoice("onnx", threads, provider)`, `create_backend`, `load_detector`:
edgehive's own onnx backend, not onnxruntime directly), and the bench reports which providers
the session really runs on (`model.providers`). A provider that cannot run here is a row with
the backend's own refusal (for example "CUDA execution provider not available: onnxruntime
1.32.0 here offers ..."), which is the answer on a machine without a GPU. `auto` is what an
agent does by default: TensorRT, then CUDA, where onnxruntime offers them.

Each loaded model runs `--warmup` untimed frames (cuDNN picks its convolution algorithms on the
first ones), then `--runs` timed `Detector.process` calls on one 1920×1080 frame (the four astronauts below). Reported:
p50 and p90 of `inference_ms` (what the detector itself records: tensor in, `session.run`,
outputs back in host memory, so a GPU's copies are included) and p50 of the whole `process`
call (letterbox, tensor, inference, decode). Then it runs on real photos (scikit-image's
astronaut, chelsea and coffee, and a 1080p frame with the astronaut pasted at half size at
four places) and checks that every provider finds what the CPU provider finds: the same number of
detections, each CPU box matched by one of the same label with IoU >= `--min-iou`.

Exit status 0 when every provider that loaded agrees with the CPU, 1 otherwise (2 when the CPU
provider itself did not load).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # vision_fixtures: the photos the tests use

import numpy as np  # noqa: E402
from vision_fixtures import canvas_with_astronauts, photo  # noqa: E402

from edgehive.agents.detection import DetectionError, Detector, load_detector  # noqa: E402
from edgehive.agents.inference import BackendChoice, BackendError, create_backend, offered_providers  # noqa: E402
from edgehive.agents.modelstore import Manifest, load_manifest  # noqa: E402

PHOTOS = ("astronaut", "chelsea", "coffee", "four_astronauts")


@dataclass
class Row:
    model: str
    asked: str  # the provider setting, as EDGEHIVE_ONNX_PROVIDERS takes it
    threads: int
    providers: list[str] = field(default_factory=list)  # what the session runs on, best first
    error: str = ""
    load_s: float = 0.0
    infer_p50_ms: float = 0.0
    infer_p90_ms: float = 0.0
    process_p50_ms: float = 0.0
    runs: int = 0
    detections: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    agrees_with_cpu: bool | None = None
    disagreement: str = ""


def images() -> dict[str, np.ndarray]:
    found = {name: photo(name) for name in PHOTOS[:3]}
    found["four_astronauts"] = canvas_with_astronauts((100, 100), (1500, 120), (250, 760), (1400, 800), size=256)
    return found


def box_iou(a: list[float], b: list[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def compare(reference: dict[str, list[dict[str, Any]]], other: dict[str, list[dict[str, Any]]], min_iou: float) -> str:
    """'' when `other` found what `reference` found on every photo; else what differs."""
    problems = []
    for name, want in reference.items():
        got = list(other.get(name, []))
        if len(got) != len(want):
            problems.append(f"{name}: {len(want)} detections on the CPU, {len(got)} here")
            continue
        for w in want:
            best = max(((box_iou(w["box"], g["box"]), i) for i, g in enumerate(got) if g["label"] == w["label"]), default=(0.0, -1))
            if best[0] < min_iou:
                problems.append(f"{name}: {w['label']} {w['box']} has no match (best IoU {best[0]:.3f})")
                continue
            got.pop(best[1])
    return "; ".join(problems)


def load(manifest: Manifest, model: str, asked: str, threads: int) -> tuple[Detector | None, str, float]:
    config, why = BackendChoice("onnx", threads, asked).choose(manifest.get(model).model_format)
    if config is None:
        return None, why, 0.0
    start = time.perf_counter()
    try:
        detector = load_detector(manifest.get(model), create_backend(config))
    except (DetectionError, BackendError) as exc:
        return None, str(exc), time.perf_counter() - start
    return detector, "", time.perf_counter() - start


def measure(manifest: Manifest, model: str, asked: str, threads: int, frames: dict[str, np.ndarray], runs: int, warmup: int) -> Row:
    row = Row(model, asked, threads)
    detector, row.error, row.load_s = load(manifest, model, asked, threads)
    row.load_s = round(row.load_s, 2)
    if detector is None:
        return row
    row.providers = list(getattr(detector.model, "providers", []))
    frame = frames["four_astronauts"]
    for _ in range(warmup):
        detector.process(frame)
    inference: list[float] = []
    whole: list[float] = []
    for _ in range(runs):
        start = time.perf_counter()
        output = detector.process(frame)
        whole.append((time.perf_counter() - start) * 1000.0)
        inference.append(output.inference_ms)
    row.runs = runs
    row.infer_p50_ms = round(statistics.median(inference), 3)
    row.infer_p90_ms = round(float(np.percentile(inference, 90)), 3)
    row.process_p50_ms = round(statistics.median(whole), 3)
    for name, image in frames.items():
        row.detections[name] = [{"label": d.label, "score": d.score, "box": d.box} for d in detector.detect(image)]
    return row


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import onnxruntime

        info["onnxruntime"] = f"{onnxruntime.__version__} ({Path(onnxruntime.__file__).parent})"
    except Exception as exc:  # a broken install can raise anything at import time
        info["onnxruntime"] = f"does not import: {type(exc).__name__}: {exc}"
    info["offered_providers"] = offered_providers()
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                             check=False, capture_output=True, text=True, timeout=30)
        info["gpu"] = smi.stdout.strip() or smi.stderr.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        info["gpu"] = f"none ({type(exc).__name__}: {exc})"
    return info


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="", help="comma-separated manifest names (default: every ONNX model)")
    parser.add_argument("--providers", default="cpu,cuda,tensorrt,auto", help="each one a row, as EDGEHIVE_ONNX_PROVIDERS takes it")
    parser.add_argument("--cpu-threads", default="1,max", help="CPU provider rows: threads per model ('max' = every core)")
    parser.add_argument("--gpu-threads", type=int, default=1, help="CPU threads for GPU rows (operators the GPU provider lacks)")
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--min-iou", type=float, default=0.9)
    parser.add_argument("--models-dir", type=Path, default=ROOT / "models")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    manifest = load_manifest(args.models_dir)
    models = [m for m in args.models.split(",") if m] or [s.name for s in manifest.models if s.model_format == "onnx"]
    cpu_threads = sorted({(os.cpu_count() or 1) if t == "max" else int(t) for t in args.cpu_threads.split(",")})
    frames = images()
    info = machine()
    print(json.dumps(info, indent=1), flush=True)
    rows: list[Row] = []
    status = 0
    for model in models:
        runs = [("cpu", t) for t in cpu_threads] + [(p, args.gpu_threads) for p in args.providers.split(",") if p and p != "cpu"]
        model_rows = []
        for asked, threads in runs:
            row = measure(manifest, model, asked, threads, frames, args.runs, args.warmup)
            model_rows.append(row)
            print(f"{model} {asked} x{threads}: {row.providers or row.error} load {row.load_s} s, "
                  f"infer p50 {row.infer_p50_ms} ms p90 {row.infer_p90_ms} ms, process p50 {row.process_p50_ms} ms", flush=True)
        reference = next((r for r in model_rows if r.providers == ["cpu"]), None)
        if reference is None:
            status = 2
        for row in model_rows:
            if reference is not None and row.providers and row is not reference:
                row.disagreement = compare(reference.detections, row.detections, args.min_iou)
                row.agrees_with_cpu = not row.disagreement
                status = status or (0 if row.agrees_with_cpu else 1)
        rows += model_rows

    print("\n| model | asked | threads | runs on | load s | infer p50 ms | infer p90 ms | process p50 ms | same detections as CPU |")
    print("| --- | --- | ---: | --- | ---: | ---: | ---: | ---: | --- |")
    for r in rows:
        same = "—" if r.agrees_with_cpu is None else ("yes" if r.agrees_with_cpu else f"NO: {r.disagreement}")
        runs_on = ", ".join(r.providers) if r.providers else f"not loaded: {r.error}"
        print(f"| {r.model} | {r.asked} | {r.threads} | {runs_on} | {r.load_s} | {r.infer_p50_ms} | {r.infer_p90_ms} | {r.process_p50_ms} | {same} |")
    for r in rows:
        if r.providers:
            found = {k: [(d["label"], d["score"]) for d in v] for k, v in r.detections.items()}
            print(f"{r.model} on {', '.join(r.providers)} (x{r.threads}): {found}")
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "rows": [asdict(r) for r in rows]}, indent=1))
    return status


if __name__ == "__main__":
    sys.exit(main())
