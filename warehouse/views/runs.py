from __future__ import annotations

from decimal import Decimal
from typing import Any

from pyramid.request import Request
from pyramid.view import view_config

from .. import ledger, operations
from ..dispatch import send_after_commit
from ..errors import ApiError, FieldError
from ..lookups import run_or_404, warehouse_or_404
from ..presenters import run_json
from ..security import OPERATE, VIEW
from ..settings import chunk_size as default_chunk_size


@view_config(route_name="api.warehouse.runs", request_method="POST", permission=OPERATE, openapi=True, renderer="json")
def start_run(request: Request) -> dict[str, Any]:
    warehouse = warehouse_or_404(request, request.matchdict["code"])
    body = request.openapi_validated.body
    operation = body["operation"]
    if operation not in operations.names():
        raise FieldError("operation", f"unknown operation {operation!r}; known: {', '.join(operations.names())}", 422)
    try:
        run = ledger.create_run(
            request.dbsession,
            warehouse,
            operation,
            chunk_size=body.get("chunk_size") or default_chunk_size(request.registry.settings),
            tolerated_failure_percent=Decimal(str(body.get("tolerated_failure_percent", 0))),
        )
    except ledger.ActiveRunExists as exists:
        raise ApiError(
            409, "run_active", str(exists), {"field": "operation", "active_run_id": exists.run_id}
        ) from None
    request.dbsession.flush()
    send_after_commit(request, "processWholeWarehouse", [run.id])
    request.response.status_int = 202
    request.response.location = request.route_path("api.run", id=run.id)
    return run_json(run, warehouse.code)


@view_config(route_name="api.run", request_method="GET", permission=VIEW, openapi=True, renderer="json")
def get_run(request: Request) -> dict[str, Any]:
    run, code = run_or_404(request, int(request.openapi_validated.parameters.path["id"]))
    return run_json(run, code)
