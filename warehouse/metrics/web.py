"""``GET /metrics``: the web process's own figures and the fleet's, in Prometheus's text format;
and the tween that counts and times every request by its route's name.

Open by default, as Prometheus endpoints usually are (nothing in it is secret: counts and timings);
with ``warehouse.metrics_token`` (``WAREHOUSE_METRICS_TOKEN``) set it wants that bearer token, which
Prometheus sends with ``authorization: {credentials: ...}`` in its scrape config.
"""

from __future__ import annotations

import hmac
import os
import time
from collections.abc import Callable

import prometheus_client
from prometheus_client import CollectorRegistry, generate_latest, multiprocess
from pyramid.config import Configurator
from pyramid.registry import Registry
from pyramid.request import Request
from pyramid.response import Response
from pyramid.security import NO_PERMISSION_REQUIRED
from pyramid.tweens import EXCVIEW

from ..errors import error_body
from . import recording
from .fleet import FleetFigures

TOKEN_SETTING = "warehouse.metrics_token"
# A request no route matched (a 404, a scanner's guess): one label value, not its path.
UNMATCHED = "unmatched"


def process_registry() -> CollectorRegistry:
    """This process's figures; all of them added up when several web processes share a
    multiprocess directory (``PROMETHEUS_MULTIPROC_DIR``, prometheus_client's own convention)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    return prometheus_client.REGISTRY


def _refused(token_sent: bool) -> Response:
    given = "an unknown" if token_sent else "no"
    response = Response(
        json_body=error_body(
            "unauthorized",
            f"the Authorization header carries {given} token: /metrics wants 'Authorization: Bearer' and the metrics token",
            {"field": "Authorization"},
        ),
        status=401,
    )
    response.headers["WWW-Authenticate"] = 'Bearer realm="warehouse metrics"'
    return response


def metrics_view(request: Request) -> Response:
    wanted = request.registry.settings.get(TOKEN_SETTING) or ""
    if wanted:
        sent = request.headers.get("Authorization", "")
        scheme, _, token = sent.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), wanted.encode()):
            return _refused(bool(sent))
    fleet = CollectorRegistry(auto_describe=False)
    fleet.register(FleetFigures(request.dbsession, request.registry["celery_app"], request.registry.settings))
    body = generate_latest(process_registry()) + generate_latest(fleet)
    return Response(body=body, content_type=prometheus_client.CONTENT_TYPE_LATEST.split(";")[0], charset="utf-8")


def request_metrics_tween_factory(handler: Callable[[Request], Response], registry: Registry) -> Callable[[Request], Response]:
    def count_request(request: Request) -> Response:
        started = time.perf_counter()
        status = 500
        try:
            response = handler(request)
            status = response.status_code
            return response
        finally:
            route = request.matched_route.name if request.matched_route is not None else UNMATCHED
            recording.http_request(route, request.method, status, time.perf_counter() - started)

    return count_request


def includeme(config: Configurator) -> None:
    config.add_route("metrics", "/metrics")
    config.add_view(metrics_view, route_name="metrics", request_method="GET", permission=NO_PERMISSION_REQUIRED)
    # Over the exception view: the status counted is the one the client got, errors included.
    config.add_tween("warehouse.metrics.web.request_metrics_tween_factory", over=EXCVIEW)
