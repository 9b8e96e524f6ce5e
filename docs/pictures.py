"""Draw docs/pictures/*.svg: the message path, and each Grafana dashboard's layout.

    python docs/pictures.py                                   # layout and panel types only
    python docs/pictures.py --influx http://localhost:8086    # panels filled with that InfluxDB's data

The message path takes its topic names from `edgehive.schemas.Topics`, and each dashboard
picture its panels (title, type, position) from `grafana/dashboards/*.json`, so the pictures
follow the code; tests/test_pictures.py fails when a committed picture no longer matches. With
`--influx`, every panel's queries run as Grafana would send them (macros and template variables
filled in by tests/grafana_macros.py, the interpolation the dashboard tests prove) over the
dashboard's default time range, and each panel shows its series as lines, or its last value
for a stat. The SVG is written by hand: no plotting library.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from grafana_macros import DASHBOARDS, default_range_ms, duration_ms, interval_ms, load, panels, substitute, variable_selection  # noqa: E402

from edgehive.schemas import Topics  # noqa: E402
from edgehive.telemetry.points import parsers  # noqa: E402

OUT = ROOT / "docs" / "pictures"
FONT = "font-family='Helvetica, Arial, sans-serif'"
MONO = "font-family='DejaVu Sans Mono, Menlo, monospace'"
PUBLISH, SUBSCRIBE = "#d9730d", "#2f6fb0"
COLORS = ["#2f6fb0", "#d9730d", "#3d9a50", "#b03a48", "#7b5ea7", "#8c6d31"]

Query = Callable[[str], list[dict[str, Any]]]
Points = list[tuple[float, float]]


@dataclass
class Filled:
    """What each panel showed over the time range `from_ms`..`to_ms`: its series, by panel id."""

    from_ms: int
    to_ms: int
    lines: dict[int, list[Points]]
    tables: dict[int, list[list[str]]] = field(default_factory=dict)  # a table panel's header and rows


def _text(x: float, y: float, text: str, size: int = 12, anchor: str = "start", fill: str = "#222", font: str = FONT, weight: str = "normal") -> str:
    return (f"<text x='{x:.0f}' y='{y:.0f}' font-size='{size}' text-anchor='{anchor}' fill='{fill}' "
            f"font-weight='{weight}' {font}>{escape(text)}</text>")


def _svg(width: int, height: int, body: list[str], title: str) -> str:
    return "\n".join([f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' viewBox='0 0 {width} {height}'>",
                      f"<title>{escape(title)}</title>", f"<rect width='{width}' height='{height}' fill='#ffffff'/>", *body, "</svg>", ""])


# -- the message path -----------------------------------------------------------------------

# Who publishes and who subscribes what, by topic kind (see edgehive/schemas/topics.py).
PARTS: list[tuple[str, str, list[str], list[str]]] = [
    # (name, what it is, publishes, subscribes)
    ("Cameras, sensors", "edgehive camera, edgehive sensor", ["frames", "sensor"], []),
    ("Anyone", "edgehive submit, mosquitto_pub, scripts", ["submit"], ["job_state", "result"]),
    ("Coordinator", "places jobs and frames, checks and relays results",
     ["jobs", "result", "job_state", "snapshot", "status", "coordinator_status", "coordinator_stats", "errors"],
     ["frames", "sensor", "submit", "capabilities", "status", "heartbeat", "declined", "node_result", "node_snapshot"]),
    ("Agents", "one per device: detection, fusion, …", ["capabilities", "status", "heartbeat", "declined", "node_result", "node_snapshot"], ["jobs"]),
]


def _below(topics: Topics) -> list[tuple[str, str, list[str], list[str]]]:
    """The subscribers below the broker; the sink's topics are the ones its parsers handle."""
    sink_kinds = [kind for kind, _ in parsers(topics).values()]
    return [("Home Assistant, your apps", "MQTT discovery, automations", [], ["result", "snapshot", "coordinator_stats"]),
            ("Telemetry sink", "edgehive sink: messages → points, spooled", ["errors"], sink_kinds)]


def _short(topics: Topics, kind: str) -> str:
    return topics.pattern(kind).removeprefix(topics.prefix + "/")


def _part(x: float, y: float, w: float, h: float, name: str, what: str, topics: Topics, pubs: list[str], subs: list[str]) -> list[str]:
    out = [f"<g class='part' data-name='{escape(name)}'>", f"<rect x='{x}' y='{y}' width='{w}' height='{h}' rx='8' fill='#f6f7f9' stroke='#8a94a6'/>",
           _text(x + 10, y + 20, name, 14, weight="bold"), _text(x + 10, y + 36, what, 11, fill="#555")]
    line = y + 56
    for sign, color, kinds in (("pub", PUBLISH, pubs), ("sub", SUBSCRIBE, subs)):
        for kind in kinds:
            out.append(_text(x + 10, line, f"{sign} {_short(topics, kind)}", 11, fill=color, font=MONO))
            line += 14
    return [*out, "</g>"]


def _arrow(x: float, y1: float, y2: float, color: str) -> str:
    head = 7 if y2 > y1 else -7
    return (f"<line x1='{x}' y1='{y1}' x2='{x}' y2='{y2 - head}' stroke='{color}' stroke-width='2.5'/>"
            f"<polygon points='{x - 5},{y2 - head} {x + 5},{y2 - head} {x},{y2}' fill='{color}'/>")


def _height(parts: list[tuple[str, str, list[str], list[str]]]) -> int:
    return 66 + 14 * max(len(p[2]) + len(p[3]) for p in parts)


def message_path_svg(topics: Topics | None = None) -> str:
    """Every part above or below the broker, with the topics it publishes (orange) and
    subscribes to (blue); the sink's points go on to InfluxDB and Grafana."""
    topics = topics or Topics()
    below = _below(topics)
    width, gap, margin = 1180, 16, 20
    top_h, below_h = _height(PARTS), _height(below)
    bus_y = margin + top_h + 50
    below_y = bus_y + 40 + 50
    height = below_y + below_h + 104
    body: list[str] = []
    widths = [200, 240, 350, 290]
    x = float(margin)
    for (name, what, pubs, subs), w in zip(PARTS, widths):
        body += _part(x, margin, w, top_h, name, what, topics, pubs, subs)
        if pubs:
            body.append(_arrow(x + w / 3, margin + top_h, bus_y, PUBLISH))
        if subs:
            body.append(_arrow(x + 2 * w / 3, bus_y, margin + top_h, SUBSCRIBE))
        x += w + gap
    body += [f"<rect x='{margin}' y='{bus_y}' width='{width - 2 * margin}' height='40' rx='6' fill='#263238'/>",
             _text(width / 2, bus_y + 25, f"MQTT broker (Mosquitto, or the embedded amqtt) · every topic under {topics.prefix}/", 14, "middle", "#ffffff", weight="bold")]
    x = float(margin)
    for (name, what, pubs, subs), w in zip(below, (260, 300)):
        body += _part(x, below_y, w, below_h, name, what, topics, pubs, subs)
        if subs:
            body.append(_arrow(x + w / 3, bus_y + 40, below_y, SUBSCRIBE))
        if pubs:
            body.append(_arrow(x + 2 * w / 3, below_y, bus_y + 40, PUBLISH))
        x += w + gap
    for label, what, w, link in (("InfluxDB", "1.x, 2.x, 3.x", 150, "line protocol"), ("Grafana", "4 dashboards, 6 alert rules", 200, "InfluxQL")):
        body.append(f"<line x1='{x}' y1='{below_y + 40}' x2='{x + 60}' y2='{below_y + 40}' stroke='#555' stroke-width='2.5'/>"
                    f"<polygon points='{x + 60},{below_y + 35} {x + 68},{below_y + 40} {x + 60},{below_y + 45}' fill='#555'/>")
        body.append(_text(x + 34, below_y + 30, link, 10, "middle", "#555"))
        x += 70
        body += [f"<g class='part' data-name='{label}'><rect x='{x}' y='{below_y}' width='{w}' height='80' rx='8' fill='#f6f7f9' stroke='#8a94a6'/>",
                 _text(x + 10, below_y + 22, label, 14, weight="bold"), _text(x + 10, below_y + 40, what, 11, fill="#555"), "</g>"]
        x += w
    way = [["camera", topics.frames("porch"), "coordinator", topics.jobs("pi-1"), "agent", topics.node_results("pi-1"), ""],
           ["coordinator", topics.result("detections", "porch"), "sink", "InfluxDB", "Grafana"]]
    body.append(_text(margin, height - 64, "A frame's way, for camera porch and node pi-1:", 12, weight="bold"))
    body.append(_text(margin, height - 48, " → ".join(way[0]), 11, font=MONO))
    body.append(_text(margin + 40, height - 34, " → ".join(way[1]), 11, font=MONO))
    legend = height - 10
    body += [_text(margin, legend, "pub", 12, fill=PUBLISH, font=MONO, weight="bold"), _text(margin + 32, legend, "publishes (arrow to the broker)", 12),
             _text(margin + 260, legend, "sub", 12, fill=SUBSCRIBE, font=MONO, weight="bold"), _text(margin + 292, legend, "subscribes (arrow from the broker)", 12),
             _text(margin + 560, legend, "+ : one level (a node, camera, sensor, job kind or job id); drawn by docs/pictures.py", 11, fill="#555")]
    return _svg(width, height, body, "edgehive: the message path")


# -- dashboards -----------------------------------------------------------------------------

CELL_W, CELL_H = 44, 30  # one of Grafana's 24 columns, one grid row


def _lines(series: list[dict[str, Any]]) -> list[Points]:
    """(time, value) points of every value column of every series (Grafana draws each), nulls and
    text (a table's `role` column) left out."""
    lines = []
    for s in series:
        for value in (i for i, column in enumerate(s["columns"]) if column != "time"):
            lines.append([(float(row[0]), float(row[value])) for row in s["values"] if isinstance(row[value], int | float)])
    return [line for line in lines if line]


def panel_data(board: dict[str, Any], query: Query, last: str = "", now_s: float | None = None) -> Filled:
    """Every panel's series over the `last` minutes (default: the dashboard's own range), as a
    first load would show them (`query` answers with times in ms, as `influx_query` asks for)."""
    to_ms = int((time.time() if now_s is None else now_s) * 1000)
    from_ms = to_ms - (duration_ms(last) if last else default_range_ms(board))
    selection, variables = variable_selection(board, lambda q: [value for s in query(q) for _, value in s["values"]])
    step = interval_ms(from_ms, to_ms)
    data: dict[int, list[Points]] = {}
    tables: dict[int, list[list[str]]] = {}
    for panel in panels(board):
        lines: list[Points] = []
        for target in panel["targets"]:
            series = query(substitute(target["query"], selection, variables, from_ms, to_ms, step))
            lines += _lines(series)
            if panel["type"] == "table":
                tables[panel["id"]] = _table(series)
        data[panel["id"]] = lines
    return Filled(from_ms, to_ms, data, tables)


def _table(series: list[dict[str, Any]]) -> list[list[str]]:
    """A table panel as Grafana lists it: the tags, then each column but time, of each series' last row."""
    rows: list[list[str]] = []
    for s in series:
        tags = s.get("tags") or {}
        if not rows:
            rows.append([*tags, *s["columns"][1:]])
        rows += [[*map(str, tags.values()), *(_number(v) if isinstance(v, int | float) else str(v) for v in s["values"][-1][1:])]]
    return rows


def _sparklines(lines: list[Points], t0: float, t1: float, x: float, y: float, w: float, h: float) -> list[str]:
    """The series on the dashboard's time axis, from their lowest value to their highest (as Grafana's auto axis)."""
    points = [p for line in lines for p in line]
    v0, v1 = min(v for _, v in points), max(v for _, v in points)
    out = ["<g class='data'>"]
    for index, line in enumerate(lines[:6]):
        xy = " ".join(f"{x + (t - t0) / ((t1 - t0) or 1) * w:.1f},{y + h - (v - v0) / ((v1 - v0) or 1) * h:.1f}" for t, v in line)
        out.append(f"<polyline points='{xy}' fill='none' stroke='{COLORS[index % len(COLORS)]}' stroke-width='1.5'/>")
    return [*out, "</g>"]


def _minutes(ms: int) -> str:
    return f"{ms / 60000:g} min"


def _number(value: float) -> str:
    return f"{value:.0f}" if abs(value) >= 100 or value == int(value) else f"{value:.2f}"


def dashboard_svg(board: dict[str, Any], data: Filled | None = None) -> str:
    """Panels as boxes at their gridPos, with title and type; filled with `data` when given."""
    margin, header = 16, 44
    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels(board))
    width, height = 24 * CELL_W + 2 * margin, rows * CELL_H + header + margin + 22
    body = [f"<rect width='{width}' height='{height}' fill='#111217'/>",
            _text(margin, 28, board["title"], 16, fill="#d8d9da", weight="bold"),
            _text(width - margin, 28, f"last {_minutes(data.to_ms - data.from_ms)}" if data else "layout only", 12, "end", "#8e8e8e")]
    for panel in panels(board):
        grid = panel["gridPos"]
        x, y = margin + grid["x"] * CELL_W + 3, header + grid["y"] * CELL_H + 3
        w, h = grid["w"] * CELL_W - 6, grid["h"] * CELL_H - 6
        title = panel["title"] if len(panel["title"]) * 7 < w - 20 else panel["title"][: int((w - 20) / 7) - 1] + "…"
        body += [f"<g class='panel' data-id='{panel['id']}' data-title='{escape(panel['title'], quote=True)}' data-type='{panel['type']}' "
                 f"data-grid='{grid['x']},{grid['y']},{grid['w']},{grid['h']}'>",
                 f"<rect x='{x}' y='{y}' width='{w}' height='{h}' rx='3' fill='#181b1f' stroke='#2c3235'/>",
                 _text(x + 8, y + 17, title, 12, fill="#d8d9da", weight="bold"), _text(x + w - 8, y + h - 7, panel["type"], 10, "end", "#6e7378")]
        lines = data.lines.get(panel["id"], []) if data else []
        table = data.tables.get(panel["id"], []) if data else []
        if table:
            cell = (w - 16) / len(table[0])
            body.append("<g class='data'>" + "".join(
                _text(x + 8 + c * cell, y + 36 + r * 16, value, 11, fill="#d8d9da" if r else "#8e8e8e", weight="normal" if r else "bold")
                for r, row in enumerate(table[: int((h - 40) / 16)]) for c, value in enumerate(row)) + "</g>")
        elif lines and panel["type"] in ("stat", "gauge", "bargauge"):
            body.append(f"<g class='data'>{_text(x + w / 2, y + h / 2 + 14, _number(lines[0][-1][1]), 30, 'middle', '#73bf69', weight='bold')}</g>")
        elif lines:
            assert data is not None
            body += _sparklines(lines, data.from_ms, data.to_ms, x + 10, y + 28, w - 20, h - 48)
        elif data is not None:
            body.append(_text(x + w / 2, y + h / 2 + 5, "no data", 12, "middle", "#6e7378"))
        body.append("</g>")
    return _svg(width, height, body, board["title"])


def influx_query(url: str, database: str, username: str = "", password: str = "") -> Query:
    """InfluxQL over the v1 `/query` API (InfluxDB 1.x; 2.x through a DBRP mapping; 3.x)."""
    def run(q: str) -> list[dict[str, Any]]:
        params = {"db": database, "q": q, "epoch": "ms", **({"u": username, "p": password} if username or password else {})}
        with urllib.request.urlopen(f"{url.rstrip('/')}/query?{urllib.parse.urlencode(params)}", timeout=30) as response:
            answer = json.loads(response.read())
        return [s for result in answer.get("results", []) for s in result.get("series", [])]
    return run


def write_all(out: Path = OUT, query: Query | None = None, last: str = "") -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "message-path.svg"]
    written[0].write_text(message_path_svg())
    for path in DASHBOARDS:
        board = load(path)
        target = out / f"dashboard-{path.stem}.svg"
        data = None
        if query is not None:
            try:
                data = panel_data(board, query, last)
            except AssertionError as error:  # a template variable without values: nothing of that kind ran
                print(f"pictures: {path.name}: {error}; drawn as layout only", file=sys.stderr)
        target.write_text(dashboard_svg(board, data))
        written.append(target)
    return written


def _duration(text: str) -> str:
    if not re.fullmatch(r"\d+[smhd]", text):
        raise argparse.ArgumentTypeError(f"{text!r} is no duration: use e.g. 30s, 5m, 1h")
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--influx", default="", help="InfluxDB URL to fill the panels from (empty: layout only)")
    parser.add_argument("--database", default="edgehive", help="InfluxDB database (default edgehive)")
    parser.add_argument("--last", type=_duration, default=None, help="time range to draw, e.g. 5m (default: each dashboard's own, 15m)")
    parser.add_argument("--out", type=Path, default=OUT, help=f"where the SVG files go (default {OUT.relative_to(ROOT)})")
    args = parser.parse_args(argv)
    try:
        written = write_all(args.out, influx_query(args.influx, args.database) if args.influx else None, args.last or "")
    except OSError as error:
        print(f"pictures: {error}", file=sys.stderr)
        return 1
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
