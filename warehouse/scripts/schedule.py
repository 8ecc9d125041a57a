"""``warehouse-schedule INI add CODE OPERATION --cron '0 6 * * *' [--timezone Europe/Dublin] ...``,
``list [CODE]``, ``pause ID``, ``resume ID``, ``delete ID``: schedules from the command line, printed
as JSON, through the same checks as the API (warehouse/schedules/editing.py).

It only writes the schedule: the ticks are fired by the workers (their heartbeat, and beat), or,
under development.ini, by the embedded worker of ``make run``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from warehouse import operations, schedules
from warehouse.db import make_engine, make_session_factory
from warehouse.errors import ApiError
from warehouse.models import Warehouse
from warehouse.settings import load_settings, setup_logging

from .commands import OneLineParser, print_outcome, record_id, whole_number

PROG = "warehouse-schedule"



def number(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value.is_finite():
        raise argparse.ArgumentTypeError(f"{text!r} is not a number")
    return value


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = OneLineParser(
        prog=PROG,
        description="Add, list, pause, resume or delete schedules: runs that start by themselves on a cron. "
        "Prints JSON. Exit status: 0 done, 2 bad input (one line on stderr).",
    )
    parser.add_argument("config_uri", metavar="INI", help="the application's ini file")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=OneLineParser)
    add = commands.add_parser("add", help="add a schedule of OPERATION over warehouse CODE")
    add.add_argument("warehouse", metavar="CODE")
    add.add_argument("operation", metavar="OPERATION")
    add.add_argument("--cron", required=True, help="five fields: minute hour day-of-month month day-of-week, e.g. '0 6 * * *'")
    add.add_argument("--timezone", default="UTC", help="an IANA time zone the cron is read in (default UTC)")
    add.add_argument("--chunk-size", type=whole_number, help="items per chunk (default: warehouse.chunk_size at each tick)")
    add.add_argument("--tolerated-failure-percent", type=number, default=Decimal(0), help="failed items allowed, in %%")
    add.add_argument("--paused", action="store_true", help="add it paused (resume it later)")
    listing = commands.add_parser("list", help="list the schedules (of warehouse CODE), with their recent ticks")
    listing.add_argument("warehouse", metavar="CODE", nargs="?")
    for name, what in (("pause", "pause schedule ID"), ("resume", "resume schedule ID from its next tick"),
                       ("delete", "delete schedule ID and its ticks")):
        commands.add_parser(name, help=what).add_argument("schedule_id", metavar="ID", type=record_id)
    return parser.parse_args(argv)


def _warehouse(session: Session, code: str) -> Warehouse:
    warehouse = session.scalar(select(Warehouse).where(Warehouse.code == code))
    if warehouse is None:
        raise ApiError(404, "warehouse_not_found", f"no warehouse with code {code!r}")
    return warehouse


def _shown(session: Session, pairs: list[tuple[Any, str]]) -> list[dict[str, Any]]:
    recent = schedules.recent_ticks(session, [schedule.id for schedule, _ in pairs])
    return [schedules.schedule_json(schedule, code, recent[schedule.id]) for schedule, code in pairs]


def execute(session: Session, args: argparse.Namespace) -> Any:
    """What the command prints; an ApiError (its message one line) for what it refuses."""
    if args.command == "add":
        warehouse = _warehouse(session, args.warehouse)
        fields: dict[str, Any] = {
            "operation": args.operation, "cron": args.cron, "timezone": args.timezone,
            "tolerated_failure_percent": args.tolerated_failure_percent, "enabled": not args.paused,
        }
        if args.chunk_size is not None:
            fields["chunk_size"] = args.chunk_size
        return _shown(session, [(schedules.create_schedule(session, warehouse, fields), warehouse.code)])[0]
    if args.command == "list":
        warehouse_id = _warehouse(session, args.warehouse).id if args.warehouse else None
        return {"schedules": _shown(session, schedules.list_schedules(session, warehouse_id))}
    schedule, code = schedules.schedule_or_404(session, args.schedule_id)
    if args.command == "delete":
        schedules.delete_schedule(session, schedule)
        return {"deleted": args.schedule_id}
    schedules.update_schedule(session, schedule, {"enabled": args.command == "resume"})
    return _shown(session, [(schedule, code)])[0]


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.config_uri)
    settings = load_settings(args.config_uri)
    operations.register_from_settings(settings)
    session_factory = make_session_factory(make_engine(settings))
    return print_outcome(PROG, session_factory, lambda session: execute(session, args))


if __name__ == "__main__":
    raise SystemExit(main())
