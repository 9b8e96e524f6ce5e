"""Give the C heap's freed pages back to the operating system once a service has started.

Starting allocates much that is freed at once: importing and building the pydantic models
(schemas, settings), building the command line, and in the agent loading and warming up its
models (a 960x544 float tensor is 6 MB, and each preprocessing step makes one). glibc keeps
freed heap for later use rather than return it, so an agent that has just warmed up five models
holds about 15 MB it no longer uses, and a coordinator about 1.5 MB (bench/footprint.py).
`malloc_trim(0)` hands those pages back. Only glibc has it: elsewhere (musl, macOS) this does
nothing.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import sys

log = logging.getLogger(__name__)


def release_free_heap() -> bool:
    """Return the C heap's free pages to the OS; True when the C library could be asked."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)  # the C library this interpreter already runs on
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc
        return False
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    trim(0)
    return True


def release_startup_garbage() -> bool:
    """Once a service's modules and settings are loaded: collect the reference cycles that building
    them left (the busy services raise the collector's thresholds, edgehive/gctune.py, so these
    would wait long), then return the freed heap. True when the C library could be asked."""
    gc.collect()
    return release_free_heap()
