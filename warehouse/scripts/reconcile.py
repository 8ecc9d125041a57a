"""``warehouse-reconcile INI``: find runs whose messages were lost and resume them from the ledger.

Beat runs the same thing every minute (the ``reconcileRuns`` task); this command is for cron, for
an operator, and for tests.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

from tasks.app import make_celery
from tasks.reconcile import reconcile
from warehouse.settings import load_settings, setup_logging


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="warehouse-reconcile", description=__doc__.splitlines()[0])
    parser.add_argument("config_uri", metavar="INI", help="the application's ini file")
    args = parser.parse_args(argv)
    setup_logging(args.config_uri)
    app = make_celery(load_settings(args.config_uri))
    report = reconcile(app, app.warehouse.session_factory, app.warehouse.settings)
    print(json.dumps(report.as_json()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
