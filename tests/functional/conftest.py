"""Fixtures of the functional tests (the API through WebTest on the embedded app)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from pyramid.router import Router

from tests.functional.helpers import Sent, committed_run_status, run_id_in
from warehouse.models import Warehouse


@pytest.fixture
def sent(wsgi_app: Router, database_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[Sent]:
    """Tasks the web side sends (``registry["celery_app"].send_task`` called on the test's thread).

    The embedded worker sends the chunk and callback tasks through the same app from its own threads;
    those go through untouched and unrecorded.
    """
    celery_app = wsgi_app.registry["celery_app"]
    real_send_task = celery_app.send_task
    test_thread = threading.get_ident()
    calls: list[Sent] = []

    def spy(name: str, args: Any = None, kwargs: Any = None, **options: Any) -> Any:
        if threading.get_ident() == test_thread:
            seen = committed_run_status(database_path, run_id_in(name, list(args))) if args else None
            calls.append(Sent(name, args, {"kwargs": kwargs, **options}, seen))
        return real_send_task(name, args, kwargs, **options)

    monkeypatch.setattr(celery_app, "send_task", spy)
    return calls


@pytest.fixture
def warehouse(db: Any) -> Warehouse:
    return db.add_warehouse()


