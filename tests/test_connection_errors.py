"""A wrong broker URL is said at once, in the log, with its reason, and retried until it works.

It used to be a silent hang: paho's network thread swallows a failed connect and retries.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from harness import Broker, Fleet, Recorder, free_port, wait_until

from edgehive.bus import _ConnectFailures

pytestmark = pytest.mark.integration

CLI = [sys.executable, "-m", "edgehive.cli"]


def start(fleet: Fleet, command: str, **env: str) -> str:
    """The command at the default log level (WARNING); returns its name in the fleet."""
    if command == "coordinator":
        fleet.coordinator(EDGEHIVE_LOG_LEVEL="WARNING", **env)
        return "coordinator"
    fleet.agent("pi-1", EDGEHIVE_LOG_LEVEL="WARNING", **env)
    return "pi-1"


@pytest.mark.parametrize("command", ["agent", "coordinator"])
def test_a_refused_connection_is_logged_and_retried_until_the_broker_is_there(command: str, broker: Broker, fleet: Fleet, recorder: Recorder) -> None:
    broker.stop()
    name = start(fleet, command)
    warning = f"WARNING edgehive.bus: cannot connect to {broker.url}: [Errno 111] Connection refused; retrying in "
    wait_until(lambda: warning in fleet.log(name), 20, "the refused connection in the log")
    assert fleet.alive(name)

    back = recorder.mark()
    broker.start()
    topic = "coordinator/status" if command == "coordinator" else "nodes/pi-1/status"
    wait_until(lambda: any(s.get("state", s.get("raw")) == "online" for s in recorder.json(topic, after=back)), 60, f"{command} online")
    wait_until(lambda: f"connected to {broker.url} after " in fleet.log(name), 10, "the recovery in the log")
    assert "Traceback" not in fleet.log(name)


@pytest.mark.parametrize("case", ["unknown-host", "tls-to-a-plain-port"])
def test_a_wrong_host_or_tls_mismatch_is_logged_with_its_reason_and_retried(case: str, broker: Broker, fleet: Fleet) -> None:
    if case == "unknown-host":
        url, reason = "mqtt://no-such-host.invalid:1883", "unknown host ("
    else:
        url, reason = broker.url.replace("mqtt://", "mqtts://"), ""
    names = [start(fleet, command, EDGEHIVE_MQTT_URL=url) for command in ("agent", "coordinator")]
    for name in names:
        wait_until(lambda: f"WARNING edgehive.bus: cannot connect to {url}: {reason}" in fleet.log(name), 20, f"{name}: the failure in the log")
    for name in names:
        assert fleet.alive(name), fleet.log(name)
        line = next(x for x in fleet.log(name).splitlines() if "cannot connect" in x)
        assert "retrying in " in line and "(attempt " in line
        assert "Traceback" not in fleet.log(name)


@pytest.mark.parametrize("command", [["status"], ["submit", "noop"]])
def test_tools_say_why_they_cannot_connect_in_one_line(command: list[str]) -> None:
    url = f"mqtt://127.0.0.1:{free_port()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEHIVE_")}
    env.update(EDGEHIVE_MQTT_URL=url)
    out = subprocess.run([*CLI, *command, "--timeout", "2"] if command[0] == "submit" else [*CLI, *command],
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith(f"edgehive {command[0]}: no connection to {url} within ") and lines[0].endswith("Connection refused")


def test_connection_failures_are_reported_once_per_reason_and_window() -> None:
    quiet = _ConnectFailures(every_s=3600)
    assert [quiet.failed("refused"), quiet.failed("refused"), quiet.failed("refused")] == [True, False, False]
    assert quiet.failed("unknown host") is True  # a new reason is news
    assert quiet.failed("unknown host") is False
    assert quiet.attempts == 5 and quiet.last_reason == "unknown host"
    assert quiet.connected() == 5 and quiet.attempts == 0
    assert quiet.failed("unknown host") is True  # a new outage starts over
    assert all(_ConnectFailures(every_s=0).failed("refused") for _ in range(3))
