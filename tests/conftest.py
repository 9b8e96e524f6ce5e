"""Fixtures: real Mosquitto and real amqtt on free ports, a recorder, and edgehive processes."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import AmqttBroker, Broker, Fleet, MosquittoBroker, Recorder, call_failed, run_fleet


@pytest.fixture(params=["mosquitto", "amqtt"])
def broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Broker]:
    """Each integration test runs on both brokers: guarantees must not depend on the broker.
    `@pytest.mark.broker_host("0.0.0.0")` makes it listen beyond loopback (partition tests)."""
    marker = request.node.get_closest_marker("broker_host")
    host = marker.args[0] if marker else "127.0.0.1"
    instance: Broker = MosquittoBroker(tmp_path / "mosquitto", host) if request.param == "mosquitto" else AmqttBroker(host)
    instance.start()
    yield instance
    instance.stop()


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[MosquittoBroker]:
    instance = MosquittoBroker(tmp_path / "mosquitto")
    instance.start()
    yield instance
    instance.stop()


@pytest.fixture
def prefix() -> str:
    return f"test-{uuid.uuid4().hex[:8]}/v1"


@pytest.fixture
def recorder(broker: Broker, prefix: str) -> Iterator[Recorder]:
    rec = Recorder(broker.url, prefix)
    yield rec
    rec.close()


@pytest.fixture
def fleet(broker: Broker, prefix: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Fleet]:
    yield from run_fleet(broker, prefix, tmp_path, lambda: call_failed(request), bool(request.node.get_closest_marker("swallows_exceptions")))


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report



class _SwallowedExceptions(logging.Handler):
    """Records logged with a traceback by our own code: a handler, hook or tick that raised and
    was caught so that the process lives on. Each is a bug a test body would never see."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and record.name.startswith("edgehive"):
            self.records.append(record)


@pytest.fixture(autouse=True)
def no_swallowed_exceptions(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fails a test when code running in the test's own process caught and logged an exception
    (fleets started as processes are checked by `run_fleet` from their logs)."""
    handler = _SwallowedExceptions()
    root = logging.getLogger()
    root.addHandler(handler)
    yield
    root.removeHandler(handler)
    if handler.records and not call_failed(request) and not request.node.get_closest_marker("swallows_exceptions"):
        first = handler.records[0]
        trace = logging.Formatter().formatException(first.exc_info) if first.exc_info else ""
        pytest.fail(f"{len(handler.records)} exception(s) caught and logged by {first.name}: {first.getMessage()}\n{trace}")
