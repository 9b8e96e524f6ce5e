"""Grafana's InfluxQL interpolation, reimplemented for tests: what a panel really sends to InfluxDB.

Follows Grafana's InfluxDB datasource (public/app/plugins/datasource/influxdb/datasource.ts,
`interpolateQueryExpr`, and the backend's raw-query macros):

- `$timeFilter` → `time >= {from}ms and time <= {to}ms`;
- `$__interval` → the range divided by the panel's max data points (1,000 here, a wide panel),
  rounded to Grafana's steps (`roundInterval`), never below the datasource's `timeInterval`;
  `$__interval_ms` the same in milliseconds;
- a template variable in a regex (`=~ /^$node$/`): each value regex-escaped, several values
  (multi or All) joined as `(a|b)`; outside a regex the value as it is; a number as it is.
- A variable's values come from running its own query; the selection is what a first load
  shows: All for an `includeAll` variable, otherwise the first value in the variable's sort order.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

GRAFANA = Path(__file__).resolve().parent.parent / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))

# Grafana's kbn.roundInterval: (upper bound of the raw interval in ms, the step it rounds to).
_STEPS = [(10, 1), (15, 10), (35, 20), (75, 50), (150, 100), (350, 200), (750, 500), (1500, 1000), (3500, 2000), (7500, 5000),
          (12500, 10000), (17500, 15000), (25000, 20000), (45000, 30000), (90000, 60000), (210000, 120000), (450000, 300000),
          (750000, 600000), (1050000, 900000), (1500000, 1200000), (2700000, 1800000), (5400000, 3600000), (9000000, 7200000)]


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, including those inside collapsed rows."""
    for panel in dashboard.get("panels", []):
        if panel.get("type") == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


def round_interval(ms: float) -> int:
    return next((step for bound, step in _STEPS if ms <= bound), 3600000 * 24)


def duration_ms(text: str) -> int:
    number, unit = re.fullmatch(r"(\d+)(ms|s|m|h|d)", text).groups()  # type: ignore[union-attr]
    return int(number) * {"ms": 1, "s": 1000, "m": 60000, "h": 3600000, "d": 86400000}[unit]


def interval_text(ms: int) -> str:
    for unit, size in (("d", 86400000), ("h", 3600000), ("m", 60000), ("s", 1000)):
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def default_range_ms(dashboard: dict[str, Any]) -> int:
    """The length of a dashboard's default time range, `now-15m` to `now`."""
    assert dashboard["time"]["to"] == "now", "dashboards end at now"
    return duration_ms(dashboard["time"]["from"].removeprefix("now-"))


def interval_ms(from_ms: int, to_ms: int, min_interval: str = "1s", max_data_points: int = 1000) -> int:
    return max(round_interval((to_ms - from_ms) / max_data_points), duration_ms(min_interval))


def escape_regex(value: str) -> str:
    return re.sub(r"[\\^$*+?.()|[\]{}/]", lambda m: "\\" + m.group(0), value)


def _is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def format_value(values: list[str], variable: dict[str, Any], query: str) -> str:
    """Grafana's interpolateQueryExpr for the selected `values` of `variable` inside `query`."""
    several = len(values) != 1 or variable.get("multi")
    if not several and _is_number(values[0]):
        return values[0]
    in_regex = re.search(r"[=!]~\s*/[^/]*\$\{?" + re.escape(variable["name"]) + r"\b[^/]*/", query)
    if several:
        escaped = [escape_regex(v) for v in values]
        return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"
    return escape_regex(values[0]) if in_regex else values[0]


def substitute(query: str, values: dict[str, list[str]], variables: dict[str, dict[str, Any]], from_ms: int, to_ms: int, step_ms: int) -> str:
    """The query with macros and template variables replaced, as Grafana sends it."""
    text = query.replace("$timeFilter", f"time >= {from_ms}ms and time <= {to_ms}ms")
    text = text.replace("$__interval_ms", str(step_ms)).replace("$__interval", interval_text(step_ms)).replace("$interval", interval_text(step_ms))
    for name, selected in values.items():
        replacement = format_value(selected, variables[name], query)
        text = re.sub(r"\$\{" + name + r"\}|\[\[" + name + r"\]\]|\$" + name + r"\b", lambda _m, r=replacement: r, text)
    return text


def variable_selection(dashboard: dict[str, Any], run_values: Callable[[str], list[str]]) -> tuple[dict[str, list[str]], dict[str, dict[str, Any]]]:
    """Each template variable's selection on a first load, from its query's values."""
    variables = {v["name"]: v for v in dashboard.get("templating", {}).get("list", [])}
    selected: dict[str, list[str]] = {}
    for name, variable in variables.items():
        query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
        options = run_values(query)
        if variable.get("sort") in (1, 3, 5, 7):
            options = sorted(options)
        if not options:
            raise AssertionError(f"variable ${name} of {dashboard['title']!r} has no values ({query})")
        selected[name] = options if variable.get("includeAll") else options[:1]
    return selected, variables
