"""Python's `ssl` module, loaded at its first use instead of at import, for services without TLS.

paho-mqtt imports `ssl` at the top of its client module, and so do `http.client` and
`urllib.request`, which paho imports to read proxy settings. Loading `ssl` (its code, its C
extension and libssl's pages) costs a process about 1.2 MB of RSS whether or not it ever makes a
TLS connection. The coordinator and the sensors are held to 40 MB (bench/footprint.py), and
most of them talk plain MQTT to a broker on their own network.

`defer()`, called before paho is imported, puts a stand-in for `ssl` in `sys.modules`: a module
whose code has not run yet. Every `import ssl` in the process gets it, as it would get the real
one, and the first name looked up on it (`ssl.SSLContext`, `ssl.SSLError` in an except clause,
`from ssl import ...`) runs ssl's own code in it, under a lock, then the lookup goes on as usual.
From then on it is the ordinary `ssl` module. So nothing that needs `ssl` later breaks: it only
pays the 1.2 MB at that moment instead of at start. `load()` does that at once, for a process
whose settings say it uses TLS (`mqtts://`, or a TLS file set), so such a process loads `ssl`
while it starts, as before.

This is what `importlib.util.LazyLoader` does, with a lock around the first use: LazyLoader had
no lock before CPython 3.13 and 3.12.3 (CPython issue 114763), so a second thread could see the
module half-loaded, and edgehive runs on 3.10 and 3.11 too. Here paho's network thread may be the
first to touch `ssl` (paho names `ssl.SSLWantReadError` in the except clauses of its socket reads).
"""

from __future__ import annotations

import importlib.util
import sys
import threading
import types
from typing import Any

__all__ = ["defer", "deferred", "load"]

_lock = threading.RLock()
_running: set[int] = set()  # ids of the threads running ssl's code right now (a lookup from that code must not start it again)


class _SslNotLoaded(types.ModuleType):
    """`ssl` before its code has run. `__getattr__` is called only for a name the module does not
    have yet; once ssl's code has run, the module is a plain module and this class is out of the way."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):  # what import machinery, copy and pickle probe for; ssl defines none it needs
            raise AttributeError(name)
        _run(self)
        return types.ModuleType.__getattribute__(self, name)  # ssl's own AttributeError for a name it lacks


def _run(module: types.ModuleType) -> None:
    """Run ssl's code in `module`, once, whichever thread gets here first; the others wait."""
    with _lock:
        if type(module) is not _SslNotLoaded or threading.get_ident() in _running:
            return  # loaded while we waited; or we are inside ssl's own code, which looks a name up before defining it
        _running.add(threading.get_ident())
        try:
            assert module.__spec__ is not None and module.__spec__.loader is not None
            module.__spec__.loader.exec_module(module)
        finally:
            _running.discard(threading.get_ident())
        module.__class__ = types.ModuleType  # type: ignore[assignment]  # mypy narrowed it to _SslNotLoaded above; leaving that class is the point


def defer() -> bool:
    """Put the not-yet-loaded `ssl` in `sys.modules`; True if it is there now. Nothing is done (False)
    when `ssl` is already imported, or when this Python has no `ssl` (the import then fails as
    it always would, and paho runs without TLS as it always would)."""
    if "ssl" in sys.modules:
        return deferred()
    if importlib.util.find_spec("_ssl") is None:
        return False
    spec = importlib.util.find_spec("ssl")
    if spec is None or spec.loader is None:
        return False
    module = importlib.util.module_from_spec(spec)  # the module an import makes, with its __spec__, __file__ ...
    module.__class__ = _SslNotLoaded  # ... before its code runs
    sys.modules["ssl"] = module
    return True


def deferred() -> bool:
    """True while `ssl` is in `sys.modules` and its code has not run."""
    return type(sys.modules.get("ssl")) is _SslNotLoaded


def load() -> None:
    """Run ssl's code now (a process that will use TLS); nothing when it has run already."""
    module = sys.modules.get("ssl")
    if type(module) is _SslNotLoaded:
        _run(module)
