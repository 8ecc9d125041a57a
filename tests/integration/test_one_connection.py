"""tasks/connections.py on PostgreSQL: a chunk task's steps over one pooled connection; a single statement
run alone in autocommit (psycopg then sends no BEGIN and no COMMIT: one round trip) and committed by
itself; a transaction after it on the same connection that still commits or rolls back as a whole."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import ProgrammingError

from tasks.connections import one_connection


@pytest.fixture
def table(engine: Engine) -> Iterator[str]:
    with engine.begin() as setup:
        setup.execute(text("CREATE TABLE test_one_connection (n int)"))
    yield "test_one_connection"
    with engine.begin() as teardown:
        teardown.execute(text("DROP TABLE test_one_connection"))


def test_a_statement_alone_is_its_own_transaction_and_a_transaction_after_it_is_one(engine: Engine, table: str) -> None:
    seen: dict[str, object] = {}

    def insert_alone(connection: Connection) -> None:
        dbapi = connection.connection.dbapi_connection
        seen["autocommit"] = dbapi.autocommit
        connection.execute(text(f"INSERT INTO {table} VALUES (1)"))
        seen["after"] = dbapi.info.transaction_status

    with one_connection(engine) as db:
        assert db.runs_single_statements_alone
        db.alone(insert_alone)
        dbapi = db.connection.connection.dbapi_connection
        assert dbapi.autocommit is False  # back to transactions for the steps that follow
        with pytest.raises(RuntimeError), db.transaction() as session:
            session.execute(text(f"INSERT INTO {table} VALUES (2)"))
            raise RuntimeError("the work failed")
        with db.transaction() as session:
            session.execute(text(f"INSERT INTO {table} VALUES (3)"))
    with engine.connect() as check:
        rows = sorted(check.execute(text(f"SELECT n FROM {table}")).scalars())

    # Autocommit: no transaction was opened around the statement, nor left open after it.
    assert seen == {"autocommit": True, "after": psycopg.pq.TransactionStatus.IDLE}
    # The statement alone stayed; the failed transaction was rolled back; the one after it committed.
    assert rows == [1, 3]


def test_a_statement_alone_that_fails_raises_its_own_error(engine: Engine) -> None:
    with one_connection(engine) as db, pytest.raises(ProgrammingError, match="no_such_table"):
        db.alone(lambda connection: connection.execute(text("SELECT * FROM no_such_table")))
