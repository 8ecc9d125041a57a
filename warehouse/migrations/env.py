"""Alembic environment for warehouse.

There is no alembic.ini: ``warehouse.migrate.alembic_config`` builds the Config in code from the
application's settings. Callers that already hold a Connection (tests, scripts sharing a transaction)
pass it in ``config.attributes["connection"]``; otherwise ``sqlalchemy.url`` names the database.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, Engine, create_engine, event, make_url, pool

from warehouse.models import Base

config = context.config
target_metadata = Base.metadata


def _make_sqlite_ddl_transactional(engine: Engine) -> None:
    """Run a migration inside one real SQLite transaction, DDL included.

    pysqlite never opens a transaction before CREATE/ALTER/DROP, so a migration that fails half-way
    would leave half a schema behind and no version stamp to show for it. Taking over BEGIN (the
    pysqlite recipe from the SQLAlchemy docs) makes it all or nothing. Unlike the application's engine,
    this one leaves foreign key enforcement off: batch migrations recreate tables, and with it on,
    dropping the old table would cascade deletes into the tables that refer to it.
    """

    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection, _record):  # type: ignore[no-untyped-def]
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def on_begin(connection):  # type: ignore[no-untyped-def]
        connection.exec_driver_sql("BEGIN")


def _run_migrations(connection: Connection, **options: object) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things; batch mode recreates the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        **options,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run_migrations(connection)
        return

    engine = create_engine(config.get_main_option("sqlalchemy.url"), poolclass=pool.NullPool)
    options = {}
    if engine.dialect.name == "sqlite":
        _make_sqlite_ddl_transactional(engine)
        options["transactional_ddl"] = True
    try:
        with engine.connect() as connection:
            _run_migrations(connection, **options)
    finally:
        engine.dispose()


def run_migrations_offline() -> None:
    """Write the migration SQL instead of running it (``alembic upgrade --sql``)."""
    url = config.get_main_option("sqlalchemy.url")
    context.configure(
        url=url,
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=make_url(url).get_backend_name() == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
