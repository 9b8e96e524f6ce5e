"""Garbage-collector thresholds for the processes that take fleet-scale message rates.

CPython's cycle collector runs a young-generation pass every 700 container allocations and
older passes after ten of those. A coordinator taking 5,000 heartbeats a second allocates tens
of containers per heartbeat and holds ~158,000 objects (the registry, leases, routes); with
the default thresholds it ran 417 collections in a one-minute fleet run, 8.7 % of its CPU, and
more before heartbeats were read in batches (`bench/fleetsim.py --gc` times each collection).
Almost nothing it allocates is cyclic garbage: messages, events and models die by reference
counting. Raising the thresholds leaves a few MB of rare cyclic garbage to wait longer and took
the collector's share to 0.9 % in the same run.
"""

from __future__ import annotations

import gc

# Young generation: every 50,000 net container allocations (default 700); the middle one every
# 20 young passes (default 10); the whole heap every 100 middle passes (default 10), still also
# bounded by CPython's own rule of not scanning the old generation before it grew by a quarter.
THRESHOLDS = (50_000, 20, 100)


def tune() -> tuple[int, int, int]:
    """Set the thresholds for a long-running service process; returns the ones it replaced."""
    previous = gc.get_threshold()
    gc.set_threshold(*THRESHOLDS)
    return previous[0], previous[1], previous[2]
