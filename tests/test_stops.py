"""Every long-running command stops within its bound on SIGINT and SIGTERM, every time.

A stop used to hang in about half the tries of `edgehive up` (until `up` killed its children
40 s later): the signal was taken by one of the process's other threads and the main thread,
asleep in an untimed wait, never ran the handler (`edgehive/signals.py` explains). A single
stop rarely shows it, so each case is stopped many times in a row, with the two signals a
terminal and a supervisor send together as well as alone.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from harness import Fleet, Recorder, free_port, port_answers, wait_nodes_online, wait_until

pytestmark = pytest.mark.integration

CLI = [sys.executable, "-m", "edgehive.cli"]
DRAIN_S = 2.0  # the agents' drain bound in these tests (EDGEHIVE_DRAIN_TIMEOUT_S)
BOUND_S = DRAIN_S + 10.0  # the drain, plus the publish wait for the last words (5 s) and exit
# Each stop: SIGTERM (docker stop, balena), a Ctrl-C that reached the whole process group
# while a supervisor sent SIGTERM, and a Ctrl-C alone.
STOPS = [(signal.SIGTERM,), (signal.SIGINT, signal.SIGTERM), (signal.SIGINT,)]


def stop_and_time(proc: subprocess.Popen[Any], signals: tuple[int, ...], bound_s: float = BOUND_S) -> float:
    started = time.monotonic()
    for sig in signals:
        proc.send_signal(sig)
    try:
        code = proc.wait(bound_s)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"still running {bound_s:g} s after {'+'.join(signal.Signals(s).name for s in signals)}") from None
    assert code == 0, f"exit code {code} after {'+'.join(signal.Signals(s).name for s in signals)}"
    return time.monotonic() - started


def online_after(recorder: Recorder, topic: str, mark: int) -> bool:
    return any(s.get("state", s.get("raw")) == "online" for s in recorder.json(topic, after=mark))


@pytest.mark.parametrize("command", ["agent", "coordinator", "sink", "camera", "sensor"])
def test_each_command_stops_within_its_bound_every_time(command: str, fleet: Fleet, recorder: Recorder, tmp_path: Path) -> None:
    for i, signals in enumerate(STOPS * 2):
        name = f"{command}-{i}"
        mark = recorder.mark()
        if command == "agent":
            proc = fleet.agent(name, EDGEHIVE_DRAIN_TIMEOUT_S=str(DRAIN_S))
            wait_until(lambda: online_after(recorder, f"nodes/{name}/status", mark), 30, f"{name} online")
        elif command == "coordinator":
            proc = fleet.coordinator()
            wait_until(lambda: recorder.json("coordinator/stats", after=mark), 30, "coordinator stats")
        elif command == "sink":
            proc = fleet.sink(name, EDGEHIVE_TELEMETRY_FILE=str(tmp_path / f"{name}.lp"), EDGEHIVE_SPOOL_DIR="")
            wait_until(lambda: "connected to" in fleet.log(name), 30, "the sink connected")
        elif command == "camera":
            proc = fleet.camera(name, EDGEHIVE_SOURCE="synthetic", EDGEHIVE_FPS="5")
            wait_until(lambda: recorder.json(f"frames/{name}", after=mark), 30, "a frame")
        else:
            proc = fleet.sensor(name, EDGEHIVE_SENSOR_RATE_HZ="5")
            wait_until(lambda: recorder.json(f"sensors/{name}/+", after=mark), 30, "a reading")
        stop_and_time(proc, signals)
        if command == "agent":
            offline = [s for s in recorder.json(f"nodes/{name}/status", after=mark) if s["state"] == "offline"]
            assert offline and offline[-1]["reason"] == "drained", f"{name}: {offline}"
        assert "Traceback" not in fleet.log("coordinator" if command == "coordinator" else name)


def test_the_embedded_broker_command_stops_every_time() -> None:
    for signals in STOPS:
        port = free_port()
        proc = subprocess.Popen([*CLI, "broker", "--listen", f"127.0.0.1:{port}"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        wait_until(lambda: port_answers(port), 30, "the broker listening")
        stop_and_time(proc, signals)
        assert proc.stderr is not None
        with proc.stderr:
            assert "Traceback" not in proc.stderr.read()


def test_a_second_signal_forces_a_draining_agent_to_stop_at_once(fleet: Fleet, recorder: Recorder) -> None:
    fleet.coordinator()
    agent = fleet.agent("pi-1", EDGEHIVE_WORKERS="1", EDGEHIVE_DRAIN_TIMEOUT_S="60")
    wait_nodes_online(recorder, 1, timeout_s=30)
    recorder.publish("jobs/submit", b'{"v":1,"kind":"sleep","id":"long","params":{"seconds":60}}')
    recorder.wait_state("long", "RUNNING")
    mark = recorder.mark()
    agent.send_signal(signal.SIGTERM)
    wait_until(lambda: any(h.get("draining") for h in recorder.json("nodes/pi-1/heartbeat", after=mark)), 10, "pi-1 draining")
    agent.send_signal(signal.SIGINT)  # the impatient second Ctrl-C
    assert agent.wait(10) == -signal.SIGINT


@pytest.mark.timeout(300)
def test_up_stops_on_ctrl_c_20_times_in_a_row(tmp_path: Path) -> None:
    """A terminal's Ctrl-C goes to the whole foreground process group, as here; `up` forwards
    one SIGTERM to its children, and its agent drains and says `offline` before `up` exits."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEHIVE_")}
    env.update(EDGEHIVE_HEARTBEAT_S="0.2", EDGEHIVE_STATE_DIR=str(tmp_path / "state"), EDGEHIVE_MODELS_DIR=str(tmp_path / "no-models"),
               EDGEHIVE_WORKERS="1", EDGEHIVE_NODE_ID="laptop", EDGEHIVE_DRAIN_TIMEOUT_S=str(DRAIN_S), EDGEHIVE_PREFIX="stops/v1")
    took = []
    for i in range(20):
        port = free_port()
        log = tmp_path / f"up-{i}.log"
        with log.open("wb") as out:
            up = subprocess.Popen([*CLI, "up", "--listen", f"127.0.0.1:{port}", "--demo-camera", "", "--no-demo-sensors",
                                   "--no-sink", "--status-every-s", "0"],
                                  env=dict(env, EDGEHIVE_MQTT_URL=f"mqtt://127.0.0.1:{port}"), stdout=out, stderr=subprocess.STDOUT,
                                  start_new_session=True)
        try:
            wait_until(lambda: port_answers(port) or up.poll() is not None, 30, "up's broker")
            recorder = Recorder(f"mqtt://127.0.0.1:{port}", "stops/v1")
            try:
                wait_until(lambda: online_after(recorder, "nodes/laptop/status", 0), 30, "the agent online")
                mark = recorder.mark()
                started = time.monotonic()
                os.killpg(up.pid, signal.SIGINT)
                try:
                    code = up.wait(BOUND_S + 5)
                except subprocess.TimeoutExpired:
                    raise AssertionError(f"stop {i + 1}: up still running {BOUND_S + 5:g} s after Ctrl-C") from None
                took.append(time.monotonic() - started)
                assert code == 0, f"stop {i + 1}: exit code {code}\n{log.read_text()[-2000:]}"
                statuses = recorder.json("nodes/laptop/status", after=mark)
                assert any(s["state"] == "offline" and s["reason"] == "drained" for s in statuses), f"stop {i + 1}: {statuses}"
            finally:
                recorder.close()
        finally:
            if up.poll() is None:
                os.killpg(up.pid, signal.SIGKILL)
                up.wait()
        text = log.read_text()
        assert "stopping: waiting up to" in text and "Traceback" not in text, text[-2000:]
    print(f"up stopped 20 times in {min(took):.2f}-{max(took):.2f} s")
