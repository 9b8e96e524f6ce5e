"""Grafana's alert rule evaluation, reimplemented for tests: what a provisioned rule decides.

Follows Grafana's server-side expressions (pkg/expr) for the parts edgehive's rules use:

- a query (`datasourceUid` the InfluxDB datasource) runs over its `relativeTimeRange`, counted
  back from now in seconds, with `$timeFilter` filled in as for a panel (grafana_macros); every
  series InfluxDB returns becomes one series per value column, labelled with its GROUP BY tags;
- `reduce` turns each series into one number (`last`, `mean`, `sum`, `min`, `max`, `count`);
  mode `dropNN` drops null and NaN values first, and a series left empty has no number (NaN);
- `threshold` gives 1 where the number passes the evaluator (`gt`, `lt`, `within_range`,
  `outside_range`), else 0;
- the rule's `condition` names the expression whose 1s are firing alerts, one per label set.
  No series at all is "no data", which the rule's `noDataState` maps (Alerting, NoData, OK).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from grafana_macros import GRAFANA, substitute

RULES_FILE = GRAFANA / "provisioning" / "alerting" / "edgehive.yaml"
EXPRESSIONS = "__expr__"

Labels = tuple[tuple[str, str], ...]
Series = dict[Labels, list[float]]
Numbers = dict[Labels, float]


def load_rules(path: Path = RULES_FILE) -> dict[str, dict[str, Any]]:
    """Every rule of the provisioning file, by uid."""
    config = yaml.safe_load(path.read_text())
    return {rule["uid"]: rule for group in config["groups"] for rule in group["rules"]}


def _labels(tags: dict[str, str] | None) -> Labels:
    return tuple(sorted((tags or {}).items()))


def _reduce(values: list[float], reducer: str) -> float:
    kept = [v for v in values if v is not None and not math.isnan(v)]
    if not kept:
        return math.nan
    if reducer == "last":
        return kept[-1]
    if reducer == "mean":
        return sum(kept) / len(kept)
    if reducer == "count":
        return float(len(kept))
    functions: dict[str, Callable[[list[float]], float]] = {"sum": sum, "min": min, "max": max}
    return float(functions[reducer](kept))


def _passes(value: float, evaluator: dict[str, Any]) -> bool:
    kind: str = evaluator["type"]
    params: list[float] = evaluator["params"]
    if math.isnan(value):
        return False
    if kind == "gt":
        return value > params[0]
    if kind == "lt":
        return value < params[0]
    if kind == "within_range":
        return params[0] < value < params[1]
    if kind == "outside_range":
        return value < params[0] or value > params[1]
    raise ValueError(f"unknown evaluator {kind!r}")


@dataclass
class Verdict:
    """One evaluation: the numbers of every expression, and which label sets fire."""

    rule: str
    numbers: dict[str, Numbers] = field(default_factory=dict)
    firing: set[Labels] = field(default_factory=set)
    no_data: bool = False

    def fires_for(self, tag: str) -> set[str]:
        """The values of `tag` among the firing label sets (a node, a camera, a group, a sink)."""
        return {dict(labels).get(tag, "") for labels in self.firing}


def evaluate(rule: dict[str, Any], run_query: Callable[[str], list[dict[str, Any]]], now_s: float | None = None) -> Verdict:
    """Evaluate `rule` now, as Grafana's scheduler would; `run_query` sends InfluxQL and returns
    InfluxDB's series (name, tags, columns, values)."""
    now_ms = int((time.time() if now_s is None else now_s) * 1000)
    series: dict[str, Series] = {}
    numbers: dict[str, Numbers] = {}
    verdict = Verdict(rule["uid"], numbers)
    for step in rule["data"]:
        ref, model = step["refId"], step["model"]
        if step["datasourceUid"] != EXPRESSIONS:
            span = step["relativeTimeRange"]
            query = substitute(model["query"], {}, {}, now_ms - span["from"] * 1000, now_ms - span["to"] * 1000, model.get("intervalMs", 1000))
            found: Series = {}
            for s in run_query(query):
                [value] = [i for i, column in enumerate(s["columns"]) if column != "time"]  # one value column a query, as edgehive's rules have
                found[_labels(s.get("tags"))] = [row[value] for row in s["values"]]
            series[ref] = found
        elif model["type"] == "reduce":
            numbers[ref] = {labels: _reduce(values, model["reducer"]) for labels, values in series[model["expression"]].items()}
        elif model["type"] == "threshold":
            [condition] = model["conditions"]
            numbers[ref] = {labels: float(_passes(value, condition["evaluator"])) for labels, value in numbers[model["expression"]].items()}
        else:
            raise ValueError(f"expression type {model['type']!r} is not evaluated here")
    outcome = numbers[rule["condition"]]
    verdict.no_data = not outcome
    verdict.firing = {labels for labels, value in outcome.items() if value == 1.0}
    if verdict.no_data and rule["noDataState"] == "Alerting":
        verdict.firing = {()}
    return verdict
