"""An append-only journal of accepted and finished jobs, so a coordinator restart loses none.

The broker cannot be trusted with this: amqtt neither queues nor redelivers QoS 1 for
an offline client (DESIGN.md). Each accepted job is one JSON line; each finished job a
short end line. On start the journal is replayed, the still-open jobs come back, and
the file is rewritten with only those. The coordinator flushes the journal to the OS
after each burst of incoming messages and before their MQTT acknowledgements leave, so a
submission the broker saw acknowledged is on disk even if the process is killed
(`fsync` per job would cost more than the job; a power cut can lose the last second).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from pathlib import Path

import orjson
from pydantic import ValidationError

from edgehive.schemas import JobRequest

log = logging.getLogger(__name__)

_COMPACT_AFTER = 50_000


class JobJournal:
    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._file = None
        self._ended_since_compact = 0

    def recover(self) -> list[tuple[JobRequest, float, int]]:
        """Open jobs as (request with id, submitted epoch, attempts so far); rewrites the file."""
        if self.path is None:
            return []
        open_jobs: dict[str, tuple[JobRequest, float, int]] = {}
        if self.path.exists():
            for number, line in enumerate(self.path.read_bytes().splitlines(), 1):
                try:
                    entry = orjson.loads(line)
                    if "end" in entry:
                        open_jobs.pop(entry["end"], None)
                    else:
                        request = JobRequest.model_validate(entry["job"])
                        open_jobs[request.id] = (request, float(entry["ts"]), int(entry.get("attempt", 0)))  # type: ignore[index]
                except (orjson.JSONDecodeError, ValidationError, KeyError, TypeError, ValueError):
                    log.warning("journal %s line %d is unreadable (torn write?); skipped", self.path, number)
        self._rewrite(open_jobs.values())
        return list(open_jobs.values())

    def _rewrite(self, jobs: object) -> None:
        assert self.path is not None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self._file is not None:
            self._file.close()
        tmp = self.path.with_suffix(".tmp")
        with tmp.open("wb") as out:
            for request, ts, attempt in jobs:  # type: ignore[attr-defined]
                out.write(self._accept_line(request, ts, attempt))
        tmp.replace(self.path)
        self._file = self.path.open("ab")
        self._ended_since_compact = 0

    @staticmethod
    def _accept_line(request: JobRequest, ts: float, attempt: int) -> bytes:
        return orjson.dumps({"job": request.model_dump(exclude_none=True), "ts": ts, "attempt": attempt}) + b"\n"

    def accepted(self, request: JobRequest, ts: float, attempt: int = 0) -> None:
        if self._file is not None:
            self._file.write(self._accept_line(request, ts, attempt))

    def ended(self, job_id: str, open_jobs: Callable[[], Iterable[tuple[JobRequest, float, int]]]) -> None:
        """Record an end; now and then compact the file down to `open_jobs()`."""
        if self._file is None:
            return
        self._file.write(orjson.dumps({"end": job_id}) + b"\n")
        self._ended_since_compact += 1
        if self._ended_since_compact >= _COMPACT_AFTER:
            self._rewrite(open_jobs())

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
