"""The provisioning files and dashboards have the shapes Grafana loads (their queries run in test_telemetry_flows.py)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from grafana_alerts import RULES_FILE, load_rules
from grafana_macros import DASHBOARDS, GRAFANA, load, panels

from edgehive.settings import env_name
from edgehive.telemetry.settings import SinkSettings

DATASOURCE_UID = "edgehive-influxdb"
TELEMETRY_DOC = Path(__file__).resolve().parent.parent / "docs" / "TELEMETRY.md"
PANEL_TYPES = {"timeseries", "stat", "gauge", "bargauge", "table", "text", "barchart", "state-timeline"}


def test_the_four_dashboards_exist() -> None:
    titles = {load(p)["title"] for p in DASHBOARDS}
    assert titles == {"edgehive / Fleet overview", "edgehive / Node", "edgehive / Vision", "edgehive / Sensors"}


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_a_dashboard_has_what_grafana_needs_to_load_it(path: Path) -> None:
    board = load(path)
    assert re.fullmatch(r"[a-z0-9-]{1,40}", board["uid"]), "uid: at most 40 characters, stable across installs"
    assert isinstance(board["schemaVersion"], int) and board["schemaVersion"] >= 36
    assert board["title"] and board["time"]["from"] and "edgehive" in board["tags"]
    variables = {v["name"]: v for v in board["templating"]["list"]}
    for variable in variables.values():
        assert variable["type"] == "query" and variable["datasource"]["uid"] == DATASOURCE_UID
        assert variable["query"].startswith("SHOW TAG VALUES FROM ")
    ids = [p["id"] for p in panels(board)]
    assert ids and len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in panels(board):
        assert panel["type"] in PANEL_TYPES and panel["title"]
        grid = panel["gridPos"]
        assert grid["w"] >= 1 and grid["h"] >= 1 and grid["x"] >= 0 and grid["x"] + grid["w"] <= 24
        covered = {(x, y) for x in range(grid["x"], grid["x"] + grid["w"]) for y in range(grid["y"], grid["y"] + grid["h"])}
        assert not covered & cells, f"panel {panel['title']!r} overlaps another"
        cells |= covered
        assert panel["datasource"] == {"type": "influxdb", "uid": DATASOURCE_UID}
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(refs) == len(set(refs))
        for target in panel["targets"]:
            check_target(target, variables)


def check_target(target: dict[str, Any], variables: dict[str, Any]) -> None:
    query = target["query"]
    assert target["rawQuery"] is True and target["datasource"]["uid"] == DATASOURCE_UID
    assert target.get("resultFormat", "time_series") in ("time_series", "table")
    assert query.startswith("SELECT ") and "$timeFilter" in query, query
    if "GROUP BY time(" in query:
        assert "GROUP BY time($__interval)" in query, f"let Grafana pick the interval: {query}"
    used = set(re.findall(r"\$\{?([A-Za-z_]\w*)", query)) - {"timeFilter", "__interval", "__interval_ms", "interval"}
    assert used <= set(variables), f"undefined template variables {used - set(variables)} in {query}"


def test_every_measurement_a_dashboard_reads_is_documented() -> None:
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", TELEMETRY_DOC.read_text(), re.MULTILINE))
    read = {m for p in DASHBOARDS for panel in panels(load(p)) for t in panel["targets"] for m in re.findall(r'FROM "([a-z_]+)"', t["query"])}
    read |= {m for p in DASHBOARDS for v in load(p)["templating"]["list"] for m in re.findall(r'FROM "([a-z_]+)"', v["query"])}
    assert read and read <= documented, f"undocumented measurements: {read - documented}"


def test_the_datasource_is_influxql_with_settings_from_the_sinks_own_environment_variables() -> None:
    config = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "influxdb.yaml").read_text())
    assert config["apiVersion"] == 1
    [source] = config["datasources"]
    assert source["uid"] == DATASOURCE_UID and source["type"] == "influxdb" and source["access"] == "proxy"
    assert source["jsonData"]["version"] == "InfluxQL"
    fields = {"url": source["url"], "user": source["user"], "dbName": source["jsonData"]["dbName"],
              "password": source["secureJsonData"]["password"]}
    expected = {"url": "influx_url", "user": "influx_username", "dbName": "influx_database", "password": "influx_password"}
    for key, setting in expected.items():
        assert setting in SinkSettings.model_fields
        assert fields[key] == "${" + env_name(setting) + "}", key


def test_the_dashboard_provider_loads_the_dashboards_folder_from_files() -> None:
    config = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "edgehive.yaml").read_text())
    assert config["apiVersion"] == 1
    [provider] = config["providers"]
    assert provider["type"] == "file" and provider["name"] and provider["folder"]
    assert provider["options"]["path"].startswith("/")


def test_every_alert_rule_queries_the_datasource_and_chains_its_expressions() -> None:
    """uids unique and stable, queries on the provisioned datasource over a relative range,
    each expression reading an earlier step, the condition a threshold, states Grafana knows."""
    config = yaml.safe_load(RULES_FILE.read_text())
    assert config["apiVersion"] == 1
    sources = {s["uid"] for s in yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "influxdb.yaml").read_text())["datasources"]}
    [provider] = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "edgehive.yaml").read_text())["providers"]
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", TELEMETRY_DOC.read_text(), re.MULTILINE))
    uids: list[str] = []
    for group in config["groups"]:
        assert group["name"] and group["folder"] == provider["folder"] and re.fullmatch(r"\d+[smh]", group["interval"])
        for rule in group["rules"]:
            uids.append(rule["uid"])
            assert re.fullmatch(r"[a-z0-9-]{1,40}", rule["uid"]) and rule["title"]
            assert rule["noDataState"] in ("Alerting", "NoData", "OK") and rule["execErrState"] in ("Alerting", "Error", "OK")
            assert re.fullmatch(r"\d+[smh]", rule["for"]) and rule["labels"]["edgehive"] == "alert"
            assert "$" not in str(rule["labels"]), "Grafana fills environment variables into labels (not annotations, nor queries)"
            assert rule["annotations"]["summary"] and rule["annotations"]["description"]
            earlier: dict[str, dict[str, Any]] = {}
            for step in rule["data"]:
                ref, model = step["refId"], step["model"]
                assert ref not in earlier and model["refId"] == ref
                if step["datasourceUid"] == "__expr__":
                    assert model["type"] in ("reduce", "threshold") and model["expression"] in earlier
                    source = earlier[model["expression"]]
                    if model["type"] == "reduce":
                        assert source["datasourceUid"] in sources, "a reduce reads a query"
                        assert model["reducer"] in ("last", "mean", "sum", "min", "max", "count")
                    else:
                        assert source["model"].get("type") == "reduce", "a threshold reads a reduce"
                        [condition] = model["conditions"]
                        assert condition["evaluator"]["type"] in ("gt", "lt") and len(condition["evaluator"]["params"]) == 1
                else:
                    assert step["datasourceUid"] in sources
                    assert step["relativeTimeRange"]["from"] > step["relativeTimeRange"]["to"] >= 0
                    assert model["rawQuery"] is True and model["query"].startswith("SELECT ") and "$timeFilter" in model["query"]
                    assert set(re.findall(r'FROM "([a-z_]+)"', model["query"])) <= documented
                earlier[ref] = step
            assert earlier[rule["condition"]]["model"].get("type") == "threshold"
    assert uids and len(uids) == len(set(uids))
    assert set(uids) == set(load_rules()), "every rule is proven in tests/test_grafana_alerts.py"
