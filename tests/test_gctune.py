"""The services' cycle-collector thresholds (edgehive/gctune.py)."""

from __future__ import annotations

import gc

from edgehive import gctune


def test_tune_raises_the_thresholds_and_returns_the_old_ones() -> None:
    before = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)
        assert gctune.tune() == (700, 10, 10)
        young, middle, old = gc.get_threshold()
        assert young >= 10_000 and middle >= 10 and old >= 10
        assert (young, middle, old) == gctune.THRESHOLDS
    finally:
        gc.set_threshold(*before)
