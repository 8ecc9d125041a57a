"""Engine and session factory, shared by the web app, the Celery workers and the scripts."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, engine_from_config, event
from sqlalchemy.orm import Session, sessionmaker


def make_engine(settings: Mapping[str, Any], prefix: str = "sqlalchemy.") -> Engine:
    engine = engine_from_config(settings, prefix)
    if engine.dialect.name == "sqlite":
        _configure_sqlite(engine)
    return engine


def _configure_sqlite(engine: Engine) -> None:
    """Make SQLite behave under the embedded worker's threads.

    pysqlite opens transactions lazily and upgrades a reader to a writer later, which fails at once
    with "database is locked" when another thread wrote in between. Taking the write lock at BEGIN
    (BEGIN IMMEDIATE) makes every transaction queue on the busy timeout instead, so transactions
    must stay short: chunk tasks claim in one and work in another, and an operation that waits on
    the network does so before it first touches its session (sessions begin lazily).
    This is SQLAlchemy's documented recipe for pysqlite transactions.
    """

    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection, _record):  # type: ignore[no-untyped-def]
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(connection):  # type: ignore[no-untyped-def]
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def transaction(session_factory: sessionmaker[Session]) -> Iterator[Session]:
    """One session and one transaction: committed if the block returns, rolled back if it raises."""
    with session_factory() as session, session.begin():
        yield session
