"""GET /api/runs/{id}/chunks and /timeline: what a live run page polls besides the run's status.

Both are one scan of the run's chunks, kept per run and shared by every viewer of this process
(warehouse/progress_cache.py), sent with an ETag (a repeat is a 304) and gzipped when accepted.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from pyramid.request import Request
from pyramid.response import Response
from pyramid.view import view_config
from sqlalchemy import select

from ..conditional import Representation, conditional_answer
from ..errors import ApiError
from ..ledger import progress
from ..ledger import workers as fleet
from ..models import Run
from ..openapi import validate_response_as_documented
from ..presenters import isoformat
from ..progress_cache import CHUNKS, TIMELINE, RunFacts, progress_answers
from ..security import VIEW
from .runs import run_id_in_path


# openapi=False, as GET /api/runs/{id}: {id} is the only input, checked as the document says; a
# request answered from memory should not pay for openapi-core. Responses are still checked.
@view_config(route_name="api.run.chunks", request_method="GET", permission=VIEW, openapi=False)
def run_chunks(request: Request) -> Response:
    return _progress(request, CHUNKS, _chunk_map_document)


@view_config(route_name="api.run.timeline", request_method="GET", permission=VIEW, openapi=False)
def run_timeline(request: Request) -> Response:
    return _progress(request, TIMELINE, _timeline_document)


def _progress(request: Request, kind: str, document: Any) -> Response:
    validate_response_as_documented(request)
    run_id = run_id_in_path(request)
    answer = progress_answers(request, kind).get(
        run_id, lambda: _run_facts(request, run_id), lambda run: Representation.of(document(request, run))
    )
    return conditional_answer(request, answer)


def _run_facts(request: Request, run_id: int) -> RunFacts:
    row = request.dbsession.execute(
        select(Run.id, Run.status, Run.updated_at, Run.started_at, Run.finished_at).where(Run.id == run_id)
    ).one_or_none()
    if row is None:
        raise ApiError(404, "run_not_found", f"no run with id {run_id}", {"field": "id"})
    return RunFacts(*row)


def _chunk_map_document(request: Request, run: RunFacts) -> dict[str, Any]:
    dead_after = fleet.dead_after_seconds(request.registry.settings)
    dead_before = fleet.database_now(request.dbsession) - dt.timedelta(seconds=dead_after)
    chunk_map = progress.chunk_map(request.dbsession, run.id, dead_before)
    return {
        "run_id": run.id,
        "chunks_total": len(chunk_map.states),
        "states": chunk_map.states,
        "counts": chunk_map.counts,
        "workers": [
            {
                "node": share.node,
                "alive": share.alive,
                "chunks_running": share.chunks_running,
                "chunks_done": share.chunks_done,
                "chunks_failed": share.chunks_failed,
            }
            for share in chunk_map.nodes
        ],
    }


def _timeline_document(request: Request, run: RunFacts) -> dict[str, Any]:
    # A running run's chart reaches now, so that a stall shows as empty buckets.
    end = run.finished_at if run.ended and run.finished_at else dt.datetime.now(dt.timezone.utc)
    timeline = progress.timeline(request.dbsession, run.id, run.started_at, end)
    return {
        "run_id": run.id,
        "started_at": isoformat(timeline.started_at),
        "bucket_seconds": timeline.bucket_seconds,
        "buckets": [
            {
                "start": isoformat(bucket.start),
                "items": bucket.items,
                "chunks": bucket.chunks,
                "items_per_second": bucket.items_per_second,
            }
            for bucket in timeline.buckets
        ],
    }
