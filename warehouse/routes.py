from __future__ import annotations

from typing import Any

from pyramid.config import Configurator
from pyramid.request import Request
from pyramid.security import NO_PERMISSION_REQUIRED

from .errors import error_body

# name, pattern, methods served: one table, so the 405 answers below can say what is allowed.
API_ROUTES: list[tuple[str, str, tuple[str, ...]]] = [
    ("api.warehouses", "/api/warehouses", ("POST",)),
    ("api.warehouse", "/api/warehouses/{code}", ("GET",)),
    ("api.warehouse.products", "/api/warehouses/{code}/products", ("GET", "POST")),
    ("api.warehouse.shipments", "/api/warehouses/{code}/shipments", ("GET", "POST")),
    ("api.warehouse.runs", "/api/warehouses/{code}/runs", ("POST",)),
    ("api.warehouse.schedules", "/api/warehouses/{code}/schedules", ("GET", "POST")),
    ("api.schedule", "/api/schedules/{id}", ("GET", "PATCH", "DELETE")),
    ("api.runs", "/api/runs", ("GET",)),
    ("api.run", "/api/runs/{id}", ("GET",)),
    ("api.run.cancel", "/api/runs/{id}/cancel", ("POST",)),
    ("api.run.resume", "/api/runs/{id}/resume", ("POST",)),
    ("api.run.redrive", "/api/runs/{id}/redrive", ("POST",)),
    ("api.run.failures", "/api/runs/{id}/failures", ("GET",)),
    ("api.run.chunks", "/api/runs/{id}/chunks", ("GET",)),
    ("api.run.timeline", "/api/runs/{id}/timeline", ("GET",)),
    ("api.workers", "/api/workers", ("GET",)),
    ("api.webhooks", "/api/webhooks", ("GET", "POST")),
    ("api.webhook", "/api/webhooks/{id}", ("DELETE",)),
    ("api.webhook.deliveries", "/api/webhooks/{id}/deliveries", ("GET",)),
    ("api.webhook.delivery.retry", "/api/webhooks/{id}/deliveries/{delivery_id}/retry", ("POST",)),
    ("api.health", "/api/health", ("GET",)),
]


def method_not_allowed(methods: tuple[str, ...]):  # type: ignore[no-untyped-def]
    allowed = ", ".join(methods)

    def view(request: Request) -> dict[str, Any]:
        request.response.status_int = 405
        request.response.headers["Allow"] = allowed
        return error_body("method_not_allowed", f"{request.method} is not allowed here; allowed: {allowed}")

    return view


def includeme(config: Configurator) -> None:
    for name, pattern, methods in API_ROUTES:
        config.add_route(name, pattern)
        # A view with no request_method predicate is only chosen when no method-specific one matches.
        config.add_view(
            method_not_allowed(methods), route_name=name, renderer="json", permission=NO_PERMISSION_REQUIRED
        )
