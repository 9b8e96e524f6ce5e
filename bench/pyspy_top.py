"""Rank hot spots in py-spy `-f raw` (collapsed stack) files, such as `bench/vision.py --profile DIR` writes.

    .venv/bin/python bench/pyspy_top.py DIR/*.txt [--top 15] [--match SUBSTRING]

For each file: samples per thread (by its entry function), then the functions with the most
inclusive samples (anywhere on the stack) and the most self samples (the leaf frame), as a
share of all working samples (a thread blocked in select() or a queue is left out). py-spy records only non-idle samples unless run with --idle, and it
does not see inside C code (a LiteRT invoke or cv2.imdecode counts at the Python line that
called it).
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

# Leaf frames that are a thread waiting, not working. py-spy's own idle detection misses
# these with --nonblocking (paho's select() shows up as "active").
WAITING = (
    "Client._loop (paho/mqtt/client.py:1667)",  # paho 2.2's select() on the socket
    "Condition.wait (threading.py:",
    "Event.wait (threading.py:",
    "_worker (concurrent/futures/thread.py:81)",  # an idle worker's queue.get
)


def function(frame: str) -> str:
    """`Detector.process (agents/detection/detector.py:49)` → `Detector.process (agents/detection/detector.py)`."""
    return re.sub(r":\d+\)$", ")", frame)


def thread_of(frames: list[str]) -> str:
    """A readable name for the thread a stack belongs to."""
    joined = ";".join(frames)
    if "FastClient" in joined or "PlainClient" in joined or "Client._thread_main" in joined or "loop_forever" in joined:
        return "paho network thread"
    if "_worker (concurrent/futures/thread.py" in joined:
        return "job worker"
    if "_heartbeat_loop" in joined:
        return "heartbeat"
    if "_tick_loop" in joined:
        return "coordinator ticker"
    return frames[0].split(" ")[0] if frames else "?"


def analyse(path: Path, top: int, match: str | None) -> str:
    inclusive: Counter[str] = Counter()
    leaf: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    total = waiting = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        frames = stack.split(";")
        if frames[-1].startswith(WAITING):
            waiting += n
            continue
        total += n
        threads[thread_of(frames)] += n
        for name in {function(f) for f in frames}:
            inclusive[name] += n
        leaf[frames[-1]] += n
    if not total:
        return f"{path.name}: no samples"

    def pct(n: int) -> str:
        return f"{100.0 * n / total:5.1f} %"

    out = [f"== {path.name}: {total} working samples (left out as waiting: {waiting})", "  threads: " + ", ".join(f"{t} {pct(n).strip()}" for t, n in threads.most_common())]
    out.append("  inclusive (function anywhere on the stack):")
    shown = 0
    for name, n in inclusive.most_common():
        if match and match not in name:
            continue
        out.append(f"    {pct(n)}  {name}")
        shown += 1
        if shown >= top:
            break
    out.append("  self (leaf frame, with line):")
    for name, n in leaf.most_common(top):
        out.append(f"    {pct(n)}  {name}")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--match", default=None, help="only inclusive functions whose name contains this")
    args = parser.parse_args()
    for path in args.files:
        print(analyse(path, args.top, args.match))


if __name__ == "__main__":
    main()
