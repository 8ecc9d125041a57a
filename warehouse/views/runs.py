from __future__ import annotations

import json
from typing import Any

from pyramid.request import Request
from pyramid.response import Response
from pyramid.view import view_config
from sqlalchemy import select

from .. import operations, run_actions
from ..errors import ApiError
from ..idempotency import idempotent
from ..openapi import validate_response_as_documented
from ..lookups import run_or_404, warehouse_or_404
from ..models import ChunkStatus, Run, RunChunk, RunItemFailure, Warehouse
from ..pagination import decode_cursor, encode_cursor
from ..presenters import failed_chunk_json, run_json
from ..run_status import MAX_RUN_ID, json_answer, parse_run_id, run_status_cache
from ..security import OPERATE, VIEW

MAX_FAILED_CHUNKS_LISTED = 1000


@view_config(route_name="api.warehouse.runs", request_method="POST", permission=OPERATE, openapi=True, renderer="json")
@idempotent
def start_run(request: Request) -> dict[str, Any]:
    body = request.openapi_validated.body
    run, code = run_actions.start_run(
        request,
        request.matchdict["code"],
        body["operation"],
        chunk_size=body.get("chunk_size"),
        tolerated_failure_percent=body.get("tolerated_failure_percent", 0),
    )
    request.response.status_int = 202
    request.response.location = request.route_path("api.run", id=run.id)
    return run_json(run, code)


@view_config(route_name="api.runs", request_method="GET", permission=VIEW, openapi=True, renderer="json")
def list_runs(request: Request) -> dict[str, Any]:
    """Runs, newest first, optionally of one warehouse and one status; a page at a time."""
    query = request.openapi_validated.parameters.query
    limit = int(query.get("limit", 50))
    statement = select(Run, Warehouse.code).join(Warehouse, Warehouse.id == Run.warehouse_id)
    if "warehouse" in query:
        statement = statement.where(Run.warehouse_id == warehouse_or_404(request, query["warehouse"], field="warehouse").id)
    if "status" in query:
        statement = statement.where(Run.status == query["status"])
    before = decode_cursor(query.get("cursor"))
    if before is not None:
        statement = statement.where(Run.id < before)
    rows = request.dbsession.execute(statement.order_by(Run.id.desc()).limit(limit + 1)).all()
    page = rows[:limit]
    return {
        "runs": [run_json(run, code) for run, code in page],
        "next_cursor": encode_cursor(page[-1][0].id) if len(rows) > limit else None,
    }


def run_id_in_path(request: Request) -> int:
    """``{id}`` checked as the document's RunId parameter says, the way openapi-core would answer."""
    raw = request.matchdict["id"]
    run_id = parse_run_id(raw)
    if run_id is not None:
        return run_id
    message = f"id must be a run id, a whole number from 1 to {MAX_RUN_ID:,}"
    raise ApiError(400, "invalid_request", message, {"field": "id", "errors": [{"field": "id", "message": message}]})


# openapi=False: the one thing to check is {id}, and openapi-core's per-request checking of it was a
# third of this view's CPU, the request every client polls (docs/benchmarks.md, "Status endpoint").
# The response is still checked against the document where settings ask for it. The answer is kept
# rendered (warehouse/run_status.py), so that repeats are answered before this view.
@view_config(route_name="api.run", request_method="GET", permission=VIEW, openapi=False)
def get_run(request: Request) -> Response:
    validate_response_as_documented(request)
    run_id = run_id_in_path(request)
    body = run_status_cache(request).get(run_id, lambda: json.dumps(run_json(*run_or_404(request, run_id))).encode())
    return json_answer(body)


def accepted(request: Request, run: Run, code: str, extra: dict[str, Any]) -> dict[str, Any]:
    """The 202 of cancel, resume and redrive: the run's JSON, and what the action adds to it."""
    request.response.status_int = 202
    return {**run_json(run, code), **extra}


def validated_run_id(request: Request) -> int:
    return int(request.openapi_validated.parameters.path["id"])


@view_config(route_name="api.run.cancel", request_method="POST", permission=OPERATE, openapi=True, renderer="json")
def cancel_run(request: Request) -> dict[str, Any]:
    return accepted(request, *run_actions.cancel_run(request, validated_run_id(request)))


@view_config(route_name="api.run.resume", request_method="POST", permission=OPERATE, openapi=True, renderer="json")
def resume_run(request: Request) -> dict[str, Any]:
    return accepted(request, *run_actions.resume_run(request, validated_run_id(request)))


@view_config(route_name="api.run.redrive", request_method="POST", permission=OPERATE, openapi=True, renderer="json")
def redrive_run(request: Request) -> dict[str, Any]:
    return accepted(request, *run_actions.redrive_run(request, validated_run_id(request)))


@view_config(route_name="api.run.failures", request_method="GET", permission=VIEW, openapi=True, renderer="json")
def run_failures(request: Request) -> dict[str, Any]:
    validated = request.openapi_validated.parameters
    run, _code = run_or_404(request, int(validated.path["id"]))
    limit = int(validated.query.get("limit", 100))
    after = decode_cursor(validated.query.get("cursor")) or 0
    items = list(
        request.dbsession.scalars(
            select(RunItemFailure)
            .where(RunItemFailure.run_id == run.id, RunItemFailure.id > after)
            .order_by(RunItemFailure.id)
            .limit(limit + 1)
        )
    )
    chunks = request.dbsession.scalars(
        select(RunChunk)
        .where(RunChunk.run_id == run.id, RunChunk.status == ChunkStatus.FAILED)
        .order_by(RunChunk.seq)
        .limit(MAX_FAILED_CHUNKS_LISTED)
    )
    more = len(items) > limit
    items = items[:limit]
    names = _item_names(request, run.operation, [item.item_id for item in items])
    return {
        "run_id": run.id,
        "chunks": [failed_chunk_json(chunk) for chunk in chunks],
        "items": [
            {"item_id": item.item_id, "item": names.get(item.item_id), "chunk_id": item.chunk_id, "error": item.error}
            for item in items
        ],
        "next_cursor": encode_cursor(items[-1].id) if more else None,
    }


def _item_names(request: Request, operation_name: str, item_ids: list[int]) -> dict[int, str]:
    """Item id → its sku or reference (the operation's ``item_key``), for the ids that still exist."""
    try:
        key = operations.get(operation_name).item_key
    except KeyError:  # an operation this process does not know (any more)
        return {}
    if key is None or not item_ids:
        return {}
    ids = key.table.c.id
    return dict(request.dbsession.execute(select(ids, key).where(ids.in_(item_ids))).all())
