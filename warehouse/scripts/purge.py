"""``warehouse-purge INI [--dry-run]``: remove the chunk rows and item failures of runs that ended more
than ``warehouse.retain_run_details_days`` ago, and print what went as JSON.

Beat does the same every hour (``purgeRunDetails``), a minute at a time; this goes on until nothing is
due, in the same short transactions. For cron where there is no beat (the embedded default), for a
first purge of a large backlog, and with ``--dry-run`` to see which runs would lose what, changing
nothing.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from tasks.retention import purge_run_details
from warehouse.db import make_engine, make_session_factory, transaction
from warehouse.ledger import utcnow
from warehouse.ledger.retention import RetentionPolicy, retention_policy, runs_due
from warehouse.presenters import isoformat
from warehouse.scripts.commands import OneLineParser
from warehouse.settings import load_settings, setup_logging

PROG = "warehouse-purge"


def dry_run(session_factory: sessionmaker[Session], policy: RetentionPolicy) -> dict[str, Any]:
    cutoff = policy.cutoff(utcnow())
    with transaction(session_factory) as session:
        due = runs_due(session, cutoff)
    return {
        "retain_run_details_days": policy.days,
        "ended_before": isoformat(cutoff),
        "runs": [
            {
                "id": run.run_id,
                "warehouse": run.warehouse,
                "operation": run.operation,
                "status": run.status,
                "finished_at": isoformat(run.finished_at),
                "details_purged_at": isoformat(run.details_purged_at),  # set: a purge cut short
                "chunks": run.chunks,
                "item_failures": run.item_failures,
            }
            for run in due
        ],
        "chunks": sum(run.chunks for run in due),
        "item_failures": sum(run.item_failures for run in due),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = OneLineParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("config_uri", metavar="INI", help="the application's ini file")
    parser.add_argument("--dry-run", action="store_true", help="print the runs that would lose their details, and delete nothing")
    args = parser.parse_args(argv)
    setup_logging(args.config_uri)
    settings = load_settings(args.config_uri)
    try:
        policy = retention_policy(settings)
    except ValueError as nonsense:
        print(f"{PROG}: error: {nonsense}", file=sys.stderr)
        return 2
    engine = make_engine(settings)
    try:
        session_factory = make_session_factory(engine)
        if args.dry_run:
            document = dry_run(session_factory, policy)
        else:
            document = purge_run_details(session_factory, policy, budget_seconds=None).as_json()
    finally:
        engine.dispose()
    print(json.dumps(document, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
