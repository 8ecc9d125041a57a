from __future__ import annotations

from typing import Any

from pyramid.request import Request
from pyramid.view import view_config
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from ..errors import ApiError
from ..idempotency import idempotent
from ..inventory import upsert_products
from ..lookups import warehouse_or_404
from ..models import Product, Shipment, Warehouse
from ..presenters import warehouse_json
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


@view_config(
    route_name="api.warehouse.products", request_method="POST", permission=OPERATE, openapi=True, renderer="json"
)
def post_products(request: Request) -> dict[str, Any]:
    warehouse = warehouse_or_404(request, request.matchdict["code"])
    rows = request.openapi_validated.body
    counts = upsert_products(request.dbsession, warehouse.id, rows)
    return {"received": len(rows), "inserted": counts.inserted, "updated": counts.updated}
