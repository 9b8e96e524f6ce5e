"""The fusion groups' durable state: an append-only log of JSON lines in `state_dir`.

Two kinds of line: a group snapshot (`windows` closed so far, `done` = the last window that
ended, fused or failed, and the `prior` for the next) and a closed window (`closed`: number,
bounds and readings) accepted into the queue. On start, a group's windows closed after `done`
come back as waiting, so a coordinator killed with windows queued loses none of them; those the
job journal also holds are adopted as jobs instead (coordinator/core.py `restore`).

Lines are flushed to the OS after every read burst, before the job journal (a crash between
the two then re-runs a window, with the same prior and the same result, rather than losing
one). Now and then, and on start, the log is compacted to a snapshot per group plus the
windows still pending. The lines are made where the groups live (coordinator/fusion.py) and
written here, by whichever thread does the coordinator's disk I/O.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import orjson

log = logging.getLogger(__name__)

COMPACT_AFTER = 10_000


@dataclass
class Snapshot:
    windows: int = 0
    done: int = 0
    prior: dict[str, Any] | None = None
    until: float | None = None  # the end of the last window closed (older readings were in it); absent in older logs


@dataclass
class Saved:
    """What the log held for one group."""

    snapshot: Snapshot = field(default_factory=Snapshot)
    closed: dict[int, dict[str, Any]] = field(default_factory=dict)  # number → {number, start, end, readings}


@dataclass
class FusionWrite:
    """Lines for the log: appended, or (`rewrite`) the whole log, replacing what is there."""

    lines: list[bytes]
    rewrite: bool = False


def snapshot_line(group: str, snapshot: Snapshot) -> bytes:
    line: dict[str, Any] = {"group": group, "windows": snapshot.windows, "done": snapshot.done, "prior": snapshot.prior}
    if snapshot.until is not None:
        line["until"] = snapshot.until
    return orjson.dumps(line)


def closed_line(group: str, window: dict[str, Any]) -> bytes:
    return orjson.dumps({"group": group, "closed": window})


class FusionLog:
    """The file. The coordinator renders lines where its state lives (coordinator/fusion.py
    `take_state`) and writes them here from the thread that does its disk I/O."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: BinaryIO | None = None

    def load(self) -> dict[str, Saved]:
        saved: dict[str, Saved] = {}
        if not self.path.is_file():
            return saved
        for number, line in enumerate(self.path.read_bytes().splitlines(), 1):
            try:
                entry = orjson.loads(line)
                group = saved.setdefault(str(entry["group"]), Saved())
                if "closed" in entry:
                    window = entry["closed"]
                    group.closed[int(window["number"])] = window
                else:
                    until = entry.get("until")
                    group.snapshot = Snapshot(int(entry["windows"]), int(entry.get("done", 0)), entry["prior"],
                                              None if until is None else float(until))
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                log.warning("fusion state %s line %d is unreadable (torn write?); skipped", self.path, number)
        return saved

    def write(self, change: FusionWrite) -> None:
        """Append the lines and hand them to the OS, or rewrite the log as them."""
        if change.rewrite:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self._file is not None:
                self._file.close()
                self._file = None
            tmp = self.path.with_suffix(".tmp")
            tmp.write_bytes(b"".join(line + b"\n" for line in change.lines))
            os.replace(tmp, self.path)
            self._file = self.path.open("ab")
            return
        if not change.lines:
            return
        if self._file is None:
            self._file = self.path.open("ab")
        self._file.write(b"\n".join(change.lines) + b"\n")
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
