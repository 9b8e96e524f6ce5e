"""`edgehive submit --timeout T` waits for a broker that comes up late, within T."""

from __future__ import annotations

import subprocess
import sys
import time

import orjson
import pytest
from harness import Broker, Fleet, port_answers, wait_until

pytestmark = pytest.mark.integration

LATE_S = 12.0  # longer than the 10 s the first connection used to get


def test_submit_waits_for_a_broker_that_starts_late(broker: Broker, fleet: Fleet) -> None:
    broker.stop()
    wait_until(lambda: not port_answers(broker.port), 10, "the broker to be gone")
    started = time.monotonic()
    submit = subprocess.Popen([sys.executable, "-m", "edgehive.cli", "submit", "sleep", "--params", '{"seconds": 0.05}', "--timeout", "60"],
                              env=fleet.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # The broker comes up only once the submitter has been refused for longer than 10 s.
        wait_until(lambda: submit.poll() is not None or time.monotonic() - started > LATE_S, LATE_S + 5, "12 s of refused connections")
        assert submit.poll() is None, f"submit gave up before the broker came up: {submit.communicate()}"
        broker.start()
        fleet.coordinator()
        fleet.agent("pi-1")
        out, err = submit.communicate(timeout=45)
    finally:
        if submit.poll() is None:
            submit.kill()
            submit.communicate()
    assert submit.returncode == 0, err
    result = orjson.loads(out)
    assert result["ok"] is True and result["node"] == "pi-1" and result["output"] == {"slept_s": 0.05}
