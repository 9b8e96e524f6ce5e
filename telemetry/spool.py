"""A bounded, ordered queue of batches: in memory while it is small, on disk beyond that.

Every batch the sink seals goes through here, so there is one order for everything: the
writer always sends the oldest batch first and removes it only once it is stored
(`peek` → write → `done`). While InfluxDB is away, batches pile up: the first
`memory_max_bytes` in memory, the rest as files in the spool folder, one file per batch
(`<seq>-<points>.lp`, plain line protocol, so a stranded spool can be imported by hand with
`curl --data-binary @file`). Once anything is on disk, new batches go to disk too, behind it,
so memory always holds the oldest and the order never breaks. Files left by a previous run are
the oldest of all and are sent first; `persist()` at shutdown moves memory to disk so that a
restart loses nothing.

At the bound (`max_bytes`, memory and disk together) the OLDEST batches are dropped to make
room for the new one, as Telegraf's metric buffer does: during a long outage the recent past is
worth more than the distant past, and a full disk on a Pi is worse than a gap. Every dropped
point is counted (`dropped_points`); the sink reports the count in its `sink` points and on
`errors`.
"""

from __future__ import annotations

import builtins
import logging
import os
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

MEMORY_MAX_BYTES = 16 * 1024 * 1024
SUFFIX = ".lp"


@dataclass(frozen=True)
class Batch:
    """`points` lines of line protocol, each ending in a newline; `seq` orders batches."""

    seq: int
    points: int
    body: bytes


@dataclass(frozen=True)
class _OnDisk:
    seq: int
    points: int
    size: int
    path: Path


class Spool:
    """Thread-safe; `put` from the receiving thread, `peek`/`done` from the writing thread."""

    def __init__(self, directory: Path | None, max_bytes: int, memory_max_bytes: int = MEMORY_MAX_BYTES) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.memory_max_bytes = min(memory_max_bytes, max_bytes) if directory is not None else max_bytes
        self.dropped_points = 0
        self.dropped_batches = 0
        self._lock = threading.Lock()
        self._memory: deque[Batch] = deque()
        self._disk: deque[_OnDisk] = deque()
        self._memory_bytes = 0
        self._disk_bytes = 0
        self._next_seq = 1
        if directory is not None:
            self._load(directory)

    # -- queries ----------------------------------------------------------------------------

    @property
    def bytes(self) -> int:
        return self._memory_bytes + self._disk_bytes

    @property
    def disk_bytes(self) -> int:
        return self._disk_bytes

    @property
    def points(self) -> int:
        with self._lock:
            return sum(b.points for b in self._memory) + sum(d.points for d in self._disk)

    def __len__(self) -> int:
        return len(self._memory) + len(self._disk)

    # -- queue ------------------------------------------------------------------------------

    def put(self, body: builtins.bytes, points: int) -> int:  # builtins.: `bytes` here names the property
        """Append a batch; returns how many (older) points were dropped to make room for it."""
        with self._lock:
            dropped_before = self.dropped_points
            self._make_room(len(body))
            seq = self._next_seq
            self._next_seq += 1
            if self.directory is None or (not self._disk and self._memory_bytes + len(body) <= self.memory_max_bytes):
                self._memory.append(Batch(seq, points, body))
                self._memory_bytes += len(body)
            else:
                self._write_file(Batch(seq, points, body))
            return self.dropped_points - dropped_before

    def peek(self) -> Batch | None:
        """The oldest batch, still queued until `done(seq)`."""
        with self._lock:
            while True:
                if self._memory:
                    return self._memory[0]
                if not self._disk:
                    return None
                head = self._disk[0]
                try:
                    return Batch(head.seq, head.points, head.path.read_bytes())
                except OSError as error:  # removed or unreadable behind our back: count it, go on
                    log.error("spool file %s unreadable (%s); its %d points are lost", head.path, error, head.points)
                    self._drop_oldest()

    def done(self, seq: int) -> None:
        """Remove batch `seq` after it was stored (a no-op if it was dropped meanwhile)."""
        with self._lock:
            if self._memory and self._memory[0].seq == seq:
                self._memory_bytes -= len(self._memory.popleft().body)
            elif not self._memory and self._disk and self._disk[0].seq == seq:
                head = self._disk.popleft()
                self._disk_bytes -= head.size
                head.path.unlink(missing_ok=True)

    def persist(self) -> None:
        """Move the batches held in memory to disk (before the process exits)."""
        if self.directory is None:
            return
        with self._lock:
            while self._memory:
                batch = self._memory.pop()  # newest first, each in front of the disk queue
                self._memory_bytes -= len(batch.body)
                self._write_file(batch, front=True)

    # -- internals --------------------------------------------------------------------------

    def _make_room(self, size: int) -> None:
        while self._memory_bytes + self._disk_bytes + size > self.max_bytes and (self._memory or self._disk):
            self._drop_oldest()

    def _drop_oldest(self) -> None:
        if self._memory:
            batch = self._memory.popleft()
            self._memory_bytes -= len(batch.body)
            points = batch.points
        else:
            head = self._disk.popleft()
            self._disk_bytes -= head.size
            head.path.unlink(missing_ok=True)
            points = head.points
        self.dropped_points += points
        self.dropped_batches += 1

    def _write_file(self, batch: Batch, front: bool = False) -> None:
        assert self.directory is not None
        path = self.directory / f"{batch.seq:016d}-{batch.points}{SUFFIX}"
        temp = path.with_name("." + path.name + ".tmp")
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            temp.write_bytes(batch.body)
            os.replace(temp, path)  # a crash mid-write leaves a temp file, never half a batch
        except OSError as error:
            log.error("cannot spool %d points to %s (%s); they are lost", batch.points, self.directory, error)
            temp.unlink(missing_ok=True)
            self.dropped_points += batch.points
            self.dropped_batches += 1
            return
        entry = _OnDisk(batch.seq, batch.points, len(batch.body), path)
        if front:
            self._disk.appendleft(entry)
        else:
            self._disk.append(entry)
        self._disk_bytes += entry.size

    def _load(self, directory: Path) -> None:
        """Batches left by an earlier run: the oldest of all, sent before anything new."""
        if not directory.is_dir():
            return
        found = []
        for path in directory.iterdir():
            if path.name.startswith(".") and path.name.endswith(".tmp"):
                path.unlink(missing_ok=True)
                continue
            stem, _, points = path.name.removesuffix(SUFFIX).partition("-")
            if path.suffix != SUFFIX or not stem.isdigit() or not points.isdigit():
                continue
            found.append(_OnDisk(int(stem), int(points), path.stat().st_size, path))
        for entry in sorted(found, key=lambda e: e.seq):
            self._disk.append(entry)
            self._disk_bytes += entry.size
        if found:
            self._next_seq = self._disk[-1].seq + 1
            log.info("spool %s holds %d batches (%d bytes) from an earlier run; they are sent first", directory, len(found), self._disk_bytes)
