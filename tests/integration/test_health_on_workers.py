"""GET /api/health against real PostgreSQL, Redis and worker processes, and with each of the first two
out of reach."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from webtest import TestApp


def closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def health_of(request: Any, settings: dict[str, Any], status: int) -> dict[str, Any]:
    """GET /api/health of a web app built from ``settings`` (with this directory's conftest helper)."""
    conftest = request.config.pluginmanager.get_plugin(str(request.path.with_name("conftest.py")))
    with conftest._web_app(settings) as app:
        return app.get("/api/health", status=status).json


def test_healthy_with_the_session_workers_answering(webapp: TestApp, workers: list[Any]) -> None:
    body = webapp.get("/api/health", status=200).json

    assert body["status"] == "ok"
    assert body["checks"]["database"]["ok"] and body["checks"]["broker"]["ok"]
    assert {worker.name for worker in workers} <= set(body["checks"]["workers"]["names"])


@pytest.mark.parametrize(
    ("setting", "url", "down", "up"),
    [
        ("celery.broker_url", "redis://127.0.0.1:{port}/0", "broker", "database"),
        ("sqlalchemy.url", "postgresql+psycopg://postgres@127.0.0.1:{port}/nowhere", "database", "broker"),
    ],
    ids=["broker", "database"],
)
def test_503_when_the_broker_or_the_database_is_out_of_reach(
    setting: str, url: str, down: str, up: str, settings: dict[str, Any], request: Any
) -> None:
    body = health_of(request, {**settings, setting: url.format(port=closed_port())}, 503)

    assert body["status"] == "down"
    assert body["checks"][down]["ok"] is False
    assert body["checks"][up]["ok"] is True
    assert body["checks"][down]["latency_ms"] < 10_000
