"""`EdgehiveError`, the root of every exception edgehive defines.

A caller that wants "anything edgehive raised on purpose" catches this one class, and a bug (a
`TypeError`, a `KeyError`) still stands out as something else. Exceptions that callers catch
as a builtin kind as well (a bad topic is a `ValueError`, an unreachable broker a
`RuntimeError`) derive from both. This module imports nothing, so every part can use it.
tests/test_errors.py holds every exception class of the package to it.
"""

from __future__ import annotations

__all__ = ["EdgehiveError"]


class EdgehiveError(Exception):
    """Something edgehive detected and reports: bad input, a missing model, a broker refusing us."""
