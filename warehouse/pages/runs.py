"""``/runs`` (every run, a page at a time) and ``/runs/{id}`` (one run, live), with its actions."""

from __future__ import annotations

import json
from typing import Any

from pyramid.httpexceptions import HTTPNotFound, HTTPSeeOther
from pyramid.request import Request
from pyramid.view import view_config
from sqlalchemy import Select, select

from .. import run_actions
from ..errors import ApiError
from ..models import Run, RunStatus, Warehouse
from ..pagination import decode_cursor, encode_cursor
from ..presenters import TERMINAL_RUN_STATUSES, run_json
from ..run_status import parse_run_id
from ..security import OPERATE, VIEW

RUNS_PER_PAGE = 50


def runs_with_codes(request: Request, statement: Select[Any]) -> list[dict[str, Any]]:
    """The runs ``statement`` selects, as the API shows them (with their warehouse's code)."""
    rows = request.dbsession.execute(
        statement.add_columns(Warehouse.code).join(Warehouse, Warehouse.id == Run.warehouse_id)
    ).all()
    return [run_json(run, code) for run, code in rows]


@view_config(route_name="page.runs", request_method="GET", permission=VIEW,
             renderer="warehouse:templates/pages/runs.html")
def list_runs(request: Request) -> dict[str, Any]:
    warehouse = request.params.get("warehouse", "").strip()
    status = request.params.get("status", "").strip()
    notes = []
    statement = select(Run).order_by(Run.id.desc()).limit(RUNS_PER_PAGE + 1)
    codes = list(request.dbsession.scalars(select(Warehouse.code).order_by(Warehouse.code)))
    if warehouse:
        if warehouse in codes:
            statement = statement.where(Warehouse.code == warehouse)
        else:
            notes.append(f"There is no warehouse {warehouse!r}: showing every warehouse.")
            warehouse = ""
    if status:
        if status in set(RunStatus):
            statement = statement.where(Run.status == status)
        else:
            notes.append(f"{status!r} is not a run status: showing every status.")
            status = ""
    try:
        before = decode_cursor(request.params.get("cursor") or None)
    except ApiError:
        before = None
        notes.append("That page link is not valid: showing the newest runs.")
    if before is not None:
        statement = statement.where(Run.id < before)
    runs = runs_with_codes(request, statement)
    page, more = runs[:RUNS_PER_PAGE], len(runs) > RUNS_PER_PAGE
    return {
        "runs": page,
        "warehouses": codes,
        "statuses": list(RunStatus),
        "chosen": {"warehouse": warehouse, "status": status},
        "notes": notes,
        "next_cursor": encode_cursor(page[-1]["id"]) if more else None,
        "first_page": before is not None,
    }


def _run_or_404(request: Request) -> tuple[Run, str]:
    run_id = parse_run_id(request.matchdict["id"])
    row = None if run_id is None else request.dbsession.execute(
        select(Run, Warehouse.code).join(Warehouse, Warehouse.id == Run.warehouse_id).where(Run.id == run_id)
    ).one_or_none()
    if row is None:
        raise HTTPNotFound(f"There is no run {request.matchdict['id']}.")
    return row[0], row[1]


def script_safe_json(document: Any) -> str:
    """JSON to embed in a ``<script type="application/json">``: no ``</script>`` (or ``<!--``) can
    appear in it, whatever an error message holds, because ``<``, ``>`` and ``&`` are escaped."""
    return json.dumps(document).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def details_removed(run: Run) -> dict[str, Any] | None:
    """When retention removed the run's chunk details, and how long after the run ended (for the
    note that stands in for its chunk map); None while they are kept."""
    if run.details_purged_at is None:
        return None
    days = (run.details_purged_at - (run.finished_at or run.details_purged_at)).days
    return {"at": run.details_purged_at, "after": f"{days:,} day{'' if days == 1 else 's'}"}


@view_config(route_name="page.run", request_method="GET", permission=VIEW,
             renderer="warehouse:templates/pages/run.html")
def show_run(request: Request) -> dict[str, Any]:
    run, code = _run_or_404(request)
    document = run_json(run, code)
    return {
        "run": document,
        # The first state of the live page, so it shows at once and polls only for changes.
        "run_document": script_safe_json(document),
        "ended": run.status in TERMINAL_RUN_STATUSES,
        "details_removed": details_removed(run),
    }


ACTIONS = {
    "cancel": (run_actions.cancel_run, "Run {id} is being cancelled: no chunk starts from now on."),
    "resume": (run_actions.resume_run, "Run {id} was resumed: what never finished was sent again."),
    "redrive": (run_actions.redrive_run, "Run {id} was redriven: its failed chunks run again."),
}


@view_config(route_name="page.run.action", request_method="POST", permission=OPERATE)
def act_on_run(request: Request) -> HTTPSeeOther:
    """The page's buttons: the same action as the API's, then back to the page (post/redirect/get)."""
    run, _code = _run_or_404(request)
    action, said = ACTIONS[request.matchdict["action"]]
    try:
        action(request, run.id)
    except ApiError as refused:
        request.tm.doom()  # nothing of a refused action is kept
        request.session.flash(refused.message, "error")
    else:
        request.session.flash(said.format(id=run.id), "info")
    return HTTPSeeOther(location=request.route_path("page.run", id=run.id))
