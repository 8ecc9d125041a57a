"""Finding the rows a request names, or answering 404."""

from __future__ import annotations

from pyramid.request import Request
from sqlalchemy import select

from .models import Run, Warehouse
from .errors import ApiError


def warehouse_or_404(request: Request, code: str, field: str = "code") -> Warehouse:
    """The warehouse ``code``; 404 naming ``field`` (where the request gave the code) if there is none."""
    warehouse = request.dbsession.scalar(select(Warehouse).where(Warehouse.code == code))
    if warehouse is None:
        raise ApiError(404, "warehouse_not_found", f"no warehouse with code {code!r}", {"field": field})
    return warehouse


def run_or_404(request: Request, run_id: int) -> tuple[Run, str]:
    row = request.dbsession.execute(
        select(Run, Warehouse.code).join(Warehouse, Warehouse.id == Run.warehouse_id).where(Run.id == run_id)
    ).one_or_none()
    if row is None:
        raise ApiError(404, "run_not_found", f"no run with id {run_id}", {"field": "id"})
    return row[0], row[1]
