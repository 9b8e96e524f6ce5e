"""Standard modules loaded at their first use instead of at import, for services that may never use them.

paho-mqtt imports `ssl` and `urllib.request` at the top of its client module: `ssl` for TLS,
`urllib.request` to read proxy settings, which it does only when PySocks is installed.
`urllib.request` brings `http.client` (which imports `ssl` too) and `email`'s parser. A process
pays for them whether or not it ever makes a TLS connection or reads a proxy setting: about
1.1 MB of RSS for `ssl` (its code, its C extension and libssl's pages) and 0.6 MB for
`urllib.request` (bench/import_costs.py). The coordinator and the sensors are held to 40 MB, and
most of them talk plain MQTT to a broker on their own network.

`defer(name, ...)`, called before paho is imported, puts a stand-in for each module in
`sys.modules` (and on its package, for `urllib.request`): the module an import would make, with
its `__spec__` and `__file__`, whose code has not run yet. Every `import ssl` in the process gets
it, as it would get the real one, and the first name looked up on it (`ssl.SSLContext`,
`ssl.SSLError` in an except clause, `from ssl import ...`) runs the module's own code in it, under
a lock, then the lookup goes on as usual. From then on it is the ordinary module. So nothing that
needs one of them later breaks: it pays for the module at that moment instead of at start.
`load(name)` does that at once, for a process whose settings say it will use it (TLS).

This is what `importlib.util.LazyLoader` does, with two differences. LazyLoader's module loads
at any attribute, `__spec__` included, which the import system reads on every `import` of a
module already in `sys.modules`: the first `import ssl` anywhere would load it. Here only a name
the module does not have yet does, `__path__` excepted (the import system asks every module
whether it is a package). And the first use is under a lock: LazyLoader had none until a fix in
2024 (CPython issue 114763), so a second thread could see the module half-loaded, and edgehive
runs on Pythons from before it (3.10, 3.11). Here paho's network thread may be the first
to touch `ssl` (paho names `ssl.SSLWantReadError` in the except clauses of its socket reads).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
import types
from typing import Any

__all__ = ["defer", "deferred", "load"]

_lock = threading.RLock()
_running: set[int] = set()  # ids of the modules whose code runs now: a lookup from that code must not start it again


class _NotLoaded(types.ModuleType):
    """A module before its code has run. `__getattr__` is called only for a name the module does
    not have yet; once its code has run, it is a plain module and this class is out of the way."""

    def __getattr__(self, name: str) -> Any:
        if name == "__path__" and self.__spec__ is not None and self.__spec__.submodule_search_locations is None:
            raise AttributeError(name)  # not a package: the import system's question, answered without loading
        _run(self)
        return types.ModuleType.__getattribute__(self, name)  # the module's own AttributeError for a name it lacks


def _run(module: types.ModuleType) -> None:
    """Run the module's code in it, once, whichever thread gets here first; the others wait. The
    lock is reentrant: one deferred module's code may use another (secrets imports from hmac)."""
    with _lock:
        if type(module) is not _NotLoaded or id(module) in _running:
            return  # loaded while we waited; or we are inside its own code, which looks a name up before defining it
        spec = module.__spec__
        assert spec is not None and spec.loader is not None
        _running.add(id(module))
        try:
            spec.loader.exec_module(module)
        finally:
            _running.discard(id(module))
        module.__class__ = types.ModuleType  # type: ignore[assignment]  # mypy narrowed it to _NotLoaded above; leaving that class is the point


def _defer_one(name: str) -> bool:
    if name in sys.modules:
        return deferred(name)
    parent, _, child = name.rpartition(".")
    try:
        package = importlib.import_module(parent) if parent else None
        spec = importlib.util.find_spec(name)
    except ImportError:
        return False
    if spec is None or spec.loader is None or spec.submodule_search_locations is not None:
        return False  # not there (the import then fails as it always would), or a package
    if name == "ssl" and importlib.util.find_spec("_ssl") is None:
        return False  # a Python without OpenSSL: `import ssl` must fail at once, as paho and http.client expect
    module = importlib.util.module_from_spec(spec)  # the module an import makes, with its __spec__, __file__ ...
    module.__class__ = _NotLoaded  # ... before its code runs
    sys.modules[name] = module
    if package is not None:
        setattr(package, child, module)  # as an import does: `import urllib.request` then reads urllib.request
    return True


def defer(*names: str) -> list[str]:
    """Put each module named, not yet loaded, in `sys.modules`; the names that are deferred now.
    A module already imported is left as it is, and so is one this Python does not have (its
    import then fails as it always would)."""
    with _lock:
        return [name for name in names if _defer_one(name)]


def deferred(name: str) -> bool:
    """True while the module is in `sys.modules` and its code has not run."""
    return type(sys.modules.get(name)) is _NotLoaded


def load(name: str) -> None:
    """Run a deferred module's code now; nothing when it has run already or was never deferred."""
    module = sys.modules.get(name)
    if type(module) is _NotLoaded:
        _run(module)
