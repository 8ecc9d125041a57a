"""Reading a warehouse's products and shipments back: a page at a time, by keyset on their ids
(the order they were added), with an opaque cursor, and filters by key and by label state."""

from __future__ import annotations

from typing import Any

from pyramid.request import Request
from pyramid.view import view_config
from sqlalchemy import Select, select

from ..lookups import warehouse_or_404
from ..models import Product, Shipment
from ..pagination import decode_cursor, encode_cursor
from ..presenters import product_json, shipment_json
from ..security import VIEW

# label=... → the shipments it keeps.
LABEL_STATES = {
    "bought": lambda: Shipment.label_id.is_not(None),
    "missing": lambda: Shipment.label_id.is_(None) & Shipment.label_error.is_(None),
    "failed": lambda: Shipment.label_id.is_(None) & Shipment.label_error.is_not(None),
}


def _page(request: Request, statement: Select[Any], model: Any, key: str, present: Any) -> dict[str, Any]:
    query = request.openapi_validated.parameters.query
    limit = int(query.get("limit", 100))
    after = decode_cursor(query.get("cursor"))
    if after is not None:
        statement = statement.where(model.id > after)
    rows = list(request.dbsession.scalars(statement.order_by(model.id).limit(limit + 1)))
    page = rows[:limit]
    return {key: [present(row) for row in page], "next_cursor": encode_cursor(page[-1].id) if len(rows) > limit else None}


@view_config(route_name="api.warehouse.products", request_method="GET", permission=VIEW, openapi=True, renderer="json")
def list_products(request: Request) -> dict[str, Any]:
    warehouse = warehouse_or_404(request, request.matchdict["code"])
    statement = select(Product).where(Product.warehouse_id == warehouse.id)
    sku = request.openapi_validated.parameters.query.get("sku")
    if sku is not None:
        statement = statement.where(Product.sku == sku)
    return _page(request, statement, Product, "products", product_json)


@view_config(route_name="api.warehouse.shipments", request_method="GET", permission=VIEW, openapi=True, renderer="json")
def list_shipments(request: Request) -> dict[str, Any]:
    warehouse = warehouse_or_404(request, request.matchdict["code"])
    query = request.openapi_validated.parameters.query
    statement = select(Shipment).where(Shipment.warehouse_id == warehouse.id)
    if query.get("reference") is not None:
        statement = statement.where(Shipment.reference == query["reference"])
    if query.get("label") is not None:
        statement = statement.where(LABEL_STATES[query["label"]]())
    return _page(request, statement, Shipment, "shipments", shipment_json)
