"""``warehouse-seed INI --warehouse CODE --products N --shipments M``: demo data, fast enough for millions.

Rows are generated in Python from a seeded ``random.Random`` and written without ORM objects (one object
per row would cost more than the database does): COPY on PostgreSQL, Core executemany in batches on other
databases (SQLite). Everything goes in one transaction, so a failed seed adds nothing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import time
from collections.abc import Iterable, Iterator, Sequence
from decimal import Decimal
from itertools import islice
from typing import Any

from psycopg import sql
from sqlalchemy import Column, Connection, Engine, Table, insert, select, text

from warehouse.db import make_engine
from warehouse.models import Product, Shipment, Warehouse
from warehouse.settings import load_settings, setup_logging

SKU_PREFIX = "SKU-"
REFERENCE_PREFIX = "SHP-"
NUMBER_DIGITS = 8
INSERT_BATCH_SIZE = 10_000
# The shipping_labels operation covers shipments due from today to today + DUE_WINDOW_DAYS.
DUE_WINDOW_DAYS = 14
NOT_DUE_HORIZON_DAYS = 60

PRODUCT_COLUMNS = ("warehouse_id", "sku", "name", "qty_on_hand", "unit_cost", "reorder_point")
SHIPMENT_COLUMNS = ("warehouse_id", "reference", "ship_to", "weight_grams", "shipping_date")

PRODUCT_ADJECTIVES = ("Compact", "Heavy-duty", "Galvanised", "Stainless", "Insulated", "Folding")
PRODUCT_NOUNS = ("bracket", "hinge", "pallet", "crate", "hose", "valve", "shelf", "cable", "pump", "drill")
STREETS = ("Mill", "Station", "Church", "Harbour", "Orchard", "Victoria", "Oak", "Bridge", "Market")
STREET_KINDS = ("Street", "Road", "Lane", "Avenue", "Way")
CITIES = ("Springfield", "Riverton", "Lakeside", "Fairview", "Kingsport", "Ashford", "Brookfield")

Row = tuple[Any, ...]

EPILOG = f"""\
numbering:
  SKUs ({SKU_PREFIX}00000001, ...) and shipment references ({REFERENCE_PREFIX}00000001, ...)
  continue after the highest such numbers already in the warehouse, so running the
  command again appends more rows. The same --seed gives the same quantities, costs,
  addresses and dates.

shipments:
  --due-fraction of them ship from today to today+{DUE_WINDOW_DAYS} (UTC dates); the others
  ship either in the past {NOT_DUE_HORIZON_DAYS} days or from today+{DUE_WINDOW_DAYS + 1}
  to today+{NOT_DUE_HORIZON_DAYS}. None has a label.
"""


def _count(value: str) -> int:
    number = int(value)
    if number < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {number}")
    return number


def _fraction(value: str) -> float:
    number = float(value)
    if not 0 <= number <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, not {number}")
    return number


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="warehouse-seed",
        description="Add demo products and shipments to a warehouse, creating the warehouse if missing.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("config_uri", metavar="INI", help="the application's ini file, e.g. development.ini")
    parser.add_argument("--warehouse", required=True, metavar="CODE", help="the warehouse's code")
    parser.add_argument("--name", help="the name of a warehouse created now (default: its code)")
    parser.add_argument("--products", type=_count, default=0, metavar="N", help="products to add")
    parser.add_argument("--shipments", type=_count, default=0, metavar="M", help="shipments to add")
    parser.add_argument(
        "--due-fraction",
        type=_fraction,
        default=1 / 3,
        metavar="F",
        help=f"share of the shipments due in the next {DUE_WINDOW_DAYS} days (default: one third)",
    )
    parser.add_argument("--seed", type=int, default=42, help="random seed (default: 42)")
    parser.add_argument(
        "--if-missing",
        action="store_true",
        help="add nothing if the warehouse exists already (so `make run` seeds the demo once)",
    )
    return parser.parse_args(argv)


def numbered(prefix: str, number: int) -> str:
    return f"{prefix}{number:0{NUMBER_DIGITS}d}"


def product_rows(rng: random.Random, warehouse_id: int, numbers: range) -> Iterator[Row]:
    """Rows of PRODUCT_COLUMNS; stock_value and needs_reorder stay NULL until a valuation run."""
    for number in numbers:
        yield (
            warehouse_id,
            numbered(SKU_PREFIX, number),
            f"{rng.choice(PRODUCT_ADJECTIVES)} {rng.choice(PRODUCT_NOUNS)}",
            rng.randint(0, 500),
            Decimal(rng.randint(50, 25_000)).scaleb(-2),  # 0.50 to 250.00, exact cents
            rng.randint(0, 50),
        )


def shipment_rows(
    rng: random.Random, warehouse_id: int, numbers: range, today: dt.date, due_fraction: float
) -> Iterator[Row]:
    """Rows of SHIPMENT_COLUMNS, no label yet."""
    for index, number in enumerate(numbers):
        # Every 1/due_fraction-th row is due, rather than a coin toss per row: the due count is then
        # exactly floor(M * fraction), and every id range (every chunk of a run) holds its share.
        is_due = int((index + 1) * due_fraction) > int(index * due_fraction)
        if is_due:
            days_ahead = rng.randint(0, DUE_WINDOW_DAYS)
        elif rng.random() < 0.5:
            days_ahead = rng.randint(DUE_WINDOW_DAYS + 1, NOT_DUE_HORIZON_DAYS)
        else:
            days_ahead = -rng.randint(1, NOT_DUE_HORIZON_DAYS)
        ship_to = (
            f"{rng.randint(1, 250)} {rng.choice(STREETS)} {rng.choice(STREET_KINDS)}, "
            f"{rng.randint(10_000, 99_999)} {rng.choice(CITIES)}"
        )
        yield (
            warehouse_id,
            numbered(REFERENCE_PREFIX, number),
            ship_to,
            rng.randint(100, 30_000),
            today + dt.timedelta(days=days_ahead),
        )


def ensure_warehouse(connection: Connection, code: str, name: str) -> int:
    """The id of the warehouse ``code``, created with ``name`` if missing; an existing one keeps its name."""
    warehouse_id = connection.scalar(select(Warehouse.id).where(Warehouse.code == code))
    if warehouse_id is None:
        created = connection.execute(insert(Warehouse).values(code=code, name=name))
        warehouse_id = created.inserted_primary_key[0]
    return warehouse_id


def warehouse_exists(engine: Engine, code: str) -> bool:
    with engine.connect() as connection:
        return connection.scalar(select(Warehouse.id).where(Warehouse.code == code)) is not None


def next_numbers(connection: Connection, column: Column, warehouse_id: int, prefix: str, count: int) -> range:
    """The ``count`` numbers after the highest ``prefix`` + digits value of ``column`` in the warehouse."""
    # Zero-padded numbers of one width sort as strings in numeric order, so the highest is the last one
    # in the (warehouse_id, column) unique index. The pattern skips other values such as uploaded SKUs.
    # (SQLAlchemy installs a REGEXP function on SQLite connections, so regexp_match works on both.)
    pattern = f"^{prefix}[0-9]{{{NUMBER_DIGITS}}}$"
    highest = connection.scalar(
        select(column)
        .where(column.table.c.warehouse_id == warehouse_id, column.regexp_match(pattern))
        .order_by(column.desc())
        .limit(1)
    )
    first = int(highest.removeprefix(prefix)) + 1 if highest else 1
    if first + count > 10**NUMBER_DIGITS:
        raise ValueError(f"{prefix} numbers would exceed {NUMBER_DIGITS} digits")
    return range(first, first + count)


def bulk_insert(connection: Connection, table: Table, columns: Sequence[str], rows: Iterable[Row]) -> None:
    """Insert ``rows`` (tuples in ``columns`` order) the fastest way the database offers."""
    if connection.dialect.name == "postgresql":
        _copy_rows(connection, table, columns, rows)
    else:
        _insert_in_batches(connection, table, columns, rows)


def _copy_rows(connection: Connection, table: Table, columns: Sequence[str], rows: Iterable[Row]) -> None:
    # The psycopg connection under this SQLAlchemy Connection: the COPY runs in its transaction.
    psycopg_connection = connection.connection.driver_connection
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table.name), sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    with psycopg_connection.cursor() as cursor, cursor.copy(statement) as copy:
        for row in rows:
            copy.write_row(row)


def _insert_in_batches(
    connection: Connection, table: Table, columns: Sequence[str], rows: Iterable[Row]
) -> None:
    statement = insert(table)
    remaining = iter(rows)
    while batch := [dict(zip(columns, row)) for row in islice(remaining, INSERT_BATCH_SIZE)]:
        connection.execute(statement, batch)


def seed(
    engine: Engine,
    code: str,
    *,
    products: int,
    shipments: int,
    name: str | None = None,
    due_fraction: float = 1 / 3,
    random_seed: int = 42,
) -> None:
    """Add products and shipments to the warehouse ``code`` (created if missing), in one transaction."""
    rng = random.Random(random_seed)
    # UTC, like the runs that read these dates (a run's day is the UTC date it was planned on).
    today = dt.datetime.now(dt.timezone.utc).date()
    product_table, shipment_table = Product.__table__, Shipment.__table__
    with engine.begin() as connection:
        warehouse_id = ensure_warehouse(connection, code, name or code)
        skus = next_numbers(connection, product_table.c.sku, warehouse_id, SKU_PREFIX, products)
        bulk_insert(connection, product_table, PRODUCT_COLUMNS, product_rows(rng, warehouse_id, skus))
        references = next_numbers(
            connection, shipment_table.c.reference, warehouse_id, REFERENCE_PREFIX, shipments
        )
        rows = shipment_rows(rng, warehouse_id, references, today, due_fraction)
        bulk_insert(connection, shipment_table, SHIPMENT_COLUMNS, rows)
    if engine.dialect.name == "postgresql":
        # Fresh statistics, or the planner keeps treating the tables as empty and the first runs'
        # keyset queries pick sequential scans.
        with engine.begin() as connection:
            connection.execute(text("ANALYZE products, shipments"))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.config_uri)
    engine = make_engine(load_settings(args.config_uri))
    started = time.perf_counter()
    if args.if_missing and warehouse_exists(engine, args.warehouse):
        print(f"warehouse-seed: warehouse {args.warehouse!r} exists; nothing added (--if-missing)")
        engine.dispose()
        return 0
    try:
        seed(
            engine,
            args.warehouse,
            products=args.products,
            shipments=args.shipments,
            name=args.name,
            due_fraction=args.due_fraction,
            random_seed=args.seed,
        )
    finally:
        engine.dispose()
    print(
        f"warehouse-seed: added {args.products + args.shipments} rows to warehouse {args.warehouse!r} "
        f"({args.products} products, {args.shipments} shipments) in {time.perf_counter() - started:.1f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
