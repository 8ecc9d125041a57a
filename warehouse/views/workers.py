"""GET /api/workers: the worker processes the ledger knows, alive or not, and what each holds."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pyramid.request import Request
from pyramid.view import view_config

from ..ledger import workers as fleet
from ..presenters import worker_json
from ..security import VIEW


@view_config(route_name="api.workers", request_method="GET", permission=VIEW, openapi=True, renderer="json")
def list_workers(request: Request) -> dict[str, Any]:
    query = request.openapi_validated.parameters.query
    return workers_document(request, limit=int(query.get("limit", 100)), alive=query.get("alive"))


def workers_document(request: Request, limit: int = 100, alive: bool | None = None) -> dict[str, Any]:
    """The answer of GET /api/workers (the /workers page shows the same)."""
    dead_after = fleet.dead_after_seconds(request.registry.settings)
    now = fleet.database_now(request.dbsession)
    workers = fleet.list_workers(
        request.dbsession,
        dead_before=now - dt.timedelta(seconds=dead_after),
        limit=limit,
        alive=alive,
    )
    return {"dead_after_seconds": dead_after, "workers": [worker_json(worker) for worker in workers]}
