"""deploy/grafana/warehouse-dashboard.json: a Grafana dashboard whose every query names only metrics
warehouse exports (warehouse/metrics/specs.py), with the panels operators need."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from warehouse.metrics.specs import exported_sample_names

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "warehouse-dashboard.json"

# Each panel operators need, and a metric one of its queries must name.
REQUIRED_PANELS = {
    "Runs by status": "warehouse_runs",
    "Items per second": "warehouse_run_items_total",
    "Chunk duration": "warehouse_chunk_duration_seconds_bucket",
    "Queue length": "warehouse_queue_length",
    "Unacknowledged messages": "warehouse_queue_unacked",
    "Workers alive": "warehouse_workers_alive",
    "Carrier calls": "warehouse_carrier_calls_total",
    "Carrier latency": "warehouse_carrier_call_seconds_bucket",
    "Carrier calls in flight": "warehouse_carrier_in_flight",
    "Webhook deliveries": "warehouse_webhook_deliveries_total",
    "HTTP requests": "warehouse_http_requests_total",
    "HTTP latency": "warehouse_http_request_seconds_bucket",
}

# PromQL's functions and aggregations that the dashboard may call; anything else called is a typo.
PROMQL_CALLS = {
    "sum", "max", "min", "avg", "count", "topk", "bottomk", "quantile", "rate", "irate", "increase",
    "delta", "histogram_quantile", "clamp_min", "clamp_max", "abs", "round", "vector", "scalar",
    "sum_over_time", "max_over_time", "avg_over_time", "label_replace", "absent",
}
PROMQL_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset", "and", "or", "unless"}

_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_MATCHERS = re.compile(r"\{[^}]*\}")  # label matchers: label names and values, never metrics
# `by (le, route)`, `on (queue)`: label lists, dropped with their keyword (`sum by (x) (...)` becomes
# the call `sum (...)`).
_GROUPINGS = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_RANGES = re.compile(r"\[[^\]]*\]")  # [5m], [$__rate_interval]
_IDENTIFIER = re.compile(r"(?<![\w$.])([A-Za-z_:][\w:]*)(\s*\()?")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects. Label names and values, durations and Grafana's
    variables are stripped first; a name that is called must be a PromQL function (or it fails)."""
    stripped = _RANGES.sub("", _GROUPINGS.sub("", _MATCHERS.sub("", _STRINGS.sub('""', expr))))
    names = set()
    for name, called in _IDENTIFIER.findall(stripped):
        if name in PROMQL_KEYWORDS:
            continue
        if called:
            assert name in PROMQL_CALLS, f"{name}() is no PromQL function this dashboard should call, in {expr!r}"
        else:
            names.add(name)
    return names


def load_panels() -> list[dict]:
    """Every panel but the rows, including those folded inside a collapsed row."""
    panels = []
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        if panel["type"] == "row":
            panels += panel.get("panels", [])
        else:
            panels.append(panel)
    return panels


def queries(panel: dict) -> list[str]:
    return [target["expr"] for target in panel.get("targets", []) if target.get("expr")]


def test_the_name_parser_finds_metrics_and_nothing_else() -> None:
    assert metric_names('sum by (operation, outcome) (rate(warehouse_run_items_total{outcome="done"}[1m]))') == {
        "warehouse_run_items_total"
    }
    assert metric_names(
        "histogram_quantile(0.95, sum by (le) (rate(warehouse_carrier_call_seconds_bucket[$__rate_interval])))"
    ) == {"warehouse_carrier_call_seconds_bucket"}
    assert metric_names('max by (queue) (warehouse_queue_length{queue="warehouse_x"}) / on (queue) up') == {
        "warehouse_queue_length", "up",
    }
    with pytest.raises(AssertionError, match="histogram_quantil"):
        metric_names("histogram_quantil(0.5, warehouse_chunk_duration_seconds_bucket)")


def test_every_query_names_only_metrics_warehouse_exports() -> None:
    exported = exported_sample_names()
    unknown = {
        (panel["title"], name)
        for panel in load_panels()
        for expr in queries(panel)
        for name in metric_names(expr)
        if name not in exported
    }
    assert not unknown, f"queries name metrics warehouse does not export: {sorted(unknown)}"


def test_a_misspelt_metric_would_be_caught() -> None:
    # The check above can fail: a plausible typo is not among the exported names.
    assert metric_names("sum(rate(warehouse_run_item_total[1m]))") - exported_sample_names() == {"warehouse_run_item_total"}


def test_every_required_panel_has_a_query_of_its_metric() -> None:
    panels = {panel["title"]: panel for panel in load_panels()}
    missing = {title: metric for title, metric in REQUIRED_PANELS.items() if title not in panels}
    assert not missing, f"panels missing: {missing}"
    for title, metric in REQUIRED_PANELS.items():
        assert any(metric in metric_names(expr) for expr in queries(panels[title])), f"{title}: no query of {metric}"


def test_every_panel_queries_prometheus_through_the_datasource_variable() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    (variable,) = [v for v in dashboard["templating"]["list"] if v["type"] == "datasource"]
    assert variable["query"] == "prometheus"
    reference = {"type": "prometheus", "uid": f"${{{variable['name']}}}"}
    panels = load_panels()
    assert len({panel["id"] for panel in panels}) == len(panels), "panel ids must be unique"
    for panel in panels:
        assert queries(panel), f"{panel['title']}: no query"
        assert panel["datasource"] == reference, panel["title"]
        assert all(target["datasource"] == reference for target in panel["targets"]), panel["title"]
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"]) and panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
