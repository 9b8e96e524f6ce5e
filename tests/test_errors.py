"""Every exception class edgehive defines derives from `EdgehiveError`, so a caller can catch
"anything edgehive raised on purpose" with one class. The classes are found by importing every
module of the package, so a new exception anywhere is checked without a list to update."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import edgehive
from edgehive.errors import EdgehiveError


def project_exceptions() -> dict[str, type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for info in pkgutil.walk_packages(edgehive.__path__, "edgehive."):
        module = importlib.import_module(info.name)
        for value in vars(module).values():
            if inspect.isclass(value) and issubclass(value, BaseException) and value.__module__ == module.__name__:
                found[f"{value.__module__}.{value.__qualname__}"] = value
    return found


def test_every_project_exception_derives_from_edgehive_error() -> None:
    found = project_exceptions()
    assert len(found) >= 20 and "edgehive.schemas.topics.TopicError" in found  # the walk reached every folder
    assert [name for name, cls in found.items() if not issubclass(cls, EdgehiveError)] == []


def test_exceptions_callers_catch_as_builtins_still_are_those() -> None:
    """Code and users catch a bad topic or payload as ValueError, a broker that cannot be reached
    as RuntimeError: the common root is added beside those, not instead of them."""
    from edgehive.bus import BusError, Rejected
    from edgehive.schemas.envelope import EnvelopeError
    from edgehive.schemas.topics import TopicError
    from edgehive.sensors.sources import SourceError

    assert all(issubclass(cls, ValueError) for cls in (Rejected, TopicError, EnvelopeError))
    assert all(issubclass(cls, RuntimeError) for cls in (BusError, SourceError))
