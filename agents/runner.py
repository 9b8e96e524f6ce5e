"""Runs jobs in a bounded worker pool and measures how long each kind (and each model) takes.

The measured service time goes into every heartbeat; the coordinator's scheduler
weighs nodes by it, so a slow Pi naturally gets fewer frames than a Jetson.

Time limits: a job's deadline (and its kind's `max_runtime_s`) holds while it runs, by
setting its cancel event (cancellable kinds return at once; the result is a failure
that says why). A job that waits for a worker past its deadline fails without running;
one that waited longer than `prefetch_wait_max_s` (a worker is stuck) is handed back for
another node to run, once per job: if the coordinator sends it here again, it stays.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from pydantic import ValidationError

from edgehive.bus import describe_validation_error
from edgehive.schemas import Job, Result, Timings

from .kinds import JobFailed, KindRegistry

log = logging.getLogger(__name__)

_EWMA_ALPHA = 0.2
_MAX_ERROR = 2000  # Result.error's max_length
_MAX_MODELS = 256  # the heartbeat's bound on service_by_model
_HANDED_BACK_MAX = 4096  # ids remembered so that a job is handed back at most once


@dataclass
class _Held:
    """A job this node holds: waiting for a worker until `started`."""

    job: Job
    received: float
    frame: bytes | None
    accepted_mono: float
    cancel: threading.Event = field(default_factory=threading.Event)
    started: bool = False
    finishing: bool = False  # its result is being published: its slot is free for the next job
    cancel_reason: str | None = None
    hand_back: bool = False


def _ewma(table: dict[str, float], key: str, seconds: float) -> None:
    previous = table.get(key)
    table[key] = seconds if previous is None else previous + _EWMA_ALPHA * (seconds - previous)


class JobRunner:
    """Accepts at most `capacity` jobs at once and runs `workers` of them in parallel.
    `hand_back(job, received, reason)` returns a job to the coordinator (nodes/{node}/declined)."""

    def __init__(
        self,
        kinds: KindRegistry,
        node: str,
        workers: int,
        capacity: int,
        publish_result: Callable[[Result], None],
        hand_back: Callable[[Job, float, str], None] | None = None,
    ) -> None:
        self.kinds = kinds
        self.node = node
        self.workers = workers
        self.capacity = capacity
        self._publish_result = publish_result
        self._hand_back = hand_back
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="job")
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._held: dict[str, _Held] = {}
        self._handed_back: OrderedDict[str, None] = OrderedDict()
        self._running = 0
        self._finishing = 0  # held entries whose result is being published (they no longer use a slot)
        self.done = 0
        self.failed = 0
        self.service_by_kind: dict[str, float] = {}
        self.service_by_model: dict[str, float] = {}

    # -- accounting --------------------------------------------------------------------------

    def held_ids(self) -> list[str]:
        with self._lock:
            return list(self._held)

    def running_ids(self) -> list[str]:
        """Held jobs that have started (the rest wait for a worker)."""
        with self._lock:
            return [job_id for job_id, entry in self._held.items() if entry.started]

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
        entry = _Held(job, received, frame, time.monotonic())
        with self._lock:
            if job.id in self._held or len(self._held) - self._finishing >= self.capacity:
                return False
            self._held[job.id] = entry
        kind = self.kinds.get(job.kind)
        if kind is not None and kind.inline:
            self._run(entry)
        else:
            self._pool.submit(self._run, entry)
        return True

    def is_held(self, job_id: str) -> bool:
        with self._lock:
            return job_id in self._held

    def _limit(self, job: Job, started: float) -> tuple[float, str] | None:
        """When the job must end (epoch) and why: its deadline or its kind's max_runtime_s."""
        kind = self.kinds.get(job.kind)
        limits = []
        if job.deadline is not None:
            limits.append((job.deadline, self._deadline_reason(job, "while running")))
        if kind is not None and kind.max_runtime_s is not None:
            limits.append((started + kind.max_runtime_s, f"ran longer than kind {job.kind!r} allows ({kind.max_runtime_s:g} s)"))
        return min(limits) if limits else None

    def _deadline_reason(self, job: Job, when: str) -> str:
        """The same words the coordinator uses when it fails a job at its deadline ("deadline of
        2 s passed while running on node pi-1"): whichever of the two speaks first, a submitter
        reads one reason. The job carries its deadline as an epoch; `submitted` gives back `deadline_s`."""
        assert job.deadline is not None
        return f"deadline of {job.deadline - job.submitted:g} s passed {when} on node {self.node}"

    def _cancel(self, entry: _Held, reason: str, hand_back: bool = False) -> None:
        with self._lock:
            if entry.cancel_reason is None:
                entry.cancel_reason, entry.hand_back = reason, hand_back
        entry.cancel.set()

    def _run(self, entry: _Held) -> None:
        job, received, frame = entry.job, entry.received, entry.frame
        with self._lock:
            if self._held.get(job.id) is not entry:
                return  # handed back or failed while it waited
            entry.started = True
            self._running += 1
        started = time.time()
        limit = self._limit(job, started)
        timer = None
        if limit is not None and limit[0] > started:
            timer = threading.Timer(limit[0] - started, self._cancel, (entry, limit[1]))
            timer.daemon = True
            timer.start()
        try:
            ok, output, error = self._execute(job, started, frame, entry.cancel)
        finally:
            if timer is not None:
                timer.cancel()
        finished = time.time()
        if entry.cancel_reason is not None:
            ok, output, error = False, None, entry.cancel_reason
        if entry.hand_back and self._hand_back is not None:
            try:
                self._hand_back(job, received, entry.cancel_reason or "handed back")
            finally:
                self._release(job.id)
            return
        self._record(job.kind, ok, finished - started, self._model_of(job))
        # The slot is free before the result leaves: the coordinator sends the next job as soon as
        # it reads the result, which can be before this thread runs again. The job stays held
        # (listed in heartbeats) until its result is queued.
        with self._lock:
            entry.finishing = True
            self._finishing += 1
        try:
            self._publish(job, received, started, ok, output, error, finished, frame is not None)
        finally:
            self._release(job.id)

    def _publish(self, job: Job, received: float, started: float | None, ok: bool, output: object, error: str | None,
                 finished: float | None, took_frame: bool = False) -> None:
        if error is not None and len(error) > _MAX_ERROR:
            error = error[: _MAX_ERROR - 1] + "…"
        self._publish_result(Result(
            job_id=job.id, kind=job.kind, node=self.node, source=job.source, attempt=job.attempt,
            ok=ok, output=output, error=error,
            timings=Timings(
                captured=job.params.get("captured"), queued=job.submitted, dispatched=job.dispatched, received=received,
                started=started, finished=finished, inferred=finished if took_frame else None, published=time.time(),
            ),
        ))

    def _release(self, job_id: str) -> None:
        with self._lock:
            entry = self._held.pop(job_id, None)
            if entry is not None and entry.finishing:
                self._finishing -= 1
            self._running -= 1
            self._idle.notify_all()

    def check_waiting(self, max_wait_s: float) -> None:
        """Called every heartbeat: a waiting job whose deadline passed fails without running; one
        that waited longer than `max_wait_s` (0: never) is handed back, at most once per job."""
        now, now_mono = time.time(), time.monotonic()
        expired: list[_Held] = []
        stale: list[_Held] = []
        with self._lock:
            for job_id, entry in list(self._held.items()):
                if entry.started:
                    continue
                if entry.job.deadline is not None and now > entry.job.deadline:
                    expired.append(self._held.pop(job_id))
                elif (max_wait_s and self._hand_back is not None and now_mono - entry.accepted_mono > max_wait_s
                      and job_id not in self._handed_back):
                    stale.append(self._held.pop(job_id))
                    self._handed_back[job_id] = None
                    if len(self._handed_back) > _HANDED_BACK_MAX:
                        self._handed_back.popitem(last=False)
            if expired or stale:
                self._idle.notify_all()
        for entry in expired:
            self._record(entry.job.kind, False, 0.0)
            self._publish(entry.job, entry.received, None, False, None, self._deadline_reason(entry.job, "while waiting for a worker"), None)
        for entry in stale:
            assert self._hand_back is not None
            log.warning("job %s waited %.0f s for a worker; handing it back", entry.job.id, now_mono - entry.accepted_mono)
            self._hand_back(entry.job, entry.received, f"waited {now_mono - entry.accepted_mono:.0f} s for a worker (prefetch_wait_max_s)")

    def cancel_all(self, reason: str) -> None:
        """Hand back every held job (drain out of time): waiting ones at once, running
        cancellable ones as soon as they stop."""
        with self._lock:
            entries = list(self._held.values())
            waiting = [e for e in entries if not e.started]
            for entry in waiting:
                del self._held[entry.job.id]
            self._idle.notify_all()
        for entry in waiting:
            if self._hand_back is not None:
                self._hand_back(entry.job, entry.received, reason)
        for entry in entries:
            if entry.started:
                self._cancel(entry, reason, hand_back=True)

    def _execute(self, job: Job, started: float, frame: bytes | None, cancel: threading.Event) -> tuple[bool, object, str | None]:
        kind = self.kinds.get(job.kind)
        if kind is None:
            return False, None, f"this node does not run job kind {job.kind!r}"
        if job.deadline is not None and started > job.deadline:
            return False, None, self._deadline_reason(job, "before the job could start")
        try:
            params = kind.params.model_validate(job.params)
        except ValidationError as error:
            return False, None, f"invalid params: {describe_validation_error(error)}"
        extra = {"cancel": cancel} if kind.cancellable else {}
        try:
            if kind.takes_frame:
                if frame is None:
                    return False, None, f"job kind {job.kind!r} needs a frame and none came with the job"
                return True, kind.run(params, frame, **extra), None
            return True, kind.run(params, **extra), None
        except JobFailed as error:
            return False, None, str(error) or type(error).__name__
        except Exception as error:  # a failing job is a result, never a dead agent
            log.exception("job %s (%s) raised", job.id, job.kind)
            return False, None, f"{type(error).__name__}: {error}"

    def _model_of(self, job: Job) -> str | None:
        """The model a job names, for kinds that declare which params field says it."""
        kind = self.kinds.get(job.kind)
        model = job.params.get(kind.model_param) if kind is not None and kind.model_param else None
        return model if isinstance(model, str) else None

    def _record(self, kind: str, ok: bool, seconds: float, model: str | None = None) -> None:
        with self._lock:
            if not ok:  # a failure is usually instant; counting it would make a failing node look fast
                self.failed += 1
                return
            self.done += 1
            _ewma(self.service_by_kind, kind, seconds)
            # Only a successful job names a model this node has, so the models are bounded by
            # what it loaded; the cap is the heartbeat's bound all the same.
            if model is not None and (model in self.service_by_model or len(self.service_by_model) < _MAX_MODELS):
                _ewma(self.service_by_model, model, seconds)

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
