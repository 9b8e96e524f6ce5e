"""The fleet deploy (issue 6): balena.yml, docker-compose.yml, the Dockerfiles, the role gate,
the documented environment, and the production Mosquitto setup on the real Debian mosquitto.

No Docker daemon is needed: files are parsed (YAML, the Compose Spec schema, Docker's own
Dockerfile parser), the scripts the images run are run here, and the broker container's
configuration starts the real `mosquitto` with the container's auth and persistence.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dockerfile
import jsonschema
import orjson
import pytest
import yaml
from harness import Fleet, MosquittoProcess, Recorder, free_port, user_exists, wait_nodes_online, wait_until

from edgehive.broker.mosquitto import CONFIG_PATH, render_config
from edgehive.cli import build_parser, command_settings
from edgehive.envdoc import DEPLOY_MD, END, RAW, START, all_vars, code_reads, render_table, update_doc, yaml_strings
from edgehive.healthcheck import KINDS
from edgehive.settings import MqttUrl, env_name

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_PATH = ROOT / "docker-compose.yml"
BALENA_PATH = ROOT / "balena.yml"
SCHEMA_PATH = Path(__file__).with_name("data") / "compose-spec.json"
ROLE_GATE = ROOT / "deploy" / "role-gate"
EDGEHIVE_BIN = Path(sys.executable).with_name("edgehive")

REQUIRED_DEVICE_TYPES = {"raspberrypi4-64", "raspberrypi5", "jetson-orin-nano-devkit-nvme", "genericx86-64-ext"}
SERVICES = {"broker", "coordinator", "agent", "camera", "sensor", "sink", "influxdb", "grafana"}
HEAD = {"broker", "coordinator", "sink", "influxdb", "grafana", "agent"}
# What the balena supervisor does not support (docs: "docker-compose.yml fields").
BALENA_UNSUPPORTED = {"container_name", "cpu_count", "cpu_percent", "cpus", "deploy", "external_links", "isolation", "links",
                      "logging", "memswap_limit", "mem_swappiness", "runtime", "scale", "stdin_open", "tty", "volume_driver",
                      "volumes_from", "secrets", "configs", "develop", "profiles"}


def load_yaml(path: Path) -> Any:
    with path.open(encoding="utf-8") as f:
        return yaml.safe_load(f)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_yaml(COMPOSE_PATH)


@pytest.fixture(scope="module")
def balena() -> dict[str, Any]:
    return load_yaml(BALENA_PATH)


def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def env_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    assert isinstance(env, dict), "environment is a mapping (balena and Compose read both forms; one form is easier to check)"
    return {k: str(v) for k, v in env.items()}


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """Named volume → the path it is mounted at."""
    return {v.split(":")[0]: v.split(":")[1] for v in service.get("volumes", [])}


# --- Dockerfiles -------------------------------------------------------------------------------


def build_of(service: dict[str, Any]) -> tuple[Path, str | None]:
    build = service["build"]
    if isinstance(build, str):
        return ROOT / build, None
    return ROOT / build.get("context", "."), build.get("dockerfile")


def dockerfiles_of(service: dict[str, Any]) -> dict[str, Path]:
    """Which file each builder uses: balena prefers Dockerfile.template over Dockerfile when no
    `dockerfile:` is named (a named one is used as it is); Docker Compose uses `Dockerfile`."""
    context, named = build_of(service)
    if named is not None:
        return {"balena": context / named, "docker": context / named}
    template = context / "Dockerfile.template"
    return {"balena": template if template.exists() else context / "Dockerfile", "docker": context / "Dockerfile"}


def render_template(text: str, machine: str) -> str:
    return text.replace("%%BALENA_MACHINE_NAME%%", machine).replace("%%BALENA_ARCH%%", "aarch64")


def parse_dockerfile(text: str) -> list[dockerfile.Command]:
    return list(dockerfile.parse_string(text))


def final_stage_base_is_a_stage(commands: list[dockerfile.Command]) -> bool:
    froms = [c for c in commands if c.cmd == "FROM"]
    stages = {c.value[2].lower() for c in froms[:-1] if len(c.value) == 3}
    return froms[-1].value[0].lower() in stages


def dockerignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip().rstrip("/") for line in lines if line.strip() and not line.startswith("#")]


def ignored(rel: str, patterns: list[str]) -> bool:
    """Close to Docker's .dockerignore rules: a path is left out when it, or a folder above it,
    matches a pattern from the context's root; a `**/` pattern matches at any depth."""
    parts = rel.split("/")
    from_root = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    anywhere = ["/".join(parts[j: i + 1]) for i in range(len(parts)) for j in range(i + 1)]
    for pattern in patterns:
        if pattern.startswith("**/"):
            if any(fnmatch.fnmatch(p, pattern[3:]) for p in anywhere):
                return True
        elif any(fnmatch.fnmatch(p, pattern) for p in from_root):
            return True
    return False


# --- balena.yml --------------------------------------------------------------------------------


def test_balena_yml_carries_the_fleet_contract(balena: dict[str, Any]) -> None:
    assert balena["type"] == "sw.application"
    assert balena["name"] and balena["description"].strip()
    assert re.fullmatch(r"\d+\.\d+\.\d+", str(balena["version"])), "balena.yml's version is a release's semver"
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert f'version = "{balena["version"]}"' in pyproject, "a release carries the package's version"
    data = balena["data"]
    supported = set(data["supportedDeviceTypes"])
    assert supported >= REQUIRED_DEVICE_TYPES
    assert data["defaultDeviceType"] in supported
    variables = data["applicationEnvironmentVariables"]
    assert all(isinstance(v, dict) and len(v) == 1 for v in variables), "each entry is one NAME: default"
    defaults = {k: v for entry in variables for k, v in entry.items()}
    assert all(value not in (None, "") for value in defaults.values()), "every variable comes with its default"
    assert defaults["EDGEHIVE_ROLE"] == "all"
    assert set(defaults) >= {"EDGEHIVE_BROKER_USERS", "EDGEHIVE_INFLUX_TOKEN"}
    assert all(k.startswith("BALENA_") for entry in data.get("applicationConfigVariables", []) for k in entry)


def test_balena_variable_defaults_agree_with_the_compose_file(balena: dict[str, Any], compose: dict[str, Any]) -> None:
    defaults = {k: str(v) for entry in balena["data"]["applicationEnvironmentVariables"] for k, v in entry.items()}
    for name, value in defaults.items():
        in_compose = {env_of(s)[name] for s in services(compose).values() if name in env_of(s)}
        assert in_compose <= {value}, f"{name}: balena.yml says {value!r}, docker-compose.yml {in_compose}"


# --- docker-compose.yml ------------------------------------------------------------------------


def test_compose_validates_against_the_compose_specification(compose: dict[str, Any]) -> None:
    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft201909Validator.check_schema(schema)
    validator = jsonschema.Draft201909Validator(schema)
    errors = [f"{e.json_path}: {e.message}" for e in validator.iter_errors(compose)]
    assert errors == []
    # ...and the schema does catch a mistake.
    broken = json.loads(json.dumps(compose))
    broken["services"]["agent"]["restart_policy"] = "always"
    assert list(validator.iter_errors(broken))


def test_compose_has_every_service_volume_and_restart_policy(compose: dict[str, Any]) -> None:
    svcs = services(compose)
    assert set(svcs) == SERVICES
    declared = set(compose["volumes"])
    for name, svc in svcs.items():
        assert svc.get("restart") == "on-failure", f"{name}: the role gate's exit 0 must keep it down; crashes restart"
        for source, target in mounts(svc).items():
            assert source in declared, f"{name}: {source} is not a named volume (balena allows no bind mounts)"
            assert target.startswith("/")
    assert mounts(svcs["broker"]) == {"broker-data": "/mosquitto/data"}
    assert mounts(svcs["influxdb"]) == {"influxdb-data": "/var/lib/influxdb2", "influxdb-config": "/etc/influxdb2"}
    assert set(mounts(svcs["coordinator"])) == {"coordinator-state"}
    assert set(mounts(svcs["sink"])) == {"sink-spool"}
    assert set(mounts(svcs["grafana"])) == {"grafana-data"}
    assert declared == {v for svc in svcs.values() for v in mounts(svc)}, "no volume declared and left unused"


def test_compose_is_what_the_balena_supervisor_runs(compose: dict[str, Any]) -> None:
    assert str(compose["version"]) == "2.4"
    assert "$" not in COMPOSE_PATH.read_text(), "balena does no variable substitution"
    for name, svc in services(compose).items():
        assert not BALENA_UNSUPPORTED & set(svc), f"{name} uses fields balena does not support"
        assert isinstance(svc.get("depends_on", []), list), f"{name}: balena takes depends_on as a list only"
        for label in svc.get("labels", {}):
            assert label.startswith("io.balena.features."), f"{name}: unexpected label {label}"


def test_balena_labels_only_where_hardware_is_read(compose: dict[str, Any]) -> None:
    labelled = {name: svc["labels"] for name, svc in services(compose).items() if svc.get("labels")}
    assert labelled == {"agent": {"io.balena.features.sysfs": "1", "io.balena.features.procfs": "1"}}


def test_every_service_has_a_healthcheck_that_means_something(compose: dict[str, Any]) -> None:
    for name, svc in services(compose).items():
        check = svc["healthcheck"]
        assert check["test"][0] == "CMD" and check["interval"] and check["timeout"] and check["retries"] >= 2, name
        assert "start_period" in check, f"{name}: a slow first start must not count as unhealthy"
        if check["test"][1:3] == ["edgehive", "healthcheck"]:
            assert check["test"][3] == name, f"{name} checks the evidence of its own work"
            assert check["test"][3] in KINDS
    assert services(compose)["broker"]["healthcheck"]["test"] == ["CMD", "broker-healthcheck"]
    assert services(compose)["influxdb"]["healthcheck"]["test"] == ["CMD", "influx", "ping"]


def test_every_build_context_and_dockerfile_exists(compose: dict[str, Any]) -> None:
    patterns = dockerignore_patterns()
    for name, svc in services(compose).items():
        context, _ = build_of(svc)
        assert context.is_dir(), f"{name}: build context {context} is missing"
        for builder, path in dockerfiles_of(svc).items():
            assert path.is_file(), f"{name}: {builder} would build {path}, which is missing"
            commands = parse_dockerfile(render_template(path.read_text(), "raspberrypi4-64"))
            for copy in (c for c in commands if c.cmd in ("COPY", "ADD") and not any(f.startswith("--from") for f in c.flags)):
                for source in copy.value[:-1]:
                    assert (context / source).exists(), f"{name} ({path.name}): COPY {source} is not in the build context"
                    if source != ".":
                        assert not ignored(source, patterns), f"{name} ({path.name}): COPY {source} is excluded by .dockerignore"
            for run in (c for c in commands if c.cmd == "RUN" and not c.json):
                syntax = subprocess.run([shutil.which("dash") or "sh", "-n", "-c", run.value[0]], capture_output=True, text=True,
                                        timeout=30, check=False)
                assert syntax.returncode == 0, f"{name} ({path.name}:{run.start_line}): {syntax.stderr}"


def test_dockerignore_keeps_what_the_wheel_needs_and_drops_the_rest() -> None:
    patterns = dockerignore_patterns()
    for needed in ("pyproject.toml", "README.md", "edgehive/cli.py", "agents/agent.py", "sensors/demo", "models/manifest.json",
                   "deploy/role-gate", "grafana/dashboards"):
        assert not ignored(needed, patterns), needed
    for dropped in (".venv", ".git", "tests/test_deploy.py", "models/pose_detection.tflite", "agents/__pycache__/x.pyc"):
        assert ignored(dropped, patterns), dropped
    assert not ignored("agents/tests_helper.py", ["tests"]) and ignored("a/b/__pycache__", ["**/__pycache__"])


def test_the_template_has_a_base_for_every_supported_device_type(balena: dict[str, Any]) -> None:
    template = (ROOT / "Dockerfile.template").read_text()
    assert "%%BALENA_MACHINE_NAME%%" in template
    for machine in [*balena["data"]["supportedDeviceTypes"], "generic"]:
        commands = parse_dockerfile(render_template(template, machine))
        assert final_stage_base_is_a_stage(commands), f"no stage for device type {machine}"
    assert not final_stage_base_is_a_stage(parse_dockerfile(render_template(template, "beaglebone-black")))
    jetson = render_template(template, "jetson-orin-nano-devkit-nvme")
    stages = {c.value[2]: c.value[0] for c in parse_dockerfile(jetson) if c.cmd == "FROM" and len(c.value) == 3}
    assert stages["jetson-orin-nano-devkit-nvme"] == "jetson-l4t" and stages["jetson-l4t"].startswith("ubuntu:22.04")
    assert "nvidia-l4t-cuda" in template and "repo.download.nvidia.com/jetson" in template


def test_the_plain_dockerfile_is_the_template_rendered_for_a_generic_machine() -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "deploy" / "render_dockerfile.py"), "--check"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


def test_the_edgehive_image_fetches_checked_models_and_runs_unprivileged() -> None:
    commands = parse_dockerfile(render_template((ROOT / "Dockerfile.template").read_text(), "raspberrypi5"))
    final = commands[max(i for i, c in enumerate(commands) if c.cmd == "FROM"):]
    runs = " ".join(c.value[0] for c in final if c.cmd == "RUN")
    assert "edgehive models --models-dir /opt/edgehive/models" in runs
    # the image runs the dependency versions the tests ran on, as ./edgehive.sh installs them
    copies = {c.value[0]: c.value[-1] for c in final if c.cmd == "COPY" and len(c.value) == 2}
    assert f"pip install -c {copies['constraints.txt']}" in runs
    assert image_env()["EDGEHIVE_MODELS_DIR"] == "/opt/edgehive/models"
    assert [c.value for c in final if c.cmd == "USER"] == [("edgehive",)]
    assert [c.value for c in final if c.cmd == "ENTRYPOINT"] == [("role-gate", "--edgehive")]


def image_env() -> dict[str, str]:
    """The ENV of the edgehive image's final stage."""
    commands = parse_dockerfile(render_template((ROOT / "Dockerfile.template").read_text(), "generic"))
    final = commands[max(i for i, c in enumerate(commands) if c.cmd == "FROM"):]
    env: dict[str, str] = {}
    for command in (c for c in final if c.cmd == "ENV"):
        values = list(command.value)
        env.update(zip(values[::2], values[1::2]))
    return env


def test_volumes_are_mounted_where_the_services_keep_their_state(compose: dict[str, Any]) -> None:
    env = image_env()
    svcs = services(compose)
    assert mounts(svcs["coordinator"])["coordinator-state"] == env["EDGEHIVE_STATE_DIR"]
    assert mounts(svcs["sink"])["sink-spool"] == env["EDGEHIVE_SPOOL_DIR"]
    assert Path(env["EDGEHIVE_TELEMETRY_FILE"]).parent == Path(env["EDGEHIVE_SPOOL_DIR"])
    grafana = parse_dockerfile((ROOT / "deploy" / "grafana" / "Dockerfile").read_text())
    genv = {k: v for c in grafana if c.cmd == "ENV" for k, v in zip(c.value[::2], c.value[1::2])}
    assert mounts(svcs["grafana"])["grafana-data"] == genv["GF_PATHS_DATA"]


# --- commands ----------------------------------------------------------------------------------


def subcommands() -> set[str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return set(sub.choices)  # type: ignore[attr-defined]


def edgehive_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The services built from the edgehive image (Dockerfile.template at the root)."""
    return {n: s for n, s in services(compose).items() if dockerfiles_of(s)["balena"] == ROOT / "Dockerfile.template"}


def test_edgehive_services_run_their_own_subcommand_through_the_role_gate(compose: dict[str, Any]) -> None:
    edge = edgehive_services(compose)
    assert set(edge) == {"coordinator", "agent", "camera", "sensor", "sink"}
    for name, svc in edge.items():
        # The gate takes the subcommand as the service name, so it must be the service's name.
        assert svc["command"] == [name], f"{name}: command must be [{name!r}]"
        assert svc["command"][0] in subcommands()
    for name, svc in services(compose).items():
        if name not in edge:
            assert "command" not in svc, f"{name} runs its image's own command"


@pytest.mark.parametrize("command", ["coordinator", "agent", "camera", "sensor", "sink"])
def test_every_compose_command_is_an_edgehive_subcommand_whose_help_runs(compose: dict[str, Any], command: str) -> None:
    commands = {svc["command"][0] for svc in services(compose).values() if "command" in svc}
    assert command in commands
    out = subprocess.run([str(EDGEHIVE_BIN), command, "--help"], capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    assert "EDGEHIVE_MQTT_URL" in out.stdout


def test_every_healthcheck_command_runs(compose: dict[str, Any]) -> None:
    for name, svc in services(compose).items():
        test = svc["healthcheck"]["test"]
        if test[1] == "edgehive":
            out = subprocess.run([str(EDGEHIVE_BIN), *test[2:], "--help"], capture_output=True, text=True, timeout=60, check=False)
            assert out.returncode == 0, f"{name}: {out.stderr}"


# --- the role gate -----------------------------------------------------------------------------


def gate(*args: str, role: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "EDGEHIVE_ROLE"}
    if role is not None:
        env["EDGEHIVE_ROLE"] = role
    shell = shutil.which("dash") or "sh"  # POSIX sh, as on Alpine and Debian images
    return subprocess.run([shell, str(ROLE_GATE), *args], env=env, capture_output=True, text=True, timeout=30, check=False)


def running(role: str | None) -> set[str]:
    return {name for name in SERVICES if gate(name, "echo", "RAN", role=role).stdout.strip() == "RAN"}


def test_the_role_gate_starts_each_service_only_in_its_roles() -> None:
    assert running(None) == SERVICES, "no role set: everything (a whole fleet on one device)"
    assert running("all") == SERVICES
    assert running("head") == HEAD
    assert running("worker") == {"agent"}
    assert running("worker,camera") == {"agent", "camera"}
    assert running("head sensor") == HEAD | {"sensor"}
    assert running("camera") == {"camera"}
    skipped = gate("broker", "echo", "RAN", role="worker")
    assert skipped.returncode == 0 and "does not run on this device" in skipped.stdout


def test_the_role_gate_refuses_an_unknown_role_loudly() -> None:
    typo = gate("agent", "echo", "RAN", role="wroker")
    assert typo.returncode == 2 and "wroker" in typo.stderr and "RAN" not in typo.stdout


def test_the_role_gate_always_runs_commands_that_are_not_services() -> None:
    assert gate("status", "echo", "RAN", role="worker").stdout.strip() == "RAN"
    assert gate("healthcheck", "echo", "RAN", role="camera").stdout.strip() == "RAN"


def test_the_role_gate_knows_exactly_the_compose_services(compose: dict[str, Any]) -> None:
    assert set(gate("--list", "all", role=None).stdout.split()) == set(services(compose))
    assert set(gate("--list", "head", role=None).stdout.split()) == HEAD


def test_every_image_gates_itself_by_its_own_service_name(compose: dict[str, Any]) -> None:
    for name, svc in services(compose).items():
        path = dockerfiles_of(svc)["balena"]
        commands = parse_dockerfile(render_template(path.read_text(), "raspberrypi4-64"))
        entrypoint = [c.value for c in commands if c.cmd == "ENTRYPOINT"][-1]
        copies = [c.value for c in commands if c.cmd == "COPY"]
        assert ("deploy/role-gate", "/usr/local/bin/role-gate") in copies, f"{name}: the image lacks the gate"
        if entrypoint == ("role-gate", "--edgehive"):
            assert svc["command"][0] == name
        else:
            assert entrypoint[:2] == ("role-gate", name), f"{name}: ENTRYPOINT {entrypoint}"


def test_the_deploy_scripts_are_posix_sh() -> None:
    scripts = [ROLE_GATE, *sorted((ROOT / "broker").glob("*.sh")), *sorted((ROOT / "deploy" / "influxdb").glob("*.sh"))]
    shellcheck = Path(sys.executable).with_name("shellcheck")
    proc = subprocess.run([str(shellcheck), "-s", "sh", *map(str, scripts)], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for script in scripts:
        assert os.access(script, os.X_OK), f"{script} is not executable"


# --- the documented environment ----------------------------------------------------------------


def settings_names() -> set[str]:
    return {env_name(field) for model in command_settings().values() for field in model.model_fields}


def table_names() -> set[str]:
    text = DEPLOY_MD.read_text()
    table = text[text.index(START):text.index(END)]
    return set(re.findall(r"^\| `([A-Z][A-Z0-9_]+)` \|", table, re.MULTILINE))


def test_every_variable_the_code_reads_is_in_the_deploy_table_and_every_row_is_read() -> None:
    read = settings_names() | set(code_reads())
    documented = table_names()
    assert read - documented == set(), "read by the code but missing from docs/DEPLOY.md (run `python -m edgehive.envdoc`)"
    assert documented - read == set(), "in docs/DEPLOY.md's table but read by nothing"


def test_the_raw_variable_list_is_exactly_what_the_code_reads_outside_settings() -> None:
    raw_read = set(code_reads()) - settings_names()
    assert {v.name for v in RAW} == raw_read
    assert "BALENA_DEVICE_UUID" in raw_read and "EDGEHIVE_ROLE" in raw_read


def test_the_deploy_table_is_up_to_date() -> None:
    text = DEPLOY_MD.read_text()
    assert update_doc(text, render_table(all_vars())) == text, "run `python -m edgehive.envdoc`"


def test_the_scan_finds_reads_in_python_scripts_and_grafana_provisioning(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "a.py").write_text('import os\nos.environ.get("EDGEHIVE_A")\nos.environ["BALENA_B"]\nos.getenv(\'EDGEHIVE_C\')\n'
                                           'os.environ["HOME"]\nenv = dict(os.environ, EDGEHIVE_SET="1")\n')
    (tmp_path / "run").write_text('#!/bin/sh\necho "${EDGEHIVE_D:-x}" $EDGEHIVE_E\n')
    (tmp_path / "grafana" / "provisioning").mkdir(parents=True)
    (tmp_path / "grafana" / "provisioning" / "ds.yaml").write_text("# ${EDGEHIVE_COMMENT} is no read\nurl: ${EDGEHIVE_F}\n")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "t.py").write_text('os.environ.get("EDGEHIVE_TEST_ONLY")\n')
    assert set(code_reads(tmp_path)) == {"EDGEHIVE_A", "BALENA_B", "EDGEHIVE_C", "EDGEHIVE_D", "EDGEHIVE_E", "EDGEHIVE_F"}


def test_compose_balena_and_image_variables_are_read_by_the_code(compose: dict[str, Any], balena: dict[str, Any]) -> None:
    read = settings_names() | set(code_reads())
    used = {name for svc in services(compose).values() for name in env_of(svc)}
    used |= {k for entry in balena["data"]["applicationEnvironmentVariables"] for k in entry}
    used |= set(image_env())
    ours = {name for name in used if name.startswith(("EDGEHIVE_", "BALENA_"))}
    assert ours - read == set(), "set for a container but read by nothing (a typo, or a setting that was renamed)"
    assert {name for name in used if not name.startswith(("EDGEHIVE_", "BALENA_"))} <= {
        "PYTHONUNBUFFERED", "PIP_NO_CACHE_DIR", "PIP_DISABLE_PIP_VERSION_CHECK", "PATH", "GF_SECURITY_ADMIN_USER",
        "GF_SECURITY_ADMIN_PASSWORD", "GF_USERS_ALLOW_SIGN_UP", "DOCKER_INFLUXDB_INIT_USERNAME", "DOCKER_INFLUXDB_INIT_PASSWORD",
        "DOCKER_INFLUXDB_INIT_RETENTION"}


def test_the_readme_points_to_the_deploy_guide() -> None:
    assert "docs/DEPLOY.md" in (ROOT / "README.md").read_text()


# --- InfluxDB and Grafana wiring ---------------------------------------------------------------


def test_influxdb_is_set_up_with_what_the_sink_and_grafana_use(compose: dict[str, Any]) -> None:
    svcs = services(compose)
    influx, sink, grafana = env_of(svcs["influxdb"]), env_of(svcs["sink"]), env_of(svcs["grafana"])
    for name in ("EDGEHIVE_INFLUX_TOKEN", "EDGEHIVE_INFLUX_ORG", "EDGEHIVE_INFLUX_BUCKET"):
        assert sink[name] == influx[name], name
    for name in ("EDGEHIVE_INFLUX_DATABASE", "EDGEHIVE_INFLUX_USERNAME", "EDGEHIVE_INFLUX_PASSWORD"):
        assert grafana[name] == influx[name], name
    assert sink["EDGEHIVE_INFLUX_URL"] == grafana["EDGEHIVE_INFLUX_URL"] == "http://influxdb:8086"
    assert len(influx["DOCKER_INFLUXDB_INIT_PASSWORD"]) >= 8, "InfluxDB's setup refuses shorter passwords"
    image = parse_dockerfile((ROOT / "deploy" / "influxdb" / "Dockerfile").read_text())
    copies = {c.value[0]: c.value[1] for c in image if c.cmd == "COPY"}
    assert copies["deploy/influxdb/init-edgehive.sh"].startswith("/docker-entrypoint-initdb.d/")
    assert copies["deploy/influxdb/init-edgehive.sh"].endswith(".sh"), "the official image runs only *.sh there"
    init = (ROOT / "deploy" / "influxdb" / "init-edgehive.sh").read_text()
    assert "influx v1 dbrp create" in init and "influx v1 auth create" in init


def test_the_influxdb_entrypoint_maps_the_sinks_settings_onto_the_setup_variables(tmp_path: Path) -> None:
    script = (ROOT / "deploy" / "influxdb" / "entrypoint.sh").read_text()
    assert "exec /entrypoint.sh" in script
    probe = tmp_path / "entrypoint.sh"
    probe.write_text(script.replace("exec /entrypoint.sh", "exec env"))  # print what the official entrypoint would get
    base = {"PATH": os.environ["PATH"], "EDGEHIVE_INFLUX_TOKEN": "tok", "EDGEHIVE_INFLUX_ORG": "org", "EDGEHIVE_INFLUX_BUCKET": "bkt"}

    def setup_env(**extra: str) -> dict[str, str]:
        out = subprocess.run(["sh", str(probe)], env={**base, **extra}, capture_output=True, text=True, timeout=30, check=True).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if line.startswith("DOCKER_INFLUXDB_INIT_"))

    assert setup_env() == {"DOCKER_INFLUXDB_INIT_MODE": "setup", "DOCKER_INFLUXDB_INIT_ADMIN_TOKEN": "tok",
                           "DOCKER_INFLUXDB_INIT_ORG": "org", "DOCKER_INFLUXDB_INIT_BUCKET": "bkt"}
    assert setup_env(DOCKER_INFLUXDB_INIT_ORG="mine")["DOCKER_INFLUXDB_INIT_ORG"] == "mine", "an explicit setup variable wins"


def test_the_influxdb_init_script_maps_the_database_and_creates_the_grafana_user(tmp_path: Path) -> None:
    fake = tmp_path / "influx"
    fake.write_text('#!/bin/sh\necho "influx $*" >> "$INFLUX_CALLS"\n')
    fake.chmod(0o755)
    calls = tmp_path / "calls"
    env = {"PATH": f"{tmp_path}:{os.environ['PATH']}", "INFLUX_CALLS": str(calls), "DOCKER_INFLUXDB_INIT_BUCKET_ID": "b1",
           "DOCKER_INFLUXDB_INIT_ORG": "edgehive", "EDGEHIVE_INFLUX_DATABASE": "db", "EDGEHIVE_INFLUX_USERNAME": "grafana",
           "EDGEHIVE_INFLUX_PASSWORD": "secret-pw"}
    subprocess.run(["sh", str(ROOT / "deploy" / "influxdb" / "init-edgehive.sh")], env=env, check=True, timeout=30)
    lines = calls.read_text().splitlines()
    assert lines[0].startswith("influx v1 dbrp create --db db --rp autogen --default --bucket-id b1")
    assert lines[1].startswith("influx v1 auth create --username grafana --password secret-pw --read-bucket b1 --write-bucket b1")
    assert len(lines) == 2


def test_grafana_gets_its_provisioning_where_the_provider_looks(compose: dict[str, Any]) -> None:
    image = parse_dockerfile((ROOT / "deploy" / "grafana" / "Dockerfile").read_text())
    copies = {c.value[0]: c.value[1] for c in image if c.cmd == "COPY"}
    assert copies["grafana/provisioning"] == "/etc/grafana/provisioning"
    providers = [p for f in sorted((ROOT / "grafana" / "provisioning" / "dashboards").glob("*.y*ml"))
                 for p in load_yaml(f)["providers"]]
    assert providers, "grafana/provisioning/dashboards has a dashboard provider"
    assert {p["options"]["path"] for p in providers} == {copies["grafana/dashboards"]}
    # Dashboards must live in the image, not in the data volume, or a release could not update them.
    for target in mounts(services(compose)["grafana"]).values():
        assert not copies["grafana/dashboards"].startswith(target)
    datasource_vars = set()
    for f in (ROOT / "grafana" / "provisioning" / "datasources").glob("*.y*ml"):
        datasource_vars |= set(re.findall(r"\$\{?([A-Z][A-Z0-9_]*)", yaml_strings(f.read_text())))
    assert datasource_vars, "the datasource reads its URL and credentials from the environment"
    assert datasource_vars <= set(env_of(services(compose)["grafana"])), "grafana's service sets what its datasource reads"


# --- MQTT credentials and the broker -----------------------------------------------------------


def broker_accounts(compose: dict[str, Any]) -> dict[str, str]:
    users = env_of(services(compose)["broker"])["EDGEHIVE_BROKER_USERS"].replace(",", " ").split()
    return {entry.split(":")[0]: entry.split(":")[1] for entry in users}  # user:password[:role[:ids]]


def test_every_service_logs_in_with_an_account_the_broker_creates(compose: dict[str, Any]) -> None:
    accounts = broker_accounts(compose)
    # Each device service logs in as its own id: what the broker's ACL lets it write depends on it.
    expected_user = {"coordinator": "coordinator", "sink": "sink", "agent": "head", "camera": "head-cam", "sensor": "demo"}
    for name, user in expected_user.items():
        url = MqttUrl.parse(env_of(services(compose)[name])["EDGEHIVE_MQTT_URL"])
        assert (url.host, url.port) == ("broker", 1883)
        assert url.username == user and accounts[user] == url.password, name
    env = {name: env_of(services(compose)[name]) for name in ("agent", "camera")}
    assert env["agent"]["EDGEHIVE_NODE_ID"] == "head" and env["camera"]["EDGEHIVE_CAMERA"] == "head-cam"
    assert services(compose)["broker"]["ports"] == ["1883:1883"]


def test_the_container_config_is_the_shipped_file_with_auth_and_persistence(compose: dict[str, Any]) -> None:
    conf = {line.split()[0]: line.split(None, 1)[1] for line in CONFIG_PATH.read_text().splitlines()
            if line.strip() and not line.startswith("#")}
    assert conf["allow_anonymous"] == "false" and conf["persistence"] == "true"
    assert conf["persistence_location"].rstrip("/") == mounts(services(compose)["broker"])["broker-data"]
    image = parse_dockerfile((ROOT / "broker" / "Dockerfile").read_text())
    copies = {c.value[0]: c.value[1] for c in image if c.cmd == "COPY"}
    cmd = [c.value for c in image if c.cmd == "CMD"][-1]
    assert cmd[-1] == copies["broker/mosquitto.conf"], "the container runs Mosquitto with broker/mosquitto.conf"
    entrypoint = (ROOT / "broker" / "entrypoint.sh").read_text()
    config_dir = re.search(r"broker-prepare (\S+) (\S+)", entrypoint)
    assert config_dir is not None and config_dir.group(2) == copies["broker/acl"]
    assert conf["password_file"] == f"{config_dir.group(1)}/passwd" and conf["acl_file"] == f"{config_dir.group(1)}/acl"


class ContainerBroker(MosquittoProcess):
    """Debian's mosquitto started the way the broker container starts it: broker/prepare.sh writes
    the password file and ACL from the compose file's environment, and broker/mosquitto.conf runs
    with only its [site] lines (port, paths) rewritten by render_config."""

    def __init__(self, environment: dict[str, str], prefix: str) -> None:
        # Mosquitto started as root drops to its own user before reading its files, as in the
        # container: the folder must be reachable by that user.
        self.dir = Path(tempfile.mkdtemp(prefix="edgehive-broker-"))
        self.dir.chmod(0o755)
        self.port = free_port()
        self.env = {**os.environ, **environment, "EDGEHIVE_PREFIX": prefix}
        subprocess.run(["sh", str(ROOT / "broker" / "prepare.sh"), str(self.dir / "config")], env=self.env, check=True,
                       capture_output=True, timeout=60)
        (self.dir / "config").chmod(0o755)
        self.data = self.dir / "data"
        self.data.mkdir()
        if os.geteuid() == 0 and user_exists("mosquitto"):  # as the container's entrypoint does
            shutil.chown(self.data, "mosquitto")
            shutil.chown(self.dir, "mosquitto")
        self.log = self.dir / "mosquitto.log"
        self.conf = self.dir / "mosquitto.conf"
        self.conf.write_text(render_config(self.port, self.data, password_file=self.dir / "config" / "passwd",
                                           acl_file=self.dir / "config" / "acl", log_file=self.log))
        self.proc: subprocess.Popen[bytes] | None = None


    def service_url(self, compose_url: str) -> str:
        """A compose service's MQTT URL, pointed at this broker instead of `broker:1883`."""
        return compose_url.replace("@broker:1883", f"@127.0.0.1:{self.port}")

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def container_broker(compose: dict[str, Any]) -> Iterator[ContainerBroker]:
    broker = ContainerBroker(env_of(services(compose)["broker"]), f"deploy-{uuid.uuid4().hex[:8]}/v1")
    broker.start()
    yield broker
    broker.close()


def mqtt(*args: str, user: str | None, password: str | None, port: int) -> subprocess.CompletedProcess[str]:
    auth = ["-u", user, "-P", password or ""] if user else []
    return subprocess.run([args[0], "-h", "127.0.0.1", "-p", str(port), *auth, *args[1:]], capture_output=True, text=True, timeout=30, check=False)


@pytest.mark.integration
def test_the_container_broker_takes_the_documented_credentials_and_refuses_others(
        compose: dict[str, Any], container_broker: ContainerBroker) -> None:
    prefix = container_broker.env["EDGEHIVE_PREFIX"]
    port = container_broker.port
    for name in ("coordinator", "sink", "agent", "camera", "sensor"):
        url = MqttUrl.parse(env_of(services(compose)[name])["EDGEHIVE_MQTT_URL"])
        ok = mqtt("mosquitto_pub", "-q", "1", "-t", f"{prefix}/errors", "-m", name, user=url.username, password=url.password, port=port)
        assert ok.returncode == 0, f"{name}: {ok.stderr}"
    wrong = mqtt("mosquitto_pub", "-t", f"{prefix}/errors", "-m", "x", user="head", password="not-the-password", port=port)
    assert wrong.returncode != 0 and "not authori" in wrong.stderr.lower()
    anonymous = mqtt("mosquitto_pub", "-t", f"{prefix}/errors", "-m", "x", user=None, password=None, port=port)
    assert anonymous.returncode != 0
    # The container's own healthcheck, with the container's environment.
    healthy = subprocess.run(["sh", str(ROOT / "broker" / "healthcheck.sh"), str(port)], env=container_broker.env,
                             capture_output=True, text=True, timeout=30, check=False)
    assert healthy.returncode == 0, healthy.stderr
    broken = subprocess.run(["sh", str(ROOT / "broker" / "healthcheck.sh"), str(port)],
                            env={**container_broker.env, "EDGEHIVE_BROKER_USERS": "coordinator:wrong"}, capture_output=True, text=True, timeout=30, check=False)
    assert broken.returncode != 0


@pytest.mark.integration
def test_the_container_broker_keeps_retained_messages_across_a_restart(
        compose: dict[str, Any], container_broker: ContainerBroker) -> None:
    prefix = container_broker.env["EDGEHIVE_PREFIX"]
    password = broker_accounts(compose)["head"]
    topic = f"{prefix}/nodes/head/status"
    sent = mqtt("mosquitto_pub", "-q", "1", "-r", "-t", topic, "-m", "online", user="head", password=password, port=container_broker.port)
    assert sent.returncode == 0, sent.stderr
    container_broker.stop()
    container_broker.start()
    got = mqtt("mosquitto_sub", "-t", topic, "-C", "1", "-W", "10", user="head", password=password, port=container_broker.port)
    assert got.returncode == 0 and got.stdout.strip() == "online", got.stderr


@pytest.mark.integration
def test_the_acl_keeps_devices_from_handing_out_jobs(compose: dict[str, Any], container_broker: ContainerBroker) -> None:
    prefix = container_broker.env["EDGEHIVE_PREFIX"]
    accounts = broker_accounts(compose)
    recorder = Recorder(container_broker.service_url(env_of(services(compose)["coordinator"])["EDGEHIVE_MQTT_URL"]), prefix)
    try:
        topic = f"{prefix}/nodes/head/jobs"
        forged = mqtt("mosquitto_pub", "-q", "1", "-t", topic, "-m", "forged", user="head", password=accounts["head"],
                      port=container_broker.port)
        assert forged.returncode == 0  # MQTT 3.1.1 has no way to say no: the broker drops it
        real = mqtt("mosquitto_pub", "-q", "1", "-t", topic, "-m", "real", user="coordinator", password=accounts["coordinator"],
                    port=container_broker.port)
        assert real.returncode == 0
        wait_until(lambda: any(p == b"real" for t, p, _ in recorder.messages if t == topic), 10, "the coordinator's job")
        assert [p for t, p, _ in recorder.messages if t == topic] == [b"real"]
    finally:
        recorder.close()


@pytest.mark.integration
def test_the_compose_services_run_on_the_container_broker_and_their_healthchecks_see_them(
        compose: dict[str, Any], container_broker: ContainerBroker, tmp_path: Path) -> None:
    """The real coordinator, agent, camera and sensor, each with its compose environment and
    credentials, through the ACL: a job submitted with the client account is done, the demo
    sensors are fused in the coordinator's configured groups, and `edgehive healthcheck` passes in
    each service's environment and fails where the evidence is missing."""
    prefix = container_broker.env["EDGEHIVE_PREFIX"]
    fleet = Fleet(container_broker, prefix, tmp_path)  # type: ignore[arg-type]

    def service_env(name: str, **extra: str) -> dict[str, str]:
        env = env_of(services(compose)[name])
        env["EDGEHIVE_MQTT_URL"] = container_broker.service_url(env["EDGEHIVE_MQTT_URL"])
        return fleet.env(**env, **extra)

    def healthcheck(kind: str, env: dict[str, str], *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(EDGEHIVE_BIN), "healthcheck", kind, *args], env={**env, **extra}, capture_output=True, text=True,
                              timeout=60, check=False)

    envs = {"coordinator": service_env("coordinator"), "agent": service_env("agent"),
            "camera": service_env("camera", EDGEHIVE_FPS="5"), "sensor": service_env("sensor")}
    client = {**envs["agent"], "EDGEHIVE_MQTT_URL": container_broker.service_url(
        f"mqtt://client:{broker_accounts(compose)['client']}@broker:1883")}
    recorder = Recorder(envs["coordinator"]["EDGEHIVE_MQTT_URL"], prefix)
    try:
        for name, env in envs.items():
            fleet._spawn(name, [name], env)
        wait_nodes_online(recorder, 1)
        done = subprocess.run([str(EDGEHIVE_BIN), "submit", "sleep", "--params", '{"seconds": 0.05}', "--timeout", "30"],
                              env=client, capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        assert orjson.loads(done.stdout)["node"] == "head"
        fused = wait_until(lambda: next((r for r in recorder.json("results/fusion/room") if r.get("ok")), None), 30,
                           "a fused estimate of the demo thermometers")
        assert fused["node"] == "head"

        for kind, env in envs.items():
            check = healthcheck(kind, env)
            assert check.returncode == 0, f"{kind}: {check.stderr}"
        assert healthcheck("mqtt", envs["agent"]).returncode == 0
        missing = healthcheck("agent", envs["agent"], "--timeout", "1", EDGEHIVE_NODE_ID="pi-absent")
        assert missing.returncode == 1 and "no heartbeat from node pi-absent within" in missing.stderr, missing.stderr
        refused = healthcheck("mqtt", envs["agent"], EDGEHIVE_MQTT_URL=envs["agent"]["EDGEHIVE_MQTT_URL"].replace("change-me-head", "wrong"))
        assert refused.returncode == 1
        sink_env = service_env("sink")
        assert healthcheck("sink", sink_env, EDGEHIVE_INFLUX_URL="").returncode == 0, "no InfluxDB configured: the broker is enough"
        no_influx = healthcheck("sink", sink_env, EDGEHIVE_INFLUX_URL=f"http://127.0.0.1:{free_port()}")
        assert no_influx.returncode == 1 and "InfluxDB" in no_influx.stderr
        fleet.kill("agent")
        assert healthcheck("agent", envs["agent"], "--timeout", "1").returncode == 1, "a dead agent's container is unhealthy"
    finally:
        recorder.close()
        fleet.stop_all()


def test_the_broker_listens_where_the_compose_file_publishes_it(compose: dict[str, Any]) -> None:
    listeners = {int(line.split()[1]) for line in CONFIG_PATH.read_text().splitlines() if line.startswith("listener ")}
    assert listeners == {1883}
    assert services(compose)["broker"]["ports"] == ["1883:1883"]
