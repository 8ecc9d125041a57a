"""``warehouse-run INI CODE OPERATION``: start a run and print it as JSON, optionally waiting for it;
``--cancel RUN_ID`` cancels one, ``--redrive RUN_ID`` does an ended run's failed chunks again.

The seed post's management command, as a client of the engine: the work happens in Celery workers
(or, with development.ini, in a worker inside this process), and this command only starts the run
and watches its counters in the ledger.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

from celery import Celery
from pyramid.settings import asbool
from sqlalchemy import select
from sqlalchemy.exc import NoResultFound
from sqlalchemy.orm import Session, sessionmaker
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from tasks.app import make_celery
from tasks.canvas import send_chunks, send_finish, send_start
from tasks.webhooks import send_deliveries
from warehouse import ledger, operations
from warehouse.db import make_engine, make_session_factory, transaction
from warehouse.ledger.retention import retention_policy
from warehouse.models import Run, RunStatus, Warehouse
from warehouse.presenters import TERMINAL_RUN_STATUSES, run_json
from warehouse.settings import MAX_CHUNK_SIZE, load_settings, setup_logging
from warehouse.webhooks.outbox import take_unsent

# How often --wait reads the run: its end is shown at most this long after the ledger records it.
# One primary-key read of one row each time, cheap enough at ten a second for one terminal.
POLL_SECONDS = 0.1


def positive_chunk_size(text: str) -> int:
    value = int(text)
    if not 1 <= value <= MAX_CHUNK_SIZE:
        raise argparse.ArgumentTypeError(f"must be between 1 and {MAX_CHUNK_SIZE}")
    return value


def percent(text: str) -> Decimal:
    value = Decimal(text)
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError("must be between 0 and 100")
    return value


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="warehouse-run",
        description="Start a run of OPERATION over warehouse CODE (or cancel or redrive run RUN_ID) and print it "
        "as JSON. "
        "Exit status: 0 if the run succeeded (or was started, without --wait), 1 if it ended otherwise, "
        "2 for bad arguments.",
    )
    parser.add_argument("config_uri", metavar="INI", help="the application's ini file")
    parser.add_argument("warehouse", metavar="CODE", nargs="?", help="the warehouse's code")
    parser.add_argument("operation", metavar="OPERATION", nargs="?", help=f"one of: {', '.join(operations.names())}")
    parser.add_argument(
        "--cancel", metavar="RUN_ID", type=int, help="cancel run RUN_ID instead of starting one (durable: no chunk starts after it)"
    )
    parser.add_argument(
        "--redrive", metavar="RUN_ID", type=int,
        help="redrive run RUN_ID, which has ended: do its failed chunks (and those a failed run skipped) "
        "again, in the same run",
    )
    parser.add_argument("--chunk-size", type=positive_chunk_size, help="items per chunk (default: the operation's; see warehouse.chunk_size)")
    parser.add_argument(
        "--tolerated-failure-percent", type=percent, default=Decimal(0), help="failed items allowed, in %% (default 0)"
    )
    parser.add_argument("--wait", action="store_true", help="show progress on stderr until the run ends")
    args = parser.parse_args(argv)
    if args.cancel is not None and args.redrive is not None:
        parser.error("--cancel and --redrive cannot be given together")
    for option, run_id in (("--cancel", args.cancel), ("--redrive", args.redrive)):
        if run_id is not None and (args.warehouse or args.operation):
            parser.error(f"{option} RUN_ID takes no CODE or OPERATION")
    if args.cancel is None and args.redrive is None and not (args.warehouse and args.operation):
        parser.error("CODE and OPERATION are required (or --cancel RUN_ID, or --redrive RUN_ID)")
    return args


def fail(message: str) -> int:
    print(f"warehouse-run: error: {message}", file=sys.stderr)
    return 2


def print_json(document: dict[str, Any]) -> None:
    print(json.dumps(document, indent=2))


def wait_for(session_factory, run_id: int) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """Poll the ledger's counters (never the broker) until the run ends, with a progress bar."""
    # Log lines (the embedded worker's, say) are printed above the bar instead of through it.
    with tqdm(total=None, unit="item", file=sys.stderr, dynamic_ncols=True) as bar, logging_redirect_tqdm():
        while True:
            with transaction(session_factory) as session:
                run, code = session.execute(
                    select(Run, Warehouse.code).join(Warehouse).where(Run.id == run_id)
                ).one()
                document = run_json(run, code)
            if run.items_total and bar.total != run.items_total:
                bar.total = run.items_total
            bar.set_postfix_str(f"{run.status}, {run.chunks_done + run.chunks_failed}/{run.chunks_total} chunks")
            bar.update(run.items_done + run.items_failed - bar.n)
            if run.status in TERMINAL_RUN_STATUSES:
                return document
            time.sleep(POLL_SECONDS)


def cancel(settings: dict[str, Any], run_id: int) -> int:
    session_factory = make_session_factory(make_engine(settings))
    try:
        with transaction(session_factory) as session:
            run = ledger.cancel_run(session, run_id)
            code = session.get_one(Warehouse, run.warehouse_id).code
            document = run_json(run, code)
            deliveries = take_unsent(session)
    except NoResultFound:
        return fail(f"no run with id {run_id}")
    except ledger.RunEnded as ended:
        return fail(str(ended))
    if deliveries:  # a pending run, cancelled at once (the workers' chore sends them if this cannot)
        send_deliveries(make_celery(settings), deliveries)
    if run.status == RunStatus.CANCELLING:
        # Ends the run once the running chunks finish, without waiting for queued ones to drain.
        send_finish(make_celery(settings), run_id)
    print_json(document)
    return 0


def redrive(settings: dict[str, Any], run_id: int, wait: bool) -> int:
    session_factory = make_session_factory(make_engine(settings))
    try:
        with transaction(session_factory) as session:
            plan = ledger.prepare_redrive(session, run_id, kept_days=retention_policy(settings).days)
            run = session.get_one(Run, run_id)
            document = run_json(run, session.get_one(Warehouse, run.warehouse_id).code)
    except NoResultFound:
        return fail(f"no run with id {run_id}")
    except ledger.RedriveRefused as refused:
        return fail(str(refused))
    return send_and_follow(settings, session_factory, document, lambda app: send_chunks(app, run_id, plan.chunks), wait)


def send_and_follow(
    settings: dict[str, Any],
    session_factory: sessionmaker[Session],
    document: dict[str, Any],
    send: Callable[[Celery], Any],
    wait: bool,
) -> int:
    """Send the run's work (its transaction has committed); print it, or with ``wait`` follow it to its end."""
    run_id = document["id"]
    celery_app = make_celery(settings)
    if asbool(settings.get("celery.embedded_worker", False)):
        # The in-memory broker lives in this process, so the work does too: start a worker and
        # stay until the run ends, or nobody would ever do it.
        from tasks.embedded import start_embedded_worker

        start_embedded_worker(celery_app, concurrency=int(settings.get("celery.embedded_concurrency", 4)))
        wait = True
    # Sent after the caller's commit, so the worker finds the run. If this fails the run stays in the
    # ledger as it was left (pending, or running with pending chunks) until the sweep or the reconciler
    # sends it.
    send(celery_app)

    if not wait:
        print_json(document)
        return 0
    try:
        document = wait_for(session_factory, run_id)
    except KeyboardInterrupt:
        print(f"\nstopped watching; run {run_id} goes on (GET /api/runs/{run_id})", file=sys.stderr)
        return 1
    print_json(document)
    return 0 if document["status"] == RunStatus.SUCCEEDED else 1


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return start_or_act(argv)
    finally:
        # Everything this short-lived process made is frozen out of the garbage collector, which
        # spared its collection at exit a third of a second (measured; the command's own start-up
        # and end count in the time a user waits for a run, see docs/benchmarks.md). Exit handlers
        # still run and streams are still flushed.
        gc.freeze()


def start_or_act(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.config_uri)
    settings = load_settings(args.config_uri)
    operations.register_from_settings(settings)
    if args.cancel is not None:
        return cancel(settings, args.cancel)
    if args.redrive is not None:
        return redrive(settings, args.redrive, args.wait)
    if args.operation not in operations.names():
        return fail(f"unknown operation {args.operation!r}; known: {', '.join(operations.names())}")

    session_factory = make_session_factory(make_engine(settings))
    with transaction(session_factory) as session:
        warehouse = session.scalar(select(Warehouse).where(Warehouse.code == args.warehouse))
        if warehouse is None:
            return fail(f"no warehouse with code {args.warehouse!r}")
        try:
            run = ledger.create_run(
                session,
                warehouse,
                args.operation,
                chunk_size=args.chunk_size or operations.default_chunk_size(args.operation, settings),
                tolerated_failure_percent=args.tolerated_failure_percent,
            )
        except ledger.ActiveRunExists as exists:
            return fail(f"{exists} (run {exists.run_id})")
        session.flush()
        run_id = run.id
        document = run_json(run, warehouse.code)
    return send_and_follow(settings, session_factory, document, lambda app: send_start(app, run_id), args.wait)


if __name__ == "__main__":
    raise SystemExit(main())
