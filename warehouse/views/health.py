"""GET /api/health: can this app reach its database and broker, and which workers answer?

For load balancers and people alike: 200 when the database and the broker answer, 503 when either
does not (the app can then neither record nor start runs). Workers are reported but never make it
503: the web app is healthy without them, and runs wait in the ledger until one comes.
No token needed, and nothing secret in the answer (errors name the kind of failure, not URLs).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from celery import Celery
from pyramid.request import Request
from pyramid.security import NO_PERMISSION_REQUIRED
from pyramid.view import view_config
from sqlalchemy import Engine, text

# How long the workers get to answer a ping; the whole check stays within a few seconds.
PING_TIMEOUT_SECONDS = 1.0


def _timed(check: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        result = {"ok": True, **check()}
    except Exception as error:  # noqa: BLE001 - any failure means "not ok"; say which kind
        result = {"ok": False, "error": type(error).__name__}
    result["latency_ms"] = round((time.perf_counter() - started) * 1000, 1)
    return result


def check_database(engine: Engine) -> dict[str, Any]:
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))
    return {}


def check_broker(app: Celery) -> dict[str, Any]:
    with app.connection_for_write() as connection:
        # One attempt, bounded by broker_connection_timeout: a health check must not hang.
        connection.ensure_connection(max_retries=1)
    return {}


def check_workers(app: Celery) -> dict[str, Any]:
    replies = app.control.ping(timeout=PING_TIMEOUT_SECONDS) or []
    names = sorted(name for reply in replies for name in reply)
    if not names:
        raise LookupError("no worker answered")
    return {"count": len(names), "names": names}


@view_config(route_name="api.health", request_method="GET", permission=NO_PERMISSION_REQUIRED, openapi=True, renderer="json")
def health(request: Request) -> dict[str, Any]:
    engine: Engine = request.registry["dbsession_factory"].kw["bind"]
    app: Celery = request.registry["celery_app"]
    checks = {
        "database": _timed(lambda: check_database(engine)),
        "broker": _timed(lambda: check_broker(app)),
        "workers": _timed(lambda: check_workers(app)),
    }
    essential = checks["database"]["ok"] and checks["broker"]["ok"]
    if not essential:
        request.response.status_int = 503
    status = "down" if not essential else "ok" if checks["workers"]["ok"] else "degraded"
    return {"status": status, "checks": checks}
