"""Engine and session factory, shared by the web app, the Celery workers and the scripts."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, engine_from_config, event, make_url
from sqlalchemy.orm import Session, sessionmaker


def make_engine(settings: Mapping[str, Any], prefix: str = "sqlalchemy.", for_workers: bool = False) -> Engine:
    """The engine for ``settings``; ``for_workers``: the timeouts that keep a frozen worker from holding
    locks (see ``postgresql_options``)."""
    extra: dict[str, Any] = {}
    if make_url(settings[f"{prefix}url"]).get_backend_name() == "postgresql":
        extra["connect_args"] = postgresql_connect_args(settings, for_workers)
    engine = engine_from_config(settings, prefix, **extra)
    if engine.dialect.name == "sqlite":
        _configure_sqlite(engine)
    return engine


def _seconds(settings: Mapping[str, Any], name: str, default: float) -> float:
    return float(settings.get(f"warehouse.{name}", default))


def postgresql_connect_args(settings: Mapping[str, Any], for_workers: bool) -> dict[str, Any]:
    """libpq parameters so that a lost peer is noticed in seconds, not in the hours TCP takes by default.

    Both ends send TCP keepalives: the client notices a server (or a network) gone away, and the
    server notices a node gone away and ends its session, releasing what it held. ``tcp_user_timeout``
    fails a connection whose sent data goes unacknowledged (a cut cable) within the same bound.

    Worker processes also get two server-side timeouts, which matter for a node that freezes (a
    paused VM, SIGSTOP) while keeping its connections up, where keepalives see nothing wrong:
    ``idle_in_transaction_session_timeout`` ends a session that sits inside a transaction without
    sending a statement, so a frozen worker's row locks (its chunk, its run's counters, the rows it
    was updating) are released within seconds, and ``lock_timeout`` bounds any statement's wait for a
    lock, turning it into an error the task retries. A worker never waits inside a transaction (the
    carrier is called before the writes begin), so neither fires on a healthy one.
    """
    keepalive_idle = int(_seconds(settings, "db_keepalive_idle_seconds", 10))
    keepalive_interval = int(_seconds(settings, "db_keepalive_interval_seconds", 5))
    keepalive_count = int(settings.get("warehouse.db_keepalive_count", 3))
    server = {
        "tcp_keepalives_idle": keepalive_idle,
        "tcp_keepalives_interval": keepalive_interval,
        "tcp_keepalives_count": keepalive_count,
    }
    if for_workers:
        server["idle_in_transaction_session_timeout"] = int(
            _seconds(settings, "worker_idle_in_transaction_timeout_seconds", 5) * 1000
        )
        server["lock_timeout"] = int(_seconds(settings, "worker_lock_timeout_seconds", 10) * 1000)
    return {
        "keepalives": 1,
        "keepalives_idle": keepalive_idle,
        "keepalives_interval": keepalive_interval,
        "keepalives_count": keepalive_count,
        "tcp_user_timeout": int(_seconds(settings, "db_tcp_user_timeout_seconds", 20) * 1000),
        "connect_timeout": int(_seconds(settings, "db_connect_timeout_seconds", 5)),
        "options": " ".join(f"-c {name}={value}" for name, value in server.items()),
    }


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
