"""``warehouse-webhooks INI add URL --events run.succeeded,run.failed [--warehouse CODE]``, ``list``,
``delete ID``, ``deliveries ID``: webhook subscriptions from the command line, printed as JSON,
through the same checks as the API (warehouse/webhooks/subscriptions.py).

``add`` prints the signing secret, this once. Deliveries are sent by the workers (or, under
development.ini, by the embedded worker of ``make run``).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session

from warehouse.db import make_engine, make_session_factory
from warehouse.settings import load_settings, setup_logging
from warehouse.webhooks import subscriptions

from .commands import OneLineParser, print_outcome, record_id

PROG = "warehouse-webhooks"
MAX_DELIVERIES = 500



def event_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = OneLineParser(
        prog=PROG,
        description="Subscribe URLs to runs' changes of status, list and delete subscriptions, show a "
        "subscription's deliveries. Prints JSON. Exit status: 0 done, 2 bad input (one line on stderr).",
    )
    parser.add_argument("config_uri", metavar="INI", help="the application's ini file")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=OneLineParser)
    add = commands.add_parser("add", help="subscribe URL; prints the signing secret, this once")
    add.add_argument("url", metavar="URL")
    add.add_argument("--events", required=True, type=event_list,
                     help="comma-separated: run.started, run.succeeded, run.partially_failed, run.failed, run.cancelled")
    add.add_argument("--warehouse", metavar="CODE", help="only this warehouse's runs (default every warehouse's)")
    commands.add_parser("list", help="list the subscriptions (without their secrets)")
    commands.add_parser("delete", help="delete subscription ID").add_argument("webhook_id", metavar="ID", type=record_id)
    deliveries = commands.add_parser("deliveries", help="subscription ID's deliveries, newest first, with their attempts")
    deliveries.add_argument("webhook_id", metavar="ID", type=record_id)
    deliveries.add_argument("--limit", type=record_id, default=50, help=f"at most this many (up to {MAX_DELIVERIES})")
    return parser.parse_args(argv)


def execute(session: Session, args: argparse.Namespace, settings: dict[str, Any]) -> Any:
    """What the command prints; an ApiError (its message one line) for what it refuses."""
    if args.command == "add":
        fields: dict[str, Any] = {"url": args.url, "events": args.events}
        if args.warehouse is not None:
            fields["warehouse"] = args.warehouse
        subscription, code = subscriptions.create_subscription(session, fields, settings)
        return subscriptions.subscription_json(subscription, code, with_secret=True)
    if args.command == "list":
        return {"webhooks": [subscriptions.subscription_json(each, code) for each, code in subscriptions.list_subscriptions(session)]}
    if args.command == "delete":
        subscriptions.delete_subscription(session, args.webhook_id)
        return {"deleted": args.webhook_id}
    subscription = subscriptions.subscription_or_404(session, args.webhook_id)
    page, _ = subscriptions.deliveries_page(session, subscription.id, min(args.limit, MAX_DELIVERIES), None)
    return {"deliveries": [subscriptions.delivery_json(*row) for row in page]}


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.config_uri)
    settings = load_settings(args.config_uri)
    session_factory = make_session_factory(make_engine(settings))
    return print_outcome(PROG, session_factory, lambda session: execute(session, args, settings))


if __name__ == "__main__":
    raise SystemExit(main())
