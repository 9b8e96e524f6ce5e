"""An append-only journal of accepted and finished jobs, so a coordinator restart loses none.

The broker cannot be trusted with this: the embedded amqtt broker neither queues nor
redelivers QoS 1 for an offline client. Each accepted job is one JSON line; each finished
job a short end line. On start the journal is replayed, the still-open jobs come back, and
the file is rewritten with only those. The coordinator flushes the journal to the OS after
each burst of incoming messages and before their MQTT acknowledgements leave, so a
submission the broker saw acknowledged is on disk even if the process is killed (`fsync`
per job would cost more than the job; a power cut can lose the last second).

A journal that cannot be written (disk full, file removed, a bug) must never stop the
coordinator from taking work: the failure is reported once, jobs keep running from memory,
and the journal heals itself by rewriting the file from the open jobs, retried with backoff
until it succeeds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import BinaryIO

import orjson
from pydantic import ValidationError

from edgehive.schemas import JobRequest

log = logging.getLogger(__name__)

OpenJob = tuple[JobRequest, float, int]  # (request with id, submitted epoch, attempts so far)

_COMPACT_AFTER = 50_000
_HEAL_BACKOFF_MAX_S = 30.0


def _ignore(problem: str) -> None:
    """The default `on_error`: the log line is written anyway."""


class JobJournal:
    def __init__(
        self,
        path: Path | None,
        open_jobs: Callable[[], Iterable[OpenJob]] | None = None,
        on_error: Callable[[str], None] = _ignore,
        compact_after: int = _COMPACT_AFTER,
    ) -> None:
        """`open_jobs`: what a compaction or a heal writes; by default the journal's own account of
        the jobs accepted and not ended (so it needs nothing from the thread that owns the jobs)."""
        self.path = path
        self._open: dict[str, OpenJob] = {}
        self._open_jobs = open_jobs or (lambda: list(self._open.values()))
        self._on_error = on_error
        self.compact_after = compact_after
        self._file: BinaryIO | None = None
        self._ended_since_compact = 0
        self.broken: str | None = None  # why the file is not being written, until it heals
        self.problem: str | None = None  # what was reported about it, to repeat to late listeners
        self.failures = 0
        self._next_heal = 0.0
        self._heal_delay = 0.5

    def recover(self) -> list[OpenJob]:
        """Open jobs as (request with id, submitted epoch, attempts so far); rewrites the file."""
        if self.path is None:
            return []
        open_jobs: dict[str, OpenJob] = {}
        try:
            data = self.path.read_bytes() if self.path.exists() else b""
        except OSError as error:
            self._fail("could not be read", error)
            return []
        for number, line in enumerate(data.splitlines(), 1):
            try:
                entry = orjson.loads(line)
                if "end" in entry:
                    open_jobs.pop(entry["end"], None)
                else:
                    request = JobRequest.model_validate(entry["job"])
                    assert request.id is not None
                    open_jobs[request.id] = (request, float(entry["ts"]), int(entry.get("attempt", 0)))
            except (orjson.JSONDecodeError, ValidationError, KeyError, TypeError, ValueError, AssertionError):
                log.warning("journal %s line %d is unreadable (torn write?); skipped", self.path, number)
        jobs = list(open_jobs.values())
        self._open = dict(open_jobs)
        self._try_rewrite(jobs)
        return jobs

    # -- writing -----------------------------------------------------------------------------

    def _rewrite(self, jobs: Iterable[OpenJob]) -> None:
        """Write the open jobs to a new file, then swap it in: the old file stays whole until the
        new one is complete, and the handle is only replaced once the new file is open."""
        assert self.path is not None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        with tmp.open("wb") as out:
            for request, ts, attempt in jobs:
                out.write(self._accept_line(request, ts, attempt))
        tmp.replace(self.path)
        new_file = self.path.open("ab")
        old, self._file = self._file, new_file
        if old is not None:
            self._close_quietly(old)
        self._ended_since_compact = 0

    def _try_rewrite(self, jobs: Iterable[OpenJob]) -> bool:
        try:
            self._rewrite(jobs)
        except (OSError, TypeError, ValueError) as error:
            self._fail("could not be rewritten", error)
            return False
        if self.broken is not None:
            log.warning("journal %s healed: rewritten with the open jobs", self.path)
            self.broken = self.problem = None
            self._heal_delay = 0.5
        return True

    @staticmethod
    def _accept_line(request: JobRequest, ts: float, attempt: int) -> bytes:
        return orjson.dumps({"job": request.model_dump(exclude_none=True), "ts": ts, "attempt": attempt}) + b"\n"

    def _write(self, line: Callable[[], bytes]) -> None:
        if self._file is None or self.broken is not None:
            return  # disabled, or broken: the open jobs are rewritten when it heals
        try:
            self._file.write(line())
        except (OSError, TypeError, ValueError) as error:
            self._fail("write failed", error)

    def accepted(self, request: JobRequest, ts: float, attempt: int = 0) -> None:
        assert request.id is not None
        self._open[request.id] = (request, ts, attempt)
        self._write(lambda: self._accept_line(request, ts, attempt))

    def replace(self, jobs: Iterable[OpenJob]) -> None:
        """The open jobs are exactly `jobs` from now on (a standby given the active one's full copy)."""
        self._open = {request.id: (request, ts, attempt) for request, ts, attempt in jobs if request.id is not None}
        if self.path is not None:
            self._try_rewrite(list(self._open.values()))

    def ended(self, job_id: str) -> None:
        """Record an end; now and then compact the file down to the open jobs."""
        self._open.pop(job_id, None)
        self._write(lambda: orjson.dumps({"end": job_id}) + b"\n")
        if self._file is None or self.broken is not None:
            return
        self._ended_since_compact += 1
        if self._ended_since_compact >= self.compact_after:
            self._try_rewrite(self._open_jobs())

    def flush(self) -> None:
        """Hand buffered lines to the OS; while broken, try to heal (with backoff)."""
        if self.broken is not None:
            if self.path is not None and time.monotonic() >= self._next_heal:
                self._try_rewrite(self._open_jobs())
            return
        if self._file is not None:
            try:
                self._file.flush()
            except (OSError, ValueError) as error:
                self._fail("write failed", error)

    # -- failures ----------------------------------------------------------------------------

    def _fail(self, what: str, error: BaseException) -> None:
        """Stop writing, say so once per outage, and schedule a rewrite."""
        self.failures += 1
        first = self.broken is None
        self.broken = f"{type(error).__name__}: {error}"
        if self._file is not None:
            self._close_quietly(self._file)
            self._file = None
        self._next_heal = time.monotonic() + self._heal_delay
        self._heal_delay = min(_HEAL_BACKOFF_MAX_S, self._heal_delay * 2)
        if first:
            self.problem = (f"job journal {self.path} {what} ({self.broken}); jobs continue from memory and the "
                            "journal is rewritten as soon as it can be (a coordinator restart before then loses them)")
            log.error("%s", self.problem)
            self._on_error(self.problem)

    @staticmethod
    def _close_quietly(handle: BinaryIO) -> None:
        try:
            handle.close()
        except OSError as error:  # a buffered write failing at close; the rewrite replaces it
            log.debug("closing the journal: %s", error)

    def close(self) -> None:
        if self._file is not None:
            self._close_quietly(self._file)
            self._file = None
