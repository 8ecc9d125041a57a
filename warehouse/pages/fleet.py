"""``/workers``: the worker processes the ledger knows, live, as GET /api/workers lists them."""

from __future__ import annotations

from typing import Any

from pyramid.request import Request
from pyramid.view import view_config

from ..security import VIEW
from ..views.workers import workers_document

WORKERS_LISTED = 200


@view_config(route_name="page.workers", request_method="GET", permission=VIEW,
             renderer="warehouse:templates/pages/workers.html")
def show_workers(request: Request) -> dict[str, Any]:
    document = workers_document(request, limit=WORKERS_LISTED)
    nodes: dict[str, dict[str, Any]] = {}
    for worker in document["workers"]:
        node = nodes.setdefault(worker["node"], {"node": worker["node"], "alive": 0, "processes": 0, "running": 0, "done": 0})
        node["processes"] += 1
        node["alive"] += int(worker["alive"])
        node["running"] += worker["chunks_running"]
        node["done"] += worker["chunks_done"]
    return {**document, "nodes": list(nodes.values()), "limit": WORKERS_LISTED}
