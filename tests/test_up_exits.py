"""How `edgehive up` ends when it cannot start or when one of its processes dies.

A bad setting of a child (`EDGEHIVE_SLOTS=lots`) used to start everything, let the agent
fail, and then end `up` on reading that same setting at the stop, leaving the coordinator
running on its own with the broker gone. A child that died (killed, crashed) used to stop
the rest and exit 0, so a supervisor saw success.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from harness import Recorder, free_port, port_answers, wait_nodes_online, wait_until

pytestmark = pytest.mark.integration

CLI = [sys.executable, "-m", "edgehive.cli"]
DRAIN_S = 2.0


def _env(tmp_path: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEHIVE_")}
    env.update(EDGEHIVE_MQTT_URL=f"mqtt://127.0.0.1:{port}", EDGEHIVE_HEARTBEAT_S="0.3", EDGEHIVE_NODE_ID="laptop",
               EDGEHIVE_STATE_DIR=str(tmp_path / "state"), EDGEHIVE_MODELS_DIR=str(tmp_path / "no-models"),
               EDGEHIVE_WORKERS="1", EDGEHIVE_DRAIN_TIMEOUT_S=str(DRAIN_S))
    return env


UP_ARGS = ["up", "--demo-camera", "", "--no-demo-sensors", "--no-sink", "--status-every-s", "0"]


def _child_of(parent: int, node_id: str) -> int:
    """The pid of `parent`'s child process that runs as node `node_id` (from /proc)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            environ = (entry / "environ").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == parent and f"EDGEHIVE_NODE_ID={node_id}".encode() in environ:
            return int(entry.name)
    raise AssertionError(f"no child of {parent} runs node {node_id}")


def test_a_bad_child_setting_stops_up_before_anything_starts(tmp_path: Path) -> None:
    port = free_port()
    out = subprocess.run([*CLI, *UP_ARGS], env=dict(_env(tmp_path, port), EDGEHIVE_SLOTS="lots"),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out
    assert out.stderr.strip() == ("edgehive up: EDGEHIVE_SLOTS / --slots: Input should be a valid integer, "
                                  "unable to parse string as an integer (got 'lots')"), out.stderr
    assert "edgehive is up" not in out.stdout  # no broker, no coordinator, no agent was started
    assert not port_answers(port)
    out = subprocess.run([*CLI, *UP_ARGS], env=dict(_env(tmp_path, port), EDGEHIVE_CAMERAS='{"door": {"labels": "face"}}'),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "edgehive is up" not in out.stdout, out
    assert out.stderr.startswith("edgehive up: EDGEHIVE_CAMERAS / --cameras: cameras: door.labels: Input should be a valid array"), out.stderr


def test_up_exits_1_when_one_of_its_agents_dies_and_stops_the_rest(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "up.log"
    with log.open("wb") as sink:
        up = subprocess.Popen([*CLI, *UP_ARGS, "--agents", "2"], env=_env(tmp_path, port),
                              stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until(lambda: port_answers(port) or up.poll() is not None, 30, "up's broker")
        recorder = Recorder(f"mqtt://127.0.0.1:{port}", "edgehive/v1")
        try:
            wait_nodes_online(recorder, 2, timeout_s=60)
            mark = recorder.mark()
            os.kill(_child_of(up.pid, "laptop-2"), signal.SIGKILL)
            code = up.wait(DRAIN_S + 20)
            statuses = recorder.json("nodes/laptop-1/status", after=mark)
        finally:
            recorder.close()
    finally:
        if up.poll() is None:
            os.killpg(up.pid, signal.SIGKILL)
            up.wait()
    text = log.read_text()
    assert code == 1, text[-2000:]
    assert "agent laptop-2 exited (code -9); stopping" in text, text[-2000:]
    assert any(s.get("state") == "offline" and s.get("reason") == "drained" for s in statuses), statuses  # the other agent stopped cleanly
    assert "Traceback" not in text


@pytest.mark.parametrize("command", [UP_ARGS, ["broker"]], ids=["up", "broker"])
def test_a_taken_broker_port_is_one_line_not_a_traceback(command: list[str], tmp_path: Path) -> None:
    """Port 1883 already served (a Mosquitto on the Pi): `edgehive up` and `edgehive broker`
    say so in one line and exit 1; they used to print amqtt's and their own tracebacks."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = subprocess.run([*CLI, *command, "--listen", f"127.0.0.1:{port}"], env=_env(tmp_path, port),
                             capture_output=True, text=True, timeout=60)
    assert out.returncode == 1, out
    assert "Traceback" not in out.stderr, out.stderr
    [line] = out.stderr.strip().splitlines()
    assert line.startswith(f"edgehive {command[0]}: the embedded broker cannot listen on 127.0.0.1:{port} "
                           "(is another broker running there?): "), line
