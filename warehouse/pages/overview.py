"""``/``: the warehouses with their counts, the latest runs, and the form that starts a run."""

from __future__ import annotations

from typing import Any

from pyramid.httpexceptions import HTTPSeeOther
from pyramid.request import Request
from pyramid.view import view_config
from sqlalchemy import func, select

from .. import operations, run_actions
from ..errors import ApiError
from ..models import Product, Run, Shipment, Warehouse
from ..security import OPERATE, VIEW
from ..settings import MAX_CHUNK_SIZE
from .forms import FormError, read_start_run
from .runs import runs_with_codes

TEMPLATE = "warehouse:templates/pages/overview.html"
LATEST_RUNS = 10
MAX_WAREHOUSES_LISTED = 200


def overview(request: Request, form: dict[str, Any] | None = None, error: str | None = None,
             error_field: str | None = None) -> dict[str, Any]:
    """What the overview shows; the form as last sent, with its error, when it was refused."""
    session = request.dbsession
    # The newest first: the one just created is the one people look for.
    warehouses = list(session.scalars(select(Warehouse).order_by(Warehouse.id.desc()).limit(MAX_WAREHOUSES_LISTED)))
    warehouse_count = session.scalar(select(func.count()).select_from(Warehouse))
    # One grouped count per table for every warehouse listed, rather than two counts per warehouse.
    products = dict(session.execute(select(Product.warehouse_id, func.count()).group_by(Product.warehouse_id)).all())
    shipments = dict(session.execute(select(Shipment.warehouse_id, func.count()).group_by(Shipment.warehouse_id)).all())
    return {
        "warehouses": [
            {"code": w.code, "name": w.name, "products": products.get(w.id, 0), "shipments": shipments.get(w.id, 0)}
            for w in warehouses
        ],
        "warehouse_count": warehouse_count,
        # Past a page of warehouses, the form asks for a code rather than offering a list of all.
        "pick_warehouse_from_list": warehouse_count <= MAX_WAREHOUSES_LISTED,
        "runs": runs_with_codes(request, select(Run).order_by(Run.id.desc()).limit(LATEST_RUNS)),
        "operations": [(name, operations.get(name).description) for name in operations.names()],
        "default_chunk_sizes": [
            (name, operations.default_chunk_size(name, request.registry.settings)) for name in operations.names()
        ],
        "max_chunk_size": MAX_CHUNK_SIZE,
        # Chosen unless the form says otherwise: the quick, side-effect-free one for a first try.
        "form": form or {"operation": "valuation"},
        "error": error,
        "error_field": error_field,
    }


@view_config(route_name="page.overview", request_method="GET", permission=VIEW, renderer=TEMPLATE)
def show_overview(request: Request) -> dict[str, Any]:
    return overview(request)


@view_config(route_name="page.runs", request_method="POST", permission=OPERATE, renderer=TEMPLATE)
def start_run(request: Request) -> Any:
    """The form's POST: the run starts as ``POST /api/warehouses/{code}/runs`` would start it."""
    form = {key: request.POST.get(key, "") for key in ("warehouse", "operation", "chunk_size", "tolerated_failure_percent")}
    try:
        wanted = read_start_run(form)
        run, _code = run_actions.start_run(
            request, wanted.warehouse, wanted.operation,
            chunk_size=wanted.chunk_size, tolerated_failure_percent=wanted.tolerated_failure_percent,
        )
    except FormError as refused:
        request.tm.doom()
        request.response.status_int = 400
        return overview(request, form, str(refused), refused.field)
    except ApiError as refused:
        request.tm.doom()  # nothing of a refused start is kept
        request.response.status_int = refused.status
        return overview(request, form, refused.message, (refused.details or {}).get("field"))
    request.session.flash(f"Run {run.id} started.", "info")
    return HTTPSeeOther(location=request.route_path("page.run", id=run.id))
