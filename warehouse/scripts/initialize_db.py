"""``initialize_warehouse_db INI``: create the schema, or migrate it to the latest revision.

Safe to run on every start: it is ``alembic upgrade head``, which does nothing on an up-to-date database.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import make_url

from warehouse.migrate import upgrade
from warehouse.settings import load_settings, setup_logging


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="initialize_warehouse_db",
        description="Create or migrate the warehouse database schema (Alembic upgrade head).",
    )
    parser.add_argument("config_uri", metavar="INI", help="the application's ini file, e.g. development.ini")
    return parser.parse_args(argv)


def ensure_sqlite_directory(url: str) -> None:
    """Create the directory of a SQLite database file: SQLite creates the file, but not its directory."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return
    database = parsed.database
    # In-memory databases and "file:" URIs (uri=true) name no plain path to create.
    if not database or database == ":memory:" or parsed.query.get("uri") or database.startswith("file:"):
        return
    Path(database).parent.mkdir(parents=True, exist_ok=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.config_uri)
    settings = load_settings(args.config_uri)
    ensure_sqlite_directory(settings["sqlalchemy.url"])
    upgrade(settings)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
