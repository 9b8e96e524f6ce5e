"""The config file: `edgehive.yml` read by the same settings models, under options and variables.

What a user sees: `edgehive config check` naming each mistake's line, `edgehive config show`
naming each value's origin with secrets masked, the documented example passing the check and
landing in the models, and a fleet whose cameras, fusion groups and sensor come from the file.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import Fleet, Recorder, wait_until

from edgehive import cli, configfile
from edgehive.agents.settings import AgentSettings
from edgehive.coordinator.settings import CoordinatorSettings
from edgehive.frigate.settings import FrigateSettings
from edgehive.sensors.camera import CameraSettings
from edgehive.sensors.publisher import SensorSettings
from edgehive.settings import BrokerSettings, load_settings
from edgehive.telemetry.settings import SinkSettings

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "edgehive.example.yml"
CLI = [sys.executable, "-m", "edgehive.cli"]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEHIVE_")}
    env.update(extra)
    return env


def run_cli(*args: str, cwd: Path = ROOT, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], env=clean_env(**env), cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """No EDGEHIVE_* variable from the outside, a fresh folder, and no file chosen afterwards."""
    for name in list(os.environ):
        if name.startswith("EDGEHIVE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    configfile.reset()


def write(path: Path, text: str) -> Path:
    path.write_text(text.lstrip("\n"))
    return path


# -- the map from the file's sections to the settings -------------------------------------------


def test_every_setting_of_every_command_has_exactly_one_place_in_the_file() -> None:
    places: dict[str, list[str]] = {}
    for section, keys in configfile.SECTIONS.items():
        for key, field in keys.items():
            places.setdefault(field, []).append(f"{section}.{key}")
    for field in (*configfile.CAMERA_CAPTURE, "cameras", "fusion_groups"):
        places.setdefault(field, []).append("cameras/fusion_groups")
    fields = {field for model in cli.command_settings().values() for field in model.model_fields}
    # A camera process's own id comes from --camera/EDGEHIVE_CAMERA (it picks its entry); the
    # model a frame asks for in its envelope is the coordinator's camera entry's `model`.
    assert fields - set(places) == {"camera", "model"}
    assert set(places) - fields == set(), "a key that names no setting"
    assert {field: where for field, where in places.items() if len(where) > 1} == {}


# -- precedence ---------------------------------------------------------------------------------


def test_an_option_beats_a_variable_beats_the_file_beats_the_default(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = write(isolated / "site.yml", """
coordinator:
  queue_max: 5
  max_attempts: 4
  stats_interval_s: 3.5
""")
    monkeypatch.setenv("EDGEHIVE_QUEUE_MAX", "6")
    monkeypatch.setenv("EDGEHIVE_MAX_ATTEMPTS", "7")
    args = cli.build_parser(only="coordinator").parse_args(["coordinator", "--config", str(config), "--queue-max", "8"])
    configfile.use(args.config)
    settings = load_settings(CoordinatorSettings, args)
    assert settings.queue_max == 8  # option over variable over file
    assert settings.max_attempts == 7  # variable over file
    assert settings.stats_interval_s == 3.5  # file over default
    assert settings.finished_max == 10000  # default

    shown = run_cli("config", "show", "coordinator", "--config", str(config), "--queue-max", "8",
                    EDGEHIVE_QUEUE_MAX="6", EDGEHIVE_MAX_ATTEMPTS="7")
    assert shown.returncode == 0, shown.stderr
    lines = {line.split()[0]: line for line in shown.stdout.splitlines()[2:]}
    assert lines["queue_max"].split()[1] == "8" and lines["queue_max"].endswith("[option --queue-max]")
    assert lines["max_attempts"].split()[1] == "7" and lines["max_attempts"].endswith("[variable EDGEHIVE_MAX_ATTEMPTS]")
    assert lines["stats_interval_s"].split()[1] == "3.5" and lines["stats_interval_s"].endswith(f"[file {config}:4 (coordinator.stats_interval_s)]")
    assert lines["finished_max"].endswith("[default]")


def test_the_file_is_found_by_variable_by_yaml_variable_and_in_the_working_folder(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    configfile.use(None)
    assert AgentSettings().workers >= 1 and configfile.active() is None
    write(isolated / "edgehive.yml", "agent: {workers: 3}\n")
    configfile.use(None)  # what the command line does: ./edgehive.yml
    assert AgentSettings().workers == 3
    monkeypatch.setenv("EDGEHIVE_CONFIG_YAML", "agent: {workers: 4}")
    configfile.use(None)
    assert AgentSettings().workers == 4  # a variable names the file: ./edgehive.yml is not looked for
    monkeypatch.setenv("EDGEHIVE_CONFIG", str(write(isolated / "other.yml", "agent: {workers: 5}\n")))
    assert AgentSettings().workers == 5  # a path over the YAML variable
    configfile.use(str(isolated / "edgehive.yml"))
    assert AgentSettings().workers == 3  # --config over both


# -- the documented example ---------------------------------------------------------------------


def test_the_example_file_passes_the_check_and_lands_in_the_models(isolated: Path) -> None:
    checked = run_cli("config", "check", "--config", str(EXAMPLE))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.strip() == f"{EXAMPLE}: OK (38 settings, 3 cameras, 2 fusion groups)"

    configfile.use(str(EXAMPLE))
    coordinator = CoordinatorSettings()
    assert coordinator.broker.username == "coordinator" and coordinator.broker.host == "broker.local"
    assert coordinator.queue_max == 5000 and coordinator.state_dir == "/var/lib/edgehive/state" and coordinator.log_level == "INFO"
    driveway = coordinator.camera_policy.resolve("driveway")
    assert driveway.model == "objects" and driveway.labels == ["person", "car"] and driveway.min_score == {"car": 0.7}
    assert driveway.stages is not None and driveway.stages[0].model == "face-far" and driveway.stages[0].on == ["person"]
    assert coordinator.camera_policy.resolve("door").model == "face"
    assert coordinator.camera_policy.resolve("porch").min_score == {"*": 0.5}  # `*` for a camera named nowhere
    groups = coordinator.fusion_group_map
    assert set(groups) == {"room", "motion"} and groups["motion"].fusion_method == "imu"
    agent = AgentSettings()
    assert agent.workers == 2 and agent.tag_list == ["camera", "outdoor"]
    camera = CameraSettings(camera="driveway")
    assert camera.source.startswith("rtsp://viewer:") and camera.fps == 4.0
    assert CameraSettings(camera="door").source == "/dev/video0"
    sensor = SensorSettings()
    assert sensor.sensor == "demo" and sensor.sensor_type == "demo" and sensor.i2c_address == "0x76"
    sink = SinkSettings()
    assert sink.target == "2" and sink.sink_batch_size == 5000 and sink.influx_org == "edgehive"
    assert BrokerSettings().broker_users == "coordinator:change-me:coordinator,client:change-me-too:client"
    frigate = FrigateSettings()
    assert frigate.camera_list == ["driveway"] and frigate.label_list == ["person", "car"]
    assert frigate.frigate_url == "https://frigate:8971" and frigate.frigate_user == "edgehive" and frigate.frigate_ca_file.endswith("frigate-ca.pem")


# -- mistakes -----------------------------------------------------------------------------------

BAD = """
mqtt:
  url: http://broker.local
coordinator:
  queue_mx: 5
  queue_max: lots
  workers: 3
agnt:
  slots: 2
agent:
  tags: [a, b]
  tags: c
cameras:
  door:
    fps: 500
    modle: face
    min_score: {person: 2}
    stages:
      - {model: face-far, on: [person], tile: [1, 2, 3, 4]}
fusion_groups:
  room: {quantity: temperature, window_s: 2, window_count: 3}
  hall: {quantity: temperature, sensorz: [a]}
sink:
  influx_version: 3
"""


def test_check_prints_every_mistake_with_its_line_and_what_is_expected(isolated: Path) -> None:
    bad = write(isolated / "bad.yml", BAD)
    checked = run_cli("config", "check", "--config", str(bad))
    assert checked.returncode == 1
    assert "Traceback" not in checked.stderr
    name = str(bad)
    assert checked.stdout.splitlines() == [
        f"{name}:2: mqtt.url: unsupported MQTT URL scheme 'http' in 'http://broker.local': use mqtt:// or mqtts://",
        f"{name}:4: coordinator.queue_mx: unknown key (did you mean queue_max?)",
        f"{name}:5: coordinator.queue_max: Input should be a valid integer, unable to parse string as an integer (got 'lots')",
        f"{name}:6: coordinator.workers: unknown key (workers belongs in agent)",
        f"{name}:7: agnt: unknown section (did you mean agent?); the sections are mqtt, node, broker, coordinator, agent, sensor, sink, "
        "frigate, up, cameras, fusion_groups",
        f"{name}:11: agent.tags: given twice (first on line 10)",
        f"{name}:14: cameras.door.fps: Input should be less than or equal to 120 (got '500')",
        f"{name}:15: cameras.door.modle: unknown key (did you mean model?); a camera takes source, fps, jpeg_quality, width, height, "
        "loop, source_retry_max_s, direct, model, labels, min_score, tiles, stages",
        f"{name}:16: cameras.door.min_score.person: Input should be less than or equal to 1 (got 2)",
        f"{name}:18: cameras.door.stages.0.tile: unknown key; expected model, on, labels, min_score",
        f"{name}:20: fusion_groups.room: give window_s or window_count, not both",
        f"{name}:21: fusion_groups.hall.sensorz: unknown key (did you mean sensors?); expected quantity, sensors, window_s, "
        "window_count, method, config, requires, priority",
        f"{name}:23: sink.influx_version: Input should be 'auto', '1' or '2' (got '3')",
    ]
    assert checked.stderr.strip() == f"{name}: 13 mistakes"


def test_a_cameras_direct_frames_are_off_unless_its_entry_turns_them_on(isolated: Path) -> None:
    """`direct` is a capture setting: it sits in the camera's entry, and the check validates it."""
    good = write(isolated / "direct.yml", "cameras:\n  door:\n    source: demo\n    direct: true\n  yard:\n    source: demo\n")
    checked = run_cli("config", "check", "--config", str(good))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    configfile.use(str(good))
    assert CameraSettings(camera="door").direct is True
    assert CameraSettings(camera="yard").direct is False
    bad = write(isolated / "bad-direct.yml", "cameras:\n  door:\n    direct: sometimes\n")
    checked = run_cli("config", "check", "--config", str(bad))
    assert checked.returncode == 1 and "Traceback" not in checked.stderr
    assert checked.stdout.startswith(f"{bad}:3: cameras.door.direct: Input should be a valid boolean")


def test_a_file_that_is_not_yaml_says_its_line(isolated: Path) -> None:
    broken = write(isolated / "broken.yml", "agent:\n  workers: 2\n  tags: [a, b\nsink: {}\n")
    checked = run_cli("config", "check", "--config", str(broken))
    assert checked.returncode == 1
    assert checked.stdout.startswith(f"{broken}:4: not valid YAML: ")
    assert run_cli("config", "check", "--config", str(isolated / "missing.yml")).returncode == 2
    nothing = run_cli("config", "check", cwd=isolated)
    assert nothing.returncode == 2 and "no config file" in nothing.stderr


def test_a_service_refuses_to_start_on_a_mistake_and_names_its_line(isolated: Path) -> None:
    bad_value = write(isolated / "value.yml", "node:\n  log_level: INFO\ncoordinator:\n  queue_max: lots\n")
    started = run_cli("coordinator", "--config", str(bad_value))
    assert started.returncode == 2 and "Traceback" not in started.stderr
    assert started.stderr.strip() == (f"edgehive coordinator: {bad_value}:4 (coordinator.queue_max): Input should be a valid integer, "
                                      "unable to parse string as an integer (got 'lots')")
    typo = write(isolated / "typo.yml", "agent:\n  worker: 2\n")
    started = run_cli("agent", "--config", str(typo))
    assert started.returncode == 2
    assert started.stderr.strip() == f"edgehive agent: {typo}:2: agent.worker: unknown key (did you mean workers?)"


# -- show ---------------------------------------------------------------------------------------


def test_show_names_each_origin_and_masks_every_secret(isolated: Path) -> None:
    write(isolated / "edgehive.yml", """
mqtt:
  url: mqtt://coordinator:file-secret-1@broker.local:1883
sink:
  influx_token: file-secret-2
broker:
  users: [sink:file-secret-3:sink]
cameras:
  gate: {source: "rtsp://viewer:file-secret-4@10.0.0.9/stream", fps: 3}
""")
    shown = run_cli("config", "show", cwd=isolated, EDGEHIVE_INFLUX_PASSWORD="env-secret-5")
    assert shown.returncode == 0, shown.stderr
    out = shown.stdout
    assert "secret" not in out
    assert out.splitlines()[0] == "config file: edgehive.yml"
    rows = {tuple(line.split()[:2]): line for line in out.splitlines() if line.startswith("  ")}
    assert rows[("mqtt_url", "mqtt://coordinator:***@broker.local:1883")].endswith("[file edgehive.yml:2 (mqtt.url)]")
    assert rows[("influx_token", "***")].endswith("[file edgehive.yml:4 (sink.influx_token)]")
    assert rows[("influx_password", "***")].endswith("[variable EDGEHIVE_INFLUX_PASSWORD]")
    assert rows[("broker_users", "sink:***:sink")].endswith("[file edgehive.yml:6 (broker.users)]")
    assert rows[("source", "rtsp://viewer:***@10.0.0.9/stream")].endswith("[file edgehive.yml:8 (cameras.gate.source)]")
    assert rows[("fps", "3.0")].endswith("[file edgehive.yml:8 (cameras.gate.fps)]")
    assert "camera gate (edgehive camera --camera gate)" in out
    assert rows[("queue_max", "10000")].endswith("[default]")


# -- a fleet configured by the file ------------------------------------------------------------


def results(recorder: Recorder, camera: str) -> list[dict[str, Any]]:
    return [r for r in recorder.json(f"results/detections/{camera}") if r.get("ok")]


@pytest.mark.integration
@pytest.mark.parametrize("broker", ["mosquitto"], indirect=True)  # the file is read before any broker is reached
def test_cameras_fusion_groups_and_sensors_come_from_the_file(fleet: Fleet, recorder: Recorder, tmp_path: Path) -> None:
    """Two cameras on the bundled photos of a person: `gate` keeps only cars (so its results are
    empty), `yard` keeps what the model finds; the sensor process publishes the demo set and the
    coordinator fuses the group the file defines. Sources, labels, groups, the sensor type and the
    agent's models all come from the file, nothing from variables."""
    config = write(tmp_path / "edgehive.yml", f"""
agent:
  models_dir: {ROOT / "models"}
  models: [objects]
cameras:
  gate: {{source: demo, fps: 2, model: objects, labels: [car]}}
  yard: {{source: demo, fps: 2, model: objects}}
fusion_groups:
  hall: {{quantity: temperature, sensors: [demo-t1, demo-t2, demo-t3], window_s: 0.5}}
sensor:
  id: demo
  type: demo
""")
    with_file = ["--config", str(config)]
    fleet._spawn("coordinator", ["coordinator", *with_file], fleet.env())
    env = fleet.env()
    del env["EDGEHIVE_MODELS_DIR"]  # the file's models_dir, not the harness's empty folder
    fleet._spawn("agent", ["agent", *with_file], {**env, "EDGEHIVE_NODE_ID": "pi-1"})
    for camera in ("gate", "yard"):
        fleet._spawn(camera, ["camera", *with_file, "--camera", camera], fleet.env())
    fleet._spawn("sensor", ["sensor", *with_file], fleet.env())

    yard = wait_until(lambda: next((r for r in results(recorder, "yard") if r["output"]["detections"]), None), 90, "a detection on yard")
    assert "person" in {d["label"] for d in yard["output"]["detections"]}
    gate = wait_until(lambda: results(recorder, "gate")[:2] if len(results(recorder, "gate")) >= 2 else None, 60, "two results on gate")
    assert [r["output"]["detections"] for r in gate] == [[], []], "gate keeps only cars: the person is dropped on the node"
    hall = wait_until(lambda: next((r for r in recorder.json("results/fusion/hall") if r.get("ok")), None), 60, "a fused hall window")
    assert set(hall["output"]["used"]) <= {"demo-t1", "demo-t2", "demo-t3"}


def test_the_compose_and_balena_config_yaml_passes_the_check() -> None:
    import yaml

    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    texts = {name: svc["environment"]["EDGEHIVE_CONFIG_YAML"] for name, svc in compose["services"].items()
             if "EDGEHIVE_CONFIG_YAML" in svc.get("environment", {})}
    assert set(texts) == {"coordinator", "agent", "camera", "sensor", "sink"} and len(set(texts.values())) == 1
    checked = run_cli("config", "check", EDGEHIVE_CONFIG_YAML=texts["coordinator"])
    assert checked.returncode == 0 and checked.stdout.strip() == "EDGEHIVE_CONFIG_YAML: OK (4 settings, 1 cameras, 2 fusion groups)"


def test_up_hands_the_chosen_file_to_the_processes_it_starts(isolated: Path) -> None:
    write(isolated / "edgehive.yml", "up: {agents: 2}\n")
    configfile.use(None)  # found in the working folder, named relatively
    assert configfile.child_env() == {"EDGEHIVE_CONFIG": str(isolated / "edgehive.yml")}
    configfile.reset()
    assert configfile.child_env() == {}


def test_show_covers_the_frigate_bridge_like_every_other_section(isolated: Path) -> None:
    """`frigate` is a section of the file, so `config show` lists the bridge's settings with
    their origins, and `config show frigate` takes the bridge's options."""
    write(isolated / "edgehive.yml", """
frigate:
  url: http://frigate:5000
  min_score: 0.7
""")
    shown = run_cli("config", "show", cwd=isolated)
    assert shown.returncode == 0, shown.stderr
    assert "\nfrigate\n" in shown.stdout
    rows = {line.split()[0]: line for line in shown.stdout.splitlines() if line.startswith("  ")}
    assert rows["frigate_url"].split()[1] == "http://frigate:5000"
    assert rows["frigate_url"].endswith("[file edgehive.yml:2 (frigate.url)]")
    one = run_cli("config", "show", "frigate", "--frigate-min-score", "0.9", cwd=isolated)
    assert one.returncode == 0, one.stderr
    rows = {line.split()[0]: line for line in one.stdout.splitlines() if line.startswith("  ")}
    assert rows["frigate_min_score"].split()[1] == "0.9"
    assert rows["frigate_min_score"].endswith("[option --frigate-min-score]")


def test_show_into_a_pipe_closed_early_ends_quietly(isolated: Path) -> None:
    """`edgehive config show | head`: the reader leaving early is no error worth a traceback."""
    write(isolated / "edgehive.yml", "coordinator:\n  queue_max: 5\n")
    with subprocess.Popen([*CLI, "config", "show"], cwd=isolated, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()  # the reader is gone before the first line is written
        err = proc.stderr.read().decode()
        assert proc.wait(timeout=60) == 0 and "Traceback" not in err, err
