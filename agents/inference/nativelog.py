"""What a native runtime writes to the process's stderr, turned into log records.

LiteRT's C++ core logs with its own minimal logger straight to file descriptor 2, whatever
Python's logging is set to: loading the first model prints `INFO: Created TensorFlow Lite
XNNPACK delegate for CPU.` under an agent that logs at WARNING. Neither LiteRT's Python API
nor an environment variable lowers that logger's level, and its setter is not exported. So
while a model loads, descriptor 2 points at a temporary file; afterwards each line is logged at
the level it names (`INFO:` → INFO, `WARNING:` → WARNING, `ERROR:` → ERROR; anything else at
WARNING, so nothing is lost). A file rather than a pipe: a runtime that writes a lot can never
block on a full pipe.

Descriptor 2 is process-wide: a lock makes loads take turns, and whatever another thread writes
to stderr meanwhile lands in the file and is logged (at WARNING) rather than lost.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import threading
from collections.abc import Iterator

_LEVELS = {"VERBOSE": logging.DEBUG, "DEBUG": logging.DEBUG, "INFO": logging.INFO, "WARNING": logging.WARNING, "ERROR": logging.ERROR}
_lock = threading.Lock()


def log_native_lines(text: str, log: logging.Logger) -> None:
    """Each non-empty line at the level its `LEVEL: ` prefix names (WARNING when it names none)."""
    for raw in text.splitlines():
        line = raw.rstrip()
        if not line:
            continue
        head, sep, rest = line.partition(": ")
        level = _LEVELS.get(head) if sep else None
        if level is None:
            log.warning("%s", line)
        else:
            log.log(level, "%s", rest)


@contextlib.contextmanager
def native_stderr_to_log(log: logging.Logger) -> Iterator[None]:
    """Within the block, what native code writes to descriptor 2 goes to `log` instead."""
    with _lock:
        try:
            saved = os.dup(2)
        except OSError:  # no descriptor 2 at all (a daemon with it closed): nothing to redirect
            yield
            return
        with tempfile.TemporaryFile() as capture:
            if sys.stderr is not None:
                sys.stderr.flush()
            os.dup2(capture.fileno(), 2)
            try:
                yield
            finally:
                if sys.stderr is not None:
                    sys.stderr.flush()
                os.dup2(saved, 2)
                os.close(saved)
                capture.seek(0)
                log_native_lines(capture.read().decode(errors="replace"), log)
