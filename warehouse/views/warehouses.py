from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pyramid.request import Request
from pyramid.view import view_config
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..errors import ApiError
from ..idempotency import idempotent
from ..inventory import UpsertCounts, upsert_products, upsert_shipments
from ..lookups import warehouse_or_404
from ..models import Product, Shipment, Warehouse
from ..presenters import warehouse_json
from ..uploads import validated_rows
from ..security import OPERATE, VIEW


def _counts(request: Request, warehouse: Warehouse) -> tuple[int, int]:
    session = request.dbsession
    products = session.scalar(select(func.count()).where(Product.warehouse_id == warehouse.id)) or 0
    shipments = session.scalar(select(func.count()).where(Shipment.warehouse_id == warehouse.id)) or 0
    return products, shipments


@view_config(route_name="api.warehouses", request_method="POST", permission=OPERATE, openapi=True, renderer="json")
@idempotent
def create_warehouse(request: Request) -> dict[str, Any]:
    body = request.openapi_validated.body
    warehouse = Warehouse(code=body["code"], name=body["name"])
    try:
        with request.dbsession.begin_nested():
            request.dbsession.add(warehouse)
    except IntegrityError:
        raise ApiError(409, "warehouse_exists", f"a warehouse with code {body['code']!r} exists", {"field": "code"}) from None
    request.dbsession.refresh(warehouse)
    request.response.status_int = 201
    request.response.location = request.route_path("api.warehouse", code=warehouse.code)
    return warehouse_json(warehouse, 0, 0)


@view_config(route_name="api.warehouse", request_method="GET", permission=VIEW, openapi=True, renderer="json")
def get_warehouse(request: Request) -> dict[str, Any]:
    warehouse = warehouse_or_404(request, request.matchdict["code"])
    return warehouse_json(warehouse, *_counts(request, warehouse))


# openapi=False: the body is validated by warehouse.uploads (fast, same document); see there.
@view_config(route_name="api.warehouse.products", request_method="POST", permission=OPERATE, renderer="json")
def post_products(request: Request) -> dict[str, Any]:
    return _upload(request, "products", upsert_products)


@view_config(route_name="api.warehouse.shipments", request_method="POST", permission=OPERATE, renderer="json")
def post_shipments(request: Request) -> dict[str, Any]:
    return _upload(request, "shipments", upsert_shipments)


def _upload(
    request: Request, upload: str, upsert: Callable[[Session, int, list[dict[str, Any]]], UpsertCounts]
) -> dict[str, Any]:
    """Upsert the validated rows of a JSON or CSV body (the same schema validates both)."""
    warehouse = warehouse_or_404(request, request.matchdict["code"])
    rows = validated_rows(request, upload)
    counts = upsert(request.dbsession, warehouse.id, rows)
    return {"received": len(rows), "inserted": counts.inserted, "updated": counts.updated}
