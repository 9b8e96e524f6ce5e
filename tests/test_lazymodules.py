"""A deferred standard module (edgehive/lazymodules.py) behaves as the real one from its first use.

Each test runs a fresh interpreter: the test process has long imported `ssl` and `urllib.request`.
"""

from __future__ import annotations

import subprocess
import sys

import pytest


def run(code: str) -> list[str]:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    return done.stdout.splitlines()


def test_threads_that_all_use_ssl_first_at_once_each_get_the_whole_module() -> None:
    """paho's network thread and the main thread may both be first: each waits for the one load,
    none sees a half-run module (a name ssl defines late, then one it defines early)."""
    lines = run("""
import sys, threading
from edgehive import lazymodules
print(lazymodules.defer("ssl"))
import ssl
start, got = threading.Barrier(16), []
def use():
    start.wait()
    got.append((ssl.create_default_context().__class__.__name__, ssl.SSLWantReadError.__name__))
threads = [threading.Thread(target=use) for _ in range(16)]
for t in threads: t.start()
for t in threads: t.join()
print(sorted(set(got)), len(got), lazymodules.deferred("ssl"), type(sys.modules["ssl"]).__name__)
""")
    assert lines == ["['ssl']", "[('SSLContext', 'SSLWantReadError')] 16 False module"]


def test_every_way_of_importing_a_deferred_module_gets_its_names() -> None:
    lines = run("""
from edgehive import lazymodules
print(lazymodules.defer("urllib.request", "ssl"))
import urllib.request
from urllib import request
print(request is urllib.request, lazymodules.deferred("urllib.request"))  # importing is not using
from urllib.request import *  # uses __all__: the module's own
print(callable(urlopen), "Request" in dir(), lazymodules.deferred("urllib.request"))
from ssl import PROTOCOL_TLS_CLIENT
import ssl
print(PROTOCOL_TLS_CLIENT is ssl.PROTOCOL_TLS_CLIENT)
try:
    ssl.no_such_name
except AttributeError as error:
    print(error)
try:
    from ssl import no_such_name
except ImportError as error:
    print(type(error).__name__)
""")
    assert lines == ["['urllib.request', 'ssl']", "True True", "True True False", "True",
                     "module 'ssl' has no attribute 'no_such_name'", "ImportError"]


def test_a_deferred_module_whose_code_uses_another_deferred_module() -> None:
    """secrets imports a name from hmac as it runs: hmac's code runs then, inside secrets' own."""
    lines = run("""
from edgehive import lazymodules
print(lazymodules.defer("secrets", "hmac"))
import secrets
print(len(secrets.token_hex(4)), lazymodules.deferred("secrets"), lazymodules.deferred("hmac"))
""")
    assert lines == ["['secrets', 'hmac']", "8 False False"]


def test_a_module_already_imported_or_missing_is_left_as_it_is() -> None:
    lines = run("""
import json
from edgehive import lazymodules
print(lazymodules.defer("json", "edgehive_no_such_module", "email"))  # email: a package, whose submodules it cannot defer
try:
    import edgehive_no_such_module
except ModuleNotFoundError as error:
    print(type(error).__name__)
lazymodules.load("json")  # never deferred: nothing to do
print(lazymodules.deferred("json"))
""")
    assert lines == ["[]", "ModuleNotFoundError", "False"]


def test_load_runs_the_module_at_once() -> None:
    """What a service whose settings say TLS does while it starts."""
    lines = run("""
import sys
from edgehive import lazymodules
lazymodules.defer("ssl")
before = "_ssl" in sys.modules
lazymodules.load("ssl")
print(before, "_ssl" in sys.modules, lazymodules.deferred("ssl"))
""")
    assert lines == ["False True False"]


@pytest.mark.parametrize("url", ["mqtt://127.0.0.1:1883", "mqtts://127.0.0.1:8883"])
def test_a_service_loads_ssl_at_start_exactly_when_its_settings_say_tls(url: str) -> None:
    """The command line's own path: defer before the parser, then `_settings` decides."""
    lines = run(f"""
import argparse, sys
from edgehive import cli, lazymodules
lazymodules.defer(*cli.DEFERRED_MODULES)
from edgehive.sensors.publisher import SensorSettings
cli._settings(SensorSettings, argparse.Namespace(setting_mqtt_url={url!r}))
print("_ssl" in sys.modules)
""")
    assert lines == [str(url.startswith("mqtts"))]
