"""The agent's results, several in one message on `nodes/{node}/results` when they finish together.

Each message on the way costs the agent, the broker and the coordinator a fixed share of Python
per message (BENCHMARKS.md), so results that are ready at the same moment travel together, as a
JSON array of results. Nothing ever waits for company:

- a result made on the network thread (inline kinds run there while a jobs message is handled)
  goes out when that message is done, with the others it brought;
- a result made on a worker thread asks the network thread to send at its next turn (the same
  wake-up a publish from that thread costs), and the results that finish before that turn go
  with it.

So an idle node sends each result alone, exactly as a single result (what `mosquitto_sub`
shows at low load is unchanged), and a busy one sends fewer, larger messages.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

BATCH_BYTES = 256 * 1024  # an array is cut at about this size; one result larger than it goes alone


def pack(results: list[bytes], max_bytes: int = BATCH_BYTES) -> Iterator[bytes]:
    """The payloads for `results` (each one JSON result): one result as it is, several as arrays
    of at most about `max_bytes`."""
    if len(results) == 1:
        yield results[0]
        return
    chunk: list[bytes] = []
    size = 0
    for result in results:
        if chunk and size + len(result) > max_bytes:
            yield chunk[0] if len(chunk) == 1 else b"[" + b",".join(chunk) + b"]"
            chunk, size = [], 0
        chunk.append(result)
        size += len(result) + 1
    if chunk:
        yield chunk[0] if len(chunk) == 1 else b"[" + b",".join(chunk) + b"]"


class ResultOutbox:
    """Results waiting for the network thread's next send. `send(payload)` publishes one message;
    `call_soon(fn)` runs `fn` on the network thread at its next turn (MqttBus.call_soon)."""

    def __init__(self, send: Callable[[bytes], None], call_soon: Callable[[Callable[[], None]], None],
                 max_bytes: int = BATCH_BYTES) -> None:
        self._send = send
        self._call_soon = call_soon
        self._max_bytes = max_bytes
        self._lock = threading.Lock()
        self._sending = threading.Lock()  # one flush at a time: what one took goes out before what the next takes
        self._pending: list[bytes] = []
        self._holding = False  # the network thread is handling a jobs message: it sends at the end
        self._scheduled = False  # a send is asked of the network thread already

    def add(self, result: bytes) -> None:
        """(Any thread) one encoded result, to send at the network thread's next chance."""
        with self._lock:
            self._pending.append(result)
            if self._holding or self._scheduled:
                return
            self._scheduled = True
        self._call_soon(self.flush)

    @contextmanager
    def holding(self) -> Iterator[None]:
        """(Network thread) while handling one jobs message: its inline results go out together at the end."""
        with self._lock:
            self._holding = True
        try:
            yield
        finally:
            with self._lock:
                self._holding = False
            self.flush()

    def flush(self) -> None:
        """Send everything pending now (the network thread's turn, a heartbeat, a stop). Two
        flushes never overlap, so a message sent after a flush returns (a heartbeat) follows
        every result added before it."""
        with self._sending:
            with self._lock:
                pending, self._pending = self._pending, []
                self._scheduled = False
            if pending:
                for payload in pack(pending, self._max_bytes):
                    self._send(payload)
