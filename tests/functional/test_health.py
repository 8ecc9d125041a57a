"""GET /api/health: the database, the broker and the workers, each ok or not; 503 without the first two."""

from __future__ import annotations

from typing import Any

import pytest
from webtest import TestApp


def test_health_needs_no_token_and_reports_each_part(testapp: TestApp) -> None:
    body = testapp.get("/api/health", status=200).json

    assert body["status"] == "ok"
    assert set(body["checks"]) == {"database", "broker", "workers"}
    assert all(check["ok"] is True and check["latency_ms"] >= 0 for check in body["checks"].values())
    # The session's embedded worker answers Celery's own ping.
    assert body["checks"]["workers"]["count"] >= 1
    assert all("@" in name for name in body["checks"]["workers"]["names"])


def test_a_database_that_does_not_answer_is_503(testapp: TestApp, wsgi_app: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = wsgi_app.registry["dbsession_factory"].kw["bind"]

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise ConnectionRefusedError("database down")

    monkeypatch.setattr(engine, "connect", refuse)
    body = testapp.get("/api/health", status=503).json

    assert body["status"] == "down"
    assert body["checks"]["database"] | {"latency_ms": 0} == {"ok": False, "error": "ConnectionRefusedError", "latency_ms": 0}
    assert body["checks"]["broker"]["ok"] is True


def test_a_broker_that_does_not_answer_is_503(testapp: TestApp, wsgi_app: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    app = wsgi_app.registry["celery_app"]

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise ConnectionRefusedError("broker down")

    monkeypatch.setattr(app, "connection_for_write", refuse)
    body = testapp.get("/api/health", status=503).json

    assert body["status"] == "down"
    assert body["checks"]["broker"]["ok"] is False
    assert body["checks"]["database"]["ok"] is True


def test_no_worker_answering_is_degraded_but_200(testapp: TestApp, wsgi_app: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wsgi_app.registry["celery_app"].control, "ping", lambda **kwargs: [])
    body = testapp.get("/api/health", status=200).json

    assert body["status"] == "degraded"
    assert body["checks"]["workers"] | {"latency_ms": 0} == {"ok": False, "error": "LookupError", "latency_ms": 0}

