"""edgehive loads no pydantic plugins: the command line skips pydantic's search for them.

pydantic looks for plugins (packages registered under the `pydantic` entry point group, such as
observability tools) when it builds its first model. Its `pydantic.plugin._loader` module imports
`importlib.metadata` at its top, which brings `email`'s parser, `zipfile`, `csv` and
`importlib.resources`; then `get_plugins()` reads the metadata of every installed distribution.
edgehive uses no pydantic plugin. In the coordinator and the sensors, which defer paho's
`urllib.request` (edgehive/lazymodules.py), nothing else imports those modules: skipping the
search saves them 1.6 MB of RSS of about 37 (bench/import_costs.py).

Importing this module, which `edgehive.cli` does before anything that builds a model, puts a
stand-in for pydantic's loader module in `sys.modules`. Its `get_plugins()` finds no plugins, as
pydantic's own does with `PYDANTIC_DISABLE_PLUGINS=__all__`. Every other name asked of it is
pydantic's: the stand-in then hands the place back to pydantic's own module and answers with its
attribute, so a pydantic whose models ask the loader for more than `get_plugins` gets its own
behaviour, plugins included. Nothing is done when the loader module is already imported, or when
the installed pydantic has no such module (it then searches as it always does). pydantic 2.7.0
and 2.14.4 (the oldest release pyproject allows and the constraints' one) import only
`get_plugins` from that module, when they build a model (tests/test_pydanticplugins.py).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
import types
from typing import Any

__all__ = ["LOADER", "skip_discovery"]

LOADER = "pydantic.plugin._loader"
_lock = threading.Lock()


def _no_plugins(*args: Any, **kwargs: Any) -> tuple[()]:
    """pydantic's `get_plugins()`, for a process that loads none."""
    return ()


def _pydantics_own(name: str) -> Any:
    """A name the stand-in lacks: pydantic's own loader module takes its place and answers."""
    if name.startswith("__") and name.endswith("__"):
        raise AttributeError(name)  # what the import system asks every module (__path__ ...): a plain module's answer
    with _lock:
        if isinstance(sys.modules.get(LOADER), _StandIn):
            del sys.modules[LOADER]
        real = importlib.import_module(LOADER)
    return getattr(real, name)


class _StandIn(types.ModuleType):
    """The loader module until pydantic asks it for more than `get_plugins`."""

    def __getattr__(self, name: str) -> Any:  # only for names the module lacks
        return _pydantics_own(name)


def skip_discovery() -> bool:
    """Put the stand-in in place; True when it is there now."""
    with _lock:
        current = sys.modules.get(LOADER)
        if current is not None:
            return isinstance(current, _StandIn)
        try:
            if importlib.util.find_spec(LOADER) is None:
                return False
        except ImportError:  # no pydantic.plugin package
            return False
        stand_in = _StandIn(LOADER, __doc__)
        stand_in.get_plugins = _no_plugins  # type: ignore[attr-defined]
        sys.modules[LOADER] = stand_in
        return True


skip_discovery()
