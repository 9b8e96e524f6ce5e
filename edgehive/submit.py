"""`edgehive submit`: send a job and wait for its result.

The submission is re-sent with the same job id until the coordinator acknowledges it
(any state message): on a broker that does not queue for an offline coordinator
(amqtt), this is what keeps a submission from being lost across a coordinator restart.
The coordinator treats a repeated id as the same job. `timeout_s` bounds everything,
the first connection included: a broker that comes up late is waited for.

With the coordinator's EDGEHIVE_JOB_STATES=final the first state it publishes is the final one:
the submission is re-sent every `resend_s` until then, and the coordinator answers a job id it
already has under way with nothing, so the wait ends on the result or the final state as usual.
"""

from __future__ import annotations

import queue
import time
import uuid

from .bus import MqttBus
from .schemas import JobRequest, JobState, Result, decode, encode


def submit_and_wait(bus: MqttBus, request: JobRequest, timeout_s: float, resend_s: float = 2.0) -> tuple[int, Result | JobState | None]:
    """Returns (exit code, last word): 0 done, 1 failed, 2 timed out. The last word is the result,
    or the final state when the result was published while this client was disconnected."""
    job_id = request.id or uuid.uuid4().hex[:20]
    request = request.model_copy(update={"id": job_id})
    events: queue.Queue[Result | JobState] = queue.Queue()
    t = bus.topics
    bus.subscribe(t.job_state(job_id), lambda tp, m: events.put(m), lambda tp, p: decode(JobState, p))
    bus.subscribe(t.result(request.kind, request.source or job_id), lambda tp, m: events.put(m), lambda tp, p: decode(Result, p), max_bytes=16 << 20)
    deadline = time.monotonic() + timeout_s
    connects: list[float] = []
    bus.on_connect(lambda: connects.append(time.monotonic()))
    bus.start(timeout_s=timeout_s)  # the timeout covers the first connection too: paho retries it with backoff
    payload = encode(request)
    acknowledged = False
    failed: JobState | None = None
    done: JobState | None = None
    seen_connects = 1
    next_send = 0.0
    while (now := time.monotonic()) < deadline:
        if len(connects) > seen_connects:
            # Reconnected: what was published while we were away (a state, the result) is lost to
            # us on any broker (our session is clean). Ask again; the coordinator answers a known id
            # with its current state.
            seen_connects, acknowledged, next_send = len(connects), False, 0.0
        if not acknowledged and now >= next_send:
            bus.publish(t.submit, payload, qos=1)
            next_send = now + resend_s
        try:
            event = events.get(timeout=min(0.2, max(0.01, deadline - now)))
        except queue.Empty:
            continue
        if isinstance(event, Result):
            if event.job_id == job_id:
                return (0 if event.ok else 1), event
            continue
        acknowledged = True
        if event.state.value in ("FAILED", "DONE"):
            failed, done = (event, None) if event.state.value == "FAILED" else (None, event)
            # The result normally comes with the final state; after a reconnect it may be gone for good.
            deadline = min(deadline, time.monotonic() + (0.5 if failed else 2.0))
    if done is not None:
        return 0, done  # DONE, but the result was published while we were disconnected
    return (1, failed) if failed else (2, None)
