"""GET /metrics on the embedded app: Prometheus's text format, the fleet's figures from the ledger,
the chunks and items the embedded worker counted, the HTTP requests by route name, and the token."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select
from webtest import TestApp

from tests.functional.helpers import product
from warehouse.metrics.specs import SPECS, WEB
from warehouse.models import RunChunk, RunStatus

pytestmark = pytest.mark.timeout(120)


def scrape(testapp: TestApp, **kwargs: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of GET /metrics, parsed by prometheus_client's own parser: {(name, labels): value}."""
    response = testapp.get("/metrics", **kwargs)
    assert response.content_type == "text/plain"
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_the_fleet_figures_come_from_the_ledger(testapp: TestApp, db: Any, warehouse: Any) -> None:
    from tests.functional.helpers import add_run

    before = scrape(testapp)
    add_run(db, warehouse.id, "succeeded")
    add_run(db, warehouse.id, "cancelled")

    after = scrape(testapp)

    for status in RunStatus:
        assert ("warehouse_runs", (("status", status.value),)) in after
    assert value(after, "warehouse_runs", status="succeeded") == value(before, "warehouse_runs", status="succeeded") + 1
    assert value(after, "warehouse_runs", status="cancelled") == value(before, "warehouse_runs", status="cancelled") + 1
    # The session's embedded worker heartbeats in the ledger.
    assert value(after, "warehouse_workers_alive") >= 1
    # The memory broker's queues, each named (their depth is whatever the session left queued).
    assert {labels for name, labels in after if name == "warehouse_queue_length"} == {
        (("queue", "celery"),), (("queue", "celery.runs"),)
    }


def test_chunks_and_items_counted_as_the_ledger_has_them(testapp: TestApp, operator: dict, db: Any, warehouse: Any, wait_for_run: Any) -> None:
    testapp.post_json(f"/api/warehouses/{warehouse.code}/products", [product(f"m-{i}") for i in range(1_200)], headers=operator)
    before = scrape(testapp)

    run_id = testapp.post_json(
        f"/api/warehouses/{warehouse.code}/runs", {"operation": "valuation", "chunk_size": 500}, headers=operator, status=202
    ).json["id"]
    run = wait_for_run(testapp, run_id)
    after = scrape(testapp)

    assert run["status"] == "succeeded"
    chunks = db.scalar(select(func.count()).select_from(RunChunk).where(RunChunk.run_id == run_id, RunChunk.status == "done"))
    assert chunks == 3
    moved = {
        name: value(after, name, **labels) - value(before, name, **labels)
        for name, labels in (
            ("warehouse_chunks_total", {"operation": "valuation", "outcome": "done"}),
            ("warehouse_run_items_total", {"operation": "valuation", "outcome": "done"}),
            ("warehouse_chunk_duration_seconds_count", {"operation": "valuation"}),
        )
    }
    assert moved == {
        "warehouse_chunks_total": chunks,
        "warehouse_run_items_total": run["items"]["done"],
        "warehouse_chunk_duration_seconds_count": chunks,
    }


def test_requests_are_counted_by_route_name_not_path(testapp: TestApp, viewer: dict) -> None:
    before = scrape(testapp)
    testapp.get("/api/health")
    testapp.get("/api/runs/987654321", headers=viewer, status=404)
    testapp.get("/api/runs/987654322", headers=viewer, status=404)
    testapp.get("/no/such/thing", status=404)

    after = scrape(testapp)

    def moved(**labels: str) -> float:
        return value(after, "warehouse_http_requests_total", **labels) - value(before, "warehouse_http_requests_total", **labels)

    assert moved(route="api.health", method="GET", status="200") == 1
    assert moved(route="api.run", method="GET", status="404") == 2
    assert moved(route="unmatched", method="GET", status="404") == 1
    # The earlier scrape counts too, under the metrics route.
    assert moved(route="metrics", method="GET", status="200") == 1
    routes = {dict(labels)["route"] for name, labels in after if name == "warehouse_http_requests_total"}
    assert not any("98765432" in route or "no/such" in route for route in routes), routes


def test_the_web_serves_every_figure_it_lists(testapp: TestApp) -> None:
    testapp.get("/api/health")

    names = {name for name, _ in scrape(testapp)}

    missing = [spec.name for spec in SPECS if spec.served_by == WEB and not set(spec.sample_names()) & names]
    # The embedded default's memory broker cannot tell what is unacknowledged; Redis can.
    assert missing == ["warehouse_queue_unacked"]


def test_a_metrics_token_is_asked_for_when_set(settings: dict, celery_app: Any) -> None:
    import warehouse

    guarded = TestApp(warehouse.main({}, celery_app=celery_app, **{
        **settings, "celery.embedded_worker": "false", "warehouse.metrics_token": "scrape-secret",
    }))

    refused = guarded.get("/metrics", status=401)
    assert refused.json["error"]["details"] == {"field": "Authorization"}
    assert refused.headers["WWW-Authenticate"].startswith("Bearer")
    assert guarded.get("/metrics", headers={"Authorization": "Bearer wrong"}, status=401).json["error"]["code"] == "unauthorized"
    assert "scrape-secret" not in guarded.get("/metrics", headers={"Authorization": "Bearer wrong"}, status=401).text
    answered = guarded.get("/metrics", headers={"Authorization": "Bearer scrape-secret"}, status=200)
    assert "warehouse_runs" in answered.text


def test_status_answers_from_memory_are_counted_too(settings: dict, celery_app: Any, viewer: dict, db: Any, warehouse: Any) -> None:
    """GET /api/runs/{id} repeats answered in front of the router (warehouse/run_status.py) count as
    the router's answers would."""
    import warehouse as package
    from tests.functional.helpers import add_run

    cached = TestApp(package.main({}, celery_app=celery_app, **{
        **settings, "celery.embedded_worker": "false", "warehouse.run_status_cache_seconds": "60",
    }))
    run_id = add_run(db, warehouse.id, "succeeded")
    before = scrape(cached)

    for _ in range(3):
        cached.get(f"/api/runs/{run_id}", headers=viewer, status=200)

    after = scrape(cached)
    labels = {"route": "api.run", "method": "GET", "status": "200"}
    assert value(after, "warehouse_http_requests_total", **labels) - value(before, "warehouse_http_requests_total", **labels) == 3
