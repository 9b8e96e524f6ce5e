"""Stopping on SIGINT and SIGTERM, reliably, in a process full of threads.

Why not `signal.signal(sig, lambda *_: event.set())` and `event.wait()`: that hung 4 stops
in 10. CPython runs a Python signal handler only in the main thread, between bytecodes.
The kernel puts a process-directed signal (kill, Ctrl-C, `docker stop`) in a queue shared by
all threads, and any thread that does not block it may take it: paho's network thread, a
worker, the heartbeat timer. When one of them takes it, CPython's C-level handler merely
notes it, and a main thread asleep in an untimed `Event.wait()` (a futex wait that the
kernel restarts by itself, since no handler ran in *that* thread) never wakes to run the
Python handler. Two signals close together (Ctrl-C reaching the whole process group plus a
forwarded SIGTERM) made it likely; reproduced with 3 idle threads: 5 hangs in 30.

What this module does instead, the simplest thing that is always right:

- The main thread waits in short timed slices (`SLICE_S`). Each time it wakes it re-takes
  the GIL, and CPython then notices a signal noted by any other thread and runs the handler.
  A stop is therefore seen within one slice, whichever thread the kernel chose. (Blocking the
  signals in every other thread and `sigwait()`-ing would avoid the wake-ups, but every
  thread, including those that C libraries start, would have to be created with the mask,
  and child processes would inherit it; ten wake-ups a second cost nothing measurable.)
- The handler only records the signal: it takes no lock. A handler that calls
  `threading.Event.set()` can deadlock when it runs while the main thread is inside that
  same event's `wait()` and holds its internal lock, which a timed wait makes likely.
- A SIGINT or SIGTERM that arrives once the process has begun stopping (its run loop saw
  the first one) forces the stop, as Docker and Compose users expect of a second Ctrl-C: the
  handler puts the default action back and sends the signal again, so the kernel ends the
  process without waiting for a drain. Signals that arrive together (Ctrl-C reaching a whole
  process group while a supervisor sends SIGTERM) are one request, not a forced stop. (Putting the default back on the *first* signal looks
  simpler but races: a second signal already noted by CPython then finds no Python handler
  and raises "Signal 15 ignored due to race condition" in the main thread.)
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from typing import Protocol

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
SLICE_S = 0.1  # the longest a stop can go unnoticed by the main thread


class StopLike(Protocol):
    """What run loops need of a stop request: `Stop`, or a `threading.Event` in tests."""

    def is_set(self) -> bool: ...

    def wait(self, timeout: float | None = None) -> bool: ...


class Stop:
    """A stop request, set by SIGINT/SIGTERM (once `install()`ed) or by `set()`.

    It has the `is_set()`/`wait()`/`set()` of a `threading.Event`, so run loops take either;
    unlike an Event it holds no lock, so a signal handler may set it.
    """

    def __init__(self) -> None:
        self.signals: list[int] = []  # the signals received, in order (appended by the handler)
        self._set = False
        self._seen = False  # the run loop has seen the stop: a further signal forces it
        self._force = False
        self._callbacks: list[Callable[[], None]] = []

    def install(self, *, force_on_second: bool = True) -> Stop:
        """Catch SIGINT and SIGTERM (main thread only). With `force_on_second`, one that comes
        after the stop was seen ends the process at once (its default action); without, it is
        only recorded in `signals` (for a caller that forces the stop its own way)."""
        self._force = force_on_second
        for sig in STOP_SIGNALS:
            signal.signal(sig, self._on_signal)
        return self

    def on_stop(self, callback: Callable[[], None]) -> None:
        """Run `callback` (main thread, from the handler) when a signal arrives: for waking
        a blocking read that cannot wait in slices. It must not take a non-reentrant lock."""
        self._callbacks.append(callback)

    def _on_signal(self, signum: int, frame: object) -> None:
        self.signals.append(signum)
        if self._seen and self._force:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        self._set = True
        for callback in self._callbacks:
            callback()

    def set(self) -> None:
        self._set = True

    def is_set(self) -> bool:
        self._seen = self._seen or self._set
        return self._set

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signals[0]).name if self.signals else "stop"

    def wait(self, timeout: float | None = None) -> bool:
        """Sleep in slices until stopped or `timeout` s have passed; True when stopped."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._set:
            if deadline is None:
                time.sleep(SLICE_S)
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            time.sleep(min(SLICE_S, remaining))
        self._seen = True
        return True

