"""The committed pictures (docs/pictures/) match what docs/pictures.py draws from the code today.

The message path is drawn from the topic scheme and the sink's subscriptions alone, so it must be
byte for byte what the script draws now. A dashboard picture also carries a run's data, which
changes from run to run: there, every panel of the dashboard's JSON must be in the picture with
its title, type and grid position, and nothing else. (Filling the panels from a real InfluxDB is
tested in test_telemetry_flows.py, on its real run.)
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from types import ModuleType

import pytest
from grafana_macros import DASHBOARDS, load, panels

ROOT = Path(__file__).resolve().parent.parent
PICTURES = ROOT / "docs" / "pictures"
SVG = "{http://www.w3.org/2000/svg}"


def load_pictures() -> ModuleType:
    """docs/pictures.py as a module (it is a script, not part of the package)."""
    spec = importlib.util.spec_from_file_location("pictures", ROOT / "docs" / "pictures.py")
    assert spec is not None and spec.loader is not None
    if "pictures" in sys.modules:
        return sys.modules["pictures"]
    module = importlib.util.module_from_spec(spec)
    sys.modules["pictures"] = module  # before running it: its dataclass looks itself up there
    spec.loader.exec_module(module)
    return module


pictures = load_pictures()


def drawn_panels(svg: str) -> set[tuple[str, str, str, str]]:
    """(id, title, type, grid) of every panel box in a dashboard picture."""
    root = ET.fromstring(svg)
    return {(g.get("data-id", ""), g.get("data-title", ""), g.get("data-type", ""), g.get("data-grid", ""))
            for g in root.iter(f"{SVG}g") if g.get("class") == "panel"}


def json_panels(path: Path) -> set[tuple[str, str, str, str]]:
    return {(str(p["id"]), p["title"], p["type"], "{x},{y},{w},{h}".format(**p["gridPos"])) for p in panels(load(path))}


def test_the_message_path_picture_is_what_the_script_draws_now() -> None:
    committed = (PICTURES / "message-path.svg").read_text()
    assert committed == pictures.message_path_svg(), "run: python docs/pictures.py --influx … (grafana/README.md, section Pictures)"


def test_the_message_path_names_the_topics_of_the_code() -> None:
    svg = pictures.message_path_svg()
    ET.fromstring(svg)  # well-formed
    for pattern in ("frames/+", "nodes/+/jobs", "nodes/+/results", "results/+/+", "jobs/+/state", "coordinator/stats", "nodes/+/heartbeat"):
        assert f"&gt;{pattern}" not in svg and f" {pattern}<" in svg, pattern
    for part in ("Coordinator", "Agents", "Telemetry sink", "InfluxDB", "Grafana"):
        assert f"data-name='{part}'" in svg


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_a_dashboard_picture_shows_every_panel_where_the_json_puts_it(path: Path) -> None:
    committed = (PICTURES / f"dashboard-{path.stem}.svg").read_text()
    expected = json_panels(path)
    assert drawn_panels(committed) == expected, "run: python docs/pictures.py --influx … (grafana/README.md, section Pictures)"
    assert drawn_panels(pictures.dashboard_svg(load(path))) == expected
    assert load(path)["title"] in committed


def test_there_is_a_picture_for_each_dashboard_and_no_other() -> None:
    drawn = {p.name for p in PICTURES.glob("dashboard-*.svg")}
    assert drawn == {f"dashboard-{p.stem}.svg" for p in DASHBOARDS}


def test_the_docs_show_the_pictures() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "](docs/pictures/message-path.svg)" in readme
    shown = (ROOT / "grafana" / "README.md").read_text()
    for path in DASHBOARDS:
        assert f"](../docs/pictures/dashboard-{path.stem}.svg)" in shown


def test_without_influxdb_the_script_draws_the_layout_and_an_unreachable_one_is_a_message(tmp_path: Path) -> None:
    script = [sys.executable, str(ROOT / "docs" / "pictures.py"), "--out", str(tmp_path)]
    drawn = subprocess.run(script, capture_output=True, text=True, timeout=60, check=False)
    assert drawn.returncode == 0, drawn.stderr
    assert {p.name for p in tmp_path.iterdir()} == {"message-path.svg"} | {f"dashboard-{p.stem}.svg" for p in DASHBOARDS}
    assert "layout only" in (tmp_path / "dashboard-fleet.svg").read_text()
    refused = subprocess.run([*script, "--influx", "http://127.0.0.1:9"], capture_output=True, text=True, timeout=60, check=False)
    assert refused.returncode == 1 and refused.stderr.startswith("pictures: ") and "Traceback" not in refused.stderr
