"""The commands a user types: `edgehive up`, `status`, `submit`, and every `--help`."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from harness import Fleet, MosquittoBroker, Recorder, free_port, port_answers, wait_nodes_online, wait_until

pytestmark = pytest.mark.integration

CLI = [sys.executable, "-m", "edgehive.cli"]


def run_cli(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("command", ["up", "agent", "coordinator", "broker", "status", "submit", "camera", "sink", "sensor", "hub", "healthcheck", "frigate"])
def test_every_subcommand_has_help_with_examples(command: str) -> None:
    out = subprocess.run([*CLI, command, "--help"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0
    assert out.stdout.startswith(f"usage: edgehive {command} ")
    assert "EDGEHIVE_MQTT_URL" in out.stdout and "EDGEHIVE_PREFIX" in out.stdout
    examples = out.stdout.partition("\nexamples:\n")[2]
    assert f"  edgehive {command}" in examples, "no examples at the end of the help"
    # An empty default reads `default: empty`, never `default ]` or `default )`.
    assert not re.search(r"default:?\s+[\])]", out.stdout), out.stdout
    if command in ("up", "broker"):
        assert re.search(r"EDGEHIVE_(LISTEN|BROKER_USERS), default: empty\)", " ".join(out.stdout.split())), out.stdout
    # A boolean setting is a flag pair, not an option taking a value.
    assert not re.search(r"--(sink|demo-sensors|embedded-broker) [A-Z]", out.stdout)


def test_tools_list_only_the_settings_they_read() -> None:
    status = subprocess.run([*CLI, "status", "--help"], capture_output=True, text=True, timeout=30).stdout
    for unused in ("--heartbeat-s", "--node-id", "--max-payload-bytes", "EDGEHIVE_HEARTBEAT_S"):
        assert unused not in status
    assert "--mqtt-url" in status and "--json" in status
    broker = subprocess.run([*CLI, "broker", "--help"], capture_output=True, text=True, timeout=30).stdout
    assert "--broker-users" in broker and "--heartbeat-s" not in broker and "--mqtt-ca-file" not in broker
    agent = subprocess.run([*CLI, "agent", "--help"], capture_output=True, text=True, timeout=30).stdout
    assert "--heartbeat-s" in agent, "the agent does read the heartbeat period"


def test_submit_help_describes_priority_and_exit_codes() -> None:
    out = subprocess.run([*CLI, "submit", "--help"], capture_output=True, text=True, timeout=30).stdout
    assert re.search(r"--priority PRIORITY\s+-100 to 100; higher runs first", out), out
    codes = out.partition("\nexit status:\n")[2]
    assert [line.split()[0] for line in codes.strip().splitlines()] == ["0", "1", "2"]
    assert "DONE" in codes and "FAILED" in codes and "--timeout" in codes


def test_boolean_settings_are_flag_pairs() -> None:
    from edgehive.cli import build_parser
    from edgehive.settings import load_settings
    from edgehive.up import UpSettings

    parser = build_parser(only="up")
    env = {k: v for k, v in os.environ.items() if k.startswith("EDGEHIVE_")}
    for key in env:
        os.environ.pop(key)
    try:
        assert load_settings(UpSettings, parser.parse_args(["up", "--no-sink"])).sink is False
        assert load_settings(UpSettings, parser.parse_args(["up", "--sink", "--no-demo-sensors"])).model_dump(include={"sink", "demo_sensors"}) == {
            "sink": True, "demo_sensors": False}
        assert load_settings(UpSettings, parser.parse_args(["up"])).sink is True
    finally:
        os.environ.update(env)
    with pytest.raises(SystemExit):
        parser.parse_args(["up", "--sink", "false"])  # a flag takes no value


def test_models_help_names_the_edgehive_command() -> None:
    out = subprocess.run([*CLI, "models", "--help"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0
    assert out.stdout.startswith("usage: edgehive models ") and "python -m" not in out.stdout
    assert "examples:" in out.stdout and "  edgehive models objects face" in out.stdout


def test_up_runs_the_system_and_status_and_submit_work_against_it(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEHIVE_")}
    env.update(EDGEHIVE_MQTT_URL=f"mqtt://127.0.0.1:{port}", EDGEHIVE_HEARTBEAT_S="0.3", EDGEHIVE_NODE_ID="laptop",
               EDGEHIVE_STATE_DIR=str(tmp_path / "state"), EDGEHIVE_STATS_INTERVAL_S="0.3",
               EDGEHIVE_TELEMETRY_FILE=str(tmp_path / "telemetry.lp"), EDGEHIVE_SINK_FLUSH_S="0.2")
    up = subprocess.Popen([*CLI, "up", "--agents", "2", "--status-every-s", "0.5"], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: port_answers(port), 20, "the embedded broker")
        recorder = Recorder(f"mqtt://127.0.0.1:{port}", "edgehive/v1")
        try:
            wait_nodes_online(recorder, 2, timeout_s=60)
            # The demo camera's photos come back as detections within seconds.
            demo = wait_until(lambda: next((r for r in recorder.json("results/detections/demo") if r.get("ok")), None), 60, "a demo detection")
            assert demo["output"]["detections"] and demo["output"]["detections"][0]["label"] == "person"
            # The demo sensors are fused at once too: the thermometers as `room`, the IMU as `motion`.
            room = wait_until(lambda: next((r for r in recorder.json("results/fusion/room") if r.get("ok")), None), 30, "a fused room window")
            assert set(room["output"]["used"]) <= {"demo-t1", "demo-t2", "demo-t3"} and 15 < room["output"]["estimate"] < 27
            wait_until(lambda: recorder.json("results/fusion/motion"), 30, "a fused motion window")
        finally:
            recorder.close()

        # The README's "all but images" line, as written there: JSON and text only, while the
        # demo camera's frames flow (inside the jobs on nodes/{node}/jobs) and snapshots are drawn.
        watch = subprocess.run([*readme_watch_command(), "-p", str(port), "-W", "4"], capture_output=True, timeout=30)
        assert watch.returncode in (0, 27), watch.stderr  # 27: stopped by -W, as asked
        text = watch.stdout.decode("utf-8")  # a JPEG's bytes would not decode
        topics = {line.split(" ", 1)[0] for line in text.splitlines()}
        assert "edgehive/v1/results/detections/demo" in topics and "edgehive/v1/coordinator/stats" in topics
        assert not [t for t in topics if "/frames/" in t or "/snapshots/" in t or t.endswith("/jobs")], topics

        done = run_cli("submit", "sleep", "--params", '{"seconds": 0.05}', env=env)
        assert done.returncode == 0, done.stderr
        result = orjson.loads(done.stdout)
        assert result["ok"] is True and result["node"] in ("laptop-1", "laptop-2")

        impossible = run_cli("submit", "sleep", "--requires", '{"accelerator": "edgetpu"}', "--timeout", "10", env=env)
        assert impossible.returncode == 1
        state = orjson.loads(impossible.stdout)
        assert state["state"] == "FAILED" and "edgetpu" in state["reason"]

        status = run_cli("status", "--wait", "1", env=env)
        assert status.returncode == 0, status.stderr
        rows = {line.split()[0]: line for line in status.stdout.splitlines() if line.startswith("laptop-")}
        assert set(rows) == {"laptop-1", "laptop-2"} and all(" online " in r for r in rows.values())
        assert "coordinator: online" in status.stdout
        failed = re.search(r"(\d+) failed", status.stdout)
        assert failed and int(failed.group(1)) >= 1, status.stdout

        # The same view for scripts: one JSON object of the shape the README documents.
        scripted = run_cli("status", "--json", "--wait", "1", env=env)
        assert scripted.returncode == 0, scripted.stderr
        fleet = orjson.loads(scripted.stdout)
        assert fleet["v"] == 1 and fleet["coordinator"] == "online" and fleet["nodes_online"] == 2
        assert [(c["role"], c["epoch"] >= 1) for c in fleet["coordinators"]] == [("active", True)]
        by_node = {n["node"]: n for n in fleet["nodes"]}
        assert set(by_node) == {"laptop-1", "laptop-2"}
        for node in by_node.values():
            assert node["state"] == "online" and "sleep" in node["kinds"] and "detections" in node["kinds"]
            assert set(node) == {"node", "state", "board", "kinds", "cpu_pct", "temp_c", "throttled", "in_flight", "queued",
                                 "jobs_done", "jobs_failed", "service_ms"}
        assert sum(n["jobs_done"] for n in by_node.values()) >= 1
        assert fleet["jobs"]["failed"] >= 1 and fleet["jobs"]["done"] >= 1
        assert fleet["frames"]["demo"]["done"] >= 1 and fleet["frames"]["demo"]["in"] >= fleet["frames"]["demo"]["done"]
        assert set(fleet["fusion"]) == {"room", "motion"} and set(fleet["fusion"]["room"]) == {"windows", "fused", "refused"}
    finally:
        up.send_signal(signal.SIGINT)
        out, err = up.communicate(timeout=60)
    assert up.returncode == 0, err
    assert f"mosquitto_sub -h 127.0.0.1 -p {port}" in out and "results/fusion/#" in out
    assert "laptop-1" in out and "nodes: 2 online" in out
    # The sink wrote what happened as line protocol (no InfluxDB configured).
    measurements = {line.split(",", 1)[0].split(" ", 1)[0] for line in (tmp_path / "telemetry.lp").read_text().splitlines()}
    assert {"heartbeat", "job", "vision", "fusion", "orientation", "sensor", "coordinator"} <= measurements, measurements
    assert re.search(r"fusion: motion \d+/\d+ fused, room \d+/\d+ fused", out), out[-2000:]
    assert re.search(r"frames: demo [1-9]\d*/\d+ done", out), "the live status never showed the demo camera's frames"
    assert "Traceback" not in err


def readme_watch_command() -> list[str]:
    """The quick start's `mosquitto_sub` line that watches everything but images."""
    text = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    match = re.search(r"^(mosquitto_sub -t 'edgehive/v1/#'.*?)# all but images", text, re.MULTILINE | re.DOTALL)
    assert match, "the README's quick start has no 'all but images' mosquitto_sub line"
    return shlex.split(match.group(1).replace("\\\n", " "))


def test_status_without_a_broker_is_a_clear_error() -> None:
    env = {"EDGEHIVE_MQTT_URL": f"mqtt://127.0.0.1:{free_port()}", "PATH": "/usr/bin:/bin"}
    out = run_cli("status", env=env, timeout=30)
    assert out.returncode == 2
    assert "no connection to mqtt://127.0.0.1" in out.stderr and "Traceback" not in out.stderr


def test_a_bad_setting_is_a_clear_error() -> None:
    out = run_cli("agent", "--mqtt-url", "http://example", env={"PATH": "/usr/bin:/bin"}, timeout=30)
    assert out.returncode == 2
    assert "unsupported MQTT URL scheme" in out.stderr and "Traceback" not in out.stderr


def test_bad_settings_are_one_line_each_naming_the_variable_and_the_option() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEHIVE_")}
    env.update(EDGEHIVE_SLOTS="lots", EDGEHIVE_MQTT_URL="http://broker")
    out = run_cli("agent", "--workers", "0", env=env, timeout=30)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "edgehive agent: EDGEHIVE_MQTT_URL / --mqtt-url: unsupported MQTT URL scheme 'http' in 'http://broker': use mqtt:// or mqtts://",
        "edgehive agent: EDGEHIVE_WORKERS / --workers: Input should be greater than or equal to 1 (got '0')",
        "edgehive agent: EDGEHIVE_SLOTS / --slots: Input should be a valid integer, unable to parse string as an integer (got 'lots')",
    ]


def test_a_cameras_setting_that_does_not_parse_is_one_clear_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEHIVE_")}
    bad = run_cli("coordinator", env=dict(env, EDGEHIVE_CAMERAS='{"door": {"labels": "person"}}'), timeout=30)
    assert bad.returncode == 2
    [line] = bad.stderr.strip().splitlines()
    assert line.startswith("edgehive coordinator: EDGEHIVE_CAMERAS / --cameras:") and "door.labels" in line
    missing = run_cli("coordinator", env=dict(env, EDGEHIVE_CAMERAS=str(tmp_path / "cameras.json")), timeout=30)
    assert missing.returncode == 2 and "cannot read" in missing.stderr and "Traceback" not in missing.stderr


def test_status_waits_for_an_online_coordinators_stats(fleet: Fleet, recorder: Recorder) -> None:
    """`coordinator/stats` is not retained and comes every stats interval, longer than the
    default `--wait`: status must still print the job counts of a coordinator that is online,
    not `"jobs": null` as if it had never published any."""
    fleet.coordinator(EDGEHIVE_STATS_INTERVAL_S="4")
    wait_until(lambda: recorder.json("coordinator/stats"), 20, "the coordinator's first stats")
    env = fleet.env()
    for _ in range(3):
        scripted = run_cli("status", "--json", "--wait", "0.3", env=env)
        assert scripted.returncode == 0, scripted.stderr
        fleet_view = orjson.loads(scripted.stdout)
        assert fleet_view["coordinator"] == "online"
        assert fleet_view["jobs"] is not None, scripted.stdout
    plain = run_cli("status", "--wait", "0.3", env=env)
    assert "jobs: 0 queued" in plain.stdout, plain.stdout


def test_a_broker_that_cannot_listen_says_why_in_one_line(mosquitto: MosquittoBroker, tmp_path: Path) -> None:
    """`edgehive broker` and `edgehive up` on a port another broker holds, or with a `--listen`
    that is no host:port: a message and an exit status, never a traceback."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEHIVE_")}
    env.update(EDGEHIVE_STATE_DIR=str(tmp_path / "state"), EDGEHIVE_TELEMETRY_FILE=str(tmp_path / "t.lp"))
    taken = f"127.0.0.1:{mosquitto.port}"
    for args in (["broker", "--listen", taken], ["up", "--listen", taken, "--no-sink", "--no-demo-sensors", "--demo-camera", ""]):
        out = run_cli(*args, env=env, timeout=60)
        assert out.returncode == 1, out
        assert "Traceback" not in out.stderr and f"cannot listen on {taken}" in out.stderr and "address already in use" in out.stderr, out.stderr
    for args in (["broker", "--listen", "nonsense"], ["up", "--listen", "nonsense"]):
        out = run_cli(*args, env=env, timeout=60)
        assert out.returncode == 2, out
        assert "Traceback" not in out.stderr and "expected host:port" in out.stderr and "'nonsense'" in out.stderr, out.stderr


@pytest.mark.parametrize(("args", "said"), [
    (["--params", "x"], "--params is not JSON"),
    (["--requires", "[1]"], "--requires must be a JSON object"),
    (["--priority", "1000"], "invalid job: priority: Input should be less than or equal to 100"),
])
def test_submit_of_an_invalid_job_exits_2_with_the_reason(args: list[str], said: str) -> None:
    """`--help` says: 2 for an invalid job, as for no result or no broker (1 is a job that FAILED)."""
    env = {"EDGEHIVE_MQTT_URL": f"mqtt://127.0.0.1:{free_port()}", "PATH": "/usr/bin:/bin"}
    out = run_cli("submit", "noop", *args, env=env, timeout=30)
    assert out.returncode == 2 and said in out.stderr and "Traceback" not in out.stderr, out


def test_an_agent_whose_node_id_cannot_be_a_topic_level_says_so() -> None:
    """The node id is a level of the agent's topics (`nodes/{node}/jobs`): one that cannot be
    one stops the agent at start with the rule, like a camera's or a sensor's id, not a traceback."""
    env = {"EDGEHIVE_MQTT_URL": f"mqtt://127.0.0.1:{free_port()}", "PATH": "/usr/bin:/bin", "EDGEHIVE_MODELS_DIR": "/nonexistent"}
    out = run_cli("agent", "--node-id", "pi/1", env=env, timeout=60)
    assert out.returncode == 2 and "invalid node id 'pi/1'" in out.stderr and "Traceback" not in out.stderr, out
