"""One pooled database connection for the whole of a chunk task: its claim, then its work.

Every chunk pays its round trips to the database, 2,000 times per million products at chunk 500, so
they are counted (docs/benchmarks.md): checking a connection out of the pool costs a liveness check
(``pool_pre_ping``) each time, and a transaction costs a BEGIN and a COMMIT around its statements.
A task takes one connection for both of its steps, and on PostgreSQL runs a step that is a single
statement (the common claim) in autocommit, where the statement is its own transaction: one round
trip instead of three, with the same atomicity and durability.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.orm import Session

T = TypeVar("T")


class OneConnection:
    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    @property
    def runs_single_statements_alone(self) -> bool:
        # SQLite's transactions are begun by our own BEGIN IMMEDIATE (warehouse/db.py), which
        # autocommit would leave open: there every step stays a transaction.
        return self.connection.dialect.name == "postgresql"

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session whose transaction commits when the block returns, rolls back if it raises."""
        # A session on a connection outside any transaction begins its own and commits it.
        with Session(bind=self.connection, expire_on_commit=False) as session, session.begin():
            yield session

    def alone(self, statement: Callable[[Connection], T]) -> T:
        """``statement(connection)``, which must run exactly one statement, in autocommit."""
        connection = self.connection.execution_options(isolation_level="AUTOCOMMIT")
        # If the statement raises, its error goes up as it is: the connection goes back to the pool,
        # which resets its isolation level (or discards it, if it broke).
        result = statement(connection)
        # Ends SQLAlchemy's own bookkeeping of the autobegun transaction (no round trip in
        # autocommit), so that the next step may set the isolation level back and begin.
        connection.commit()
        connection.execution_options(isolation_level=connection.default_isolation_level)
        return result


@contextmanager
def one_connection(engine: Engine) -> Iterator[OneConnection]:
    with engine.connect() as connection:
        yield OneConnection(connection)
