"""Runs jobs in a bounded worker pool and measures how long each kind takes.

The measured service time goes into every heartbeat; the coordinator's scheduler
weighs nodes by it, so a slow Pi naturally gets fewer frames than a Jetson.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from pydantic import ValidationError

from edgehive.bus import describe_validation_error
from edgehive.schemas import Job, Result, Timings

from .kinds import JobFailed, KindRegistry

log = logging.getLogger(__name__)

_EWMA_ALPHA = 0.2
_MAX_ERROR = 2000  # Result.error's max_length


class JobRunner:
    """Accepts at most `capacity` jobs at once and runs `workers` of them in parallel."""

    def __init__(
        self,
        kinds: KindRegistry,
        node: str,
        workers: int,
        capacity: int,
        publish_result: Callable[[Result], None],
    ) -> None:
        self.kinds = kinds
        self.node = node
        self.workers = workers
        self.capacity = capacity
        self._publish_result = publish_result
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="job")
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._held: dict[str, Job] = {}
        self._running = 0
        self.done = 0
        self.failed = 0
        self.service_by_kind: dict[str, float] = {}

    # -- accounting --------------------------------------------------------------------------

    def held_ids(self) -> list[str]:
        with self._lock:
            return list(self._held)

    def counts(self) -> tuple[int, int]:
        """(running, waiting for a worker)."""
        with self._lock:
            return self._running, len(self._held) - self._running

    def mean_service_s(self) -> float | None:
        values = list(self.service_by_kind.values())
        return sum(values) / len(values) if values else None

    # -- work --------------------------------------------------------------------------------

    def try_accept(self, job: Job, received: float, frame: bytes | None = None) -> bool:
        """Queue `job` (with its frame, for kinds that take one); False when full or when it
        is already here (a redelivery)."""
        with self._lock:
            if job.id in self._held or len(self._held) >= self.capacity:
                return False
            self._held[job.id] = job
        kind = self.kinds.get(job.kind)
        if kind is not None and kind.inline:
            self._run(job, received, frame)
        else:
            self._pool.submit(self._run, job, received, frame)
        return True

    def is_held(self, job_id: str) -> bool:
        with self._lock:
            return job_id in self._held

    def _run(self, job: Job, received: float, frame: bytes | None = None) -> None:
        with self._lock:
            self._running += 1
        started = time.time()
        ok, output, error = self._execute(job, started, frame)
        finished = time.time()
        self._record(job.kind, ok, finished - started)
        kind_takes_frame = frame is not None
        if error is not None and len(error) > _MAX_ERROR:
            error = error[: _MAX_ERROR - 1] + "…"
        try:
            self._publish_result(Result(
                job_id=job.id, kind=job.kind, node=self.node, source=job.source, attempt=job.attempt,
                ok=ok, output=output, error=error,
                timings=Timings(
                    captured=job.params.get("captured"), queued=job.submitted, dispatched=job.dispatched, received=received,
                    started=started, finished=finished, inferred=finished if kind_takes_frame else None, published=time.time(),
                ),
            ))
        finally:
            with self._lock:
                self._held.pop(job.id, None)
                self._running -= 1
                self._idle.notify_all()

    def _execute(self, job: Job, started: float, frame: bytes | None) -> tuple[bool, object, str | None]:
        kind = self.kinds.get(job.kind)
        if kind is None:
            return False, None, f"this node does not run job kind {job.kind!r}"
        if job.deadline is not None and started > job.deadline:
            return False, None, "deadline passed before the job could start"
        try:
            params = kind.params.model_validate(job.params)
        except ValidationError as error:
            return False, None, f"invalid params: {describe_validation_error(error)}"
        try:
            if kind.takes_frame:
                if frame is None:
                    return False, None, f"job kind {job.kind!r} needs a frame and none came with the job"
                return True, kind.run(params, frame), None
            return True, kind.run(params), None
        except JobFailed as error:
            return False, None, str(error) or type(error).__name__
        except Exception as error:  # a failing job is a result, never a dead agent
            log.exception("job %s (%s) raised", job.id, job.kind)
            return False, None, f"{type(error).__name__}: {error}"

    def _record(self, kind: str, ok: bool, seconds: float) -> None:
        with self._lock:
            if not ok:  # a failure is usually instant; counting it would make a failing node look fast
                self.failed += 1
                return
            self.done += 1
            previous = self.service_by_kind.get(kind)
            self.service_by_kind[kind] = seconds if previous is None else previous + _EWMA_ALPHA * (seconds - previous)

    def wait_idle(self, timeout_s: float) -> bool:
        """Block until every held job has finished (used when draining)."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while self._held:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(remaining)
        return True

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
