"""The schedules API: a warehouse's schedules, and one schedule with its ticks; what the logic does
is in warehouse/schedules/."""

from __future__ import annotations

from typing import Any

from pyramid.request import Request
from pyramid.response import Response
from pyramid.view import view_config

from .. import schedules
from ..lookups import warehouse_or_404
from ..models import Schedule
from ..pagination import decode_cursor, encode_cursor
from ..security import OPERATE, VIEW


def _one(request: Request, schedule: Schedule, code: str) -> dict[str, Any]:
    return schedules.schedule_json(schedule, code, schedules.recent_ticks(request.dbsession, [schedule.id])[schedule.id])


def _schedule(request: Request) -> tuple[Schedule, str]:
    return schedules.schedule_or_404(request.dbsession, int(request.openapi_validated.parameters.path["id"]))


@view_config(route_name="api.warehouse.schedules", request_method="POST", permission=OPERATE, openapi=True, renderer="json")
def create_schedule(request: Request) -> dict[str, Any]:
    warehouse = warehouse_or_404(request, request.matchdict["code"])
    schedule = schedules.create_schedule(request.dbsession, warehouse, request.openapi_validated.body)
    request.response.status_int = 201
    request.response.location = request.route_path("api.schedule", id=schedule.id)
    return schedules.schedule_json(schedule, warehouse.code, [])


@view_config(route_name="api.warehouse.schedules", request_method="GET", permission=VIEW, openapi=True, renderer="json")
def list_schedules(request: Request) -> dict[str, Any]:
    warehouse = warehouse_or_404(request, request.matchdict["code"])
    listed = schedules.list_schedules(request.dbsession, warehouse.id)
    recent = schedules.recent_ticks(request.dbsession, [schedule.id for schedule, _ in listed])
    return {"schedules": [schedules.schedule_json(schedule, code, recent[schedule.id]) for schedule, code in listed]}


@view_config(route_name="api.schedule", request_method="GET", permission=VIEW, openapi=True, renderer="json")
def get_schedule(request: Request) -> dict[str, Any]:
    schedule, code = _schedule(request)
    query = request.openapi_validated.parameters.query
    ticks, more = schedules.ticks_page(
        request.dbsession, schedule.id, int(query.get("limit", 50)), decode_cursor(query.get("cursor"))
    )
    return {
        **_one(request, schedule, code),
        "ticks": [schedules.tick_json(tick, schedule.timezone) for tick in ticks],
        "next_cursor": encode_cursor(ticks[-1].id) if more else None,
    }


@view_config(route_name="api.schedule", request_method="PATCH", permission=OPERATE, openapi=True, renderer="json")
def update_schedule(request: Request) -> dict[str, Any]:
    schedule, code = _schedule(request)
    schedules.update_schedule(request.dbsession, schedule, request.openapi_validated.body)
    return _one(request, schedule, code)


@view_config(route_name="api.schedule", request_method="DELETE", permission=OPERATE, openapi=True)
def delete_schedule(request: Request) -> Response:
    schedule, _code = _schedule(request)
    schedules.delete_schedule(request.dbsession, schedule)
    return Response(status=204)
