"""What onnxruntime's memory pattern costs an agent that runs an ONNX model many times.

The agent turns the pattern off for CPU-only sessions (agents/inference/onnx.py). This script
is where that figure comes from: one process per setting builds the session as the agent does
(the model rewritten to its input size, one intra-op and one inter-op thread, errors only),
runs it on a blank image `--runs` times, and reports its RSS after the first run and after the
last, and the time per run. Both settings run in one invocation, so their ratio is what counts.

    .venv/bin/python bench/onnx_mempattern.py [--model models/centerface.onnx] [--size 960x544] [--runs 16]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_CHILD = """
import json, sys, tempfile, time
from pathlib import Path
import numpy as np, onnxruntime
from edgehive.agents.inference.onnx import _with_input_size

def rss_mib():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")

path, width, height, runs, pattern = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5] == "on"
data = _with_input_size(path, path.read_bytes(), (width, height))
options = onnxruntime.SessionOptions()
options.intra_op_num_threads, options.inter_op_num_threads, options.log_severity_level = 1, 1, 3
options.enable_mem_pattern = pattern
with tempfile.NamedTemporaryFile(suffix=".onnx") as model:
    model.write(data)
    model.flush()
    session = onnxruntime.InferenceSession(model.name, options, providers=["CPUExecutionProvider"])
feed = session.get_inputs()[0]
shape = [d if isinstance(d, int) else 1 for d in feed.shape]
blank = np.zeros(shape, np.float32)
session.run(None, {feed.name: blank})
first = rss_mib()
started = time.perf_counter()
for _ in range(runs):
    session.run(None, {feed.name: blank})
per_run_ms = (time.perf_counter() - started) / runs * 1000
print(json.dumps({"first_mib": first, "last_mib": rss_mib(), "per_run_ms": per_run_ms}))
"""


def measure(model: Path, size: tuple[int, int], runs: int, pattern: bool) -> dict[str, float]:
    done = subprocess.run([sys.executable, "-c", _CHILD, str(model), str(size[0]), str(size[1]), str(runs), "on" if pattern else "off"],
                          cwd=ROOT, capture_output=True, text=True, check=True)
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "centerface.onnx")
    parser.add_argument("--size", default="960x544", help="the input size the agent rewrites the model to, WxH")
    parser.add_argument("--runs", type=int, default=16, help="runs after the first")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    if not args.model.exists():
        print(f"{args.model} is missing: fetch it with `edgehive models`", file=sys.stderr)
        return 2
    rows = {name: measure(args.model, (width, height), args.runs, pattern) for name, pattern in (("pattern on", True), ("pattern off", False))}
    print(f"{args.model.name} at {width}x{height}, RSS after the first run and after {args.runs} more, in MiB")
    for name, row in rows.items():
        print(f"  {name:<12} first {row['first_mib']:7.1f}  last {row['last_mib']:7.1f}  {row['per_run_ms']:6.1f} ms a run")
    on, off = rows["pattern on"], rows["pattern off"]
    print(f"off / on: RSS {off['last_mib'] / on['last_mib']:.2f}, time a run {off['per_run_ms'] / on['per_run_ms']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
