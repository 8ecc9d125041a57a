"""Which errors are worth retrying; how long to wait is ``warehouse.backoff``'s business."""

from __future__ import annotations

import kombu.exceptions
import redis.exceptions
import sqlalchemy.exc

# Errors that say "not now" rather than "never": the database restarting, a deadlock or lock
# timeout, the broker or Redis going away. Anything else is a bug or bad data, and retrying it
# only delays the failure report.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.TimeoutError,
    kombu.exceptions.OperationalError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    ConnectionError,
    TimeoutError,
)


def is_transient(error: BaseException) -> bool:
    if isinstance(error, sqlalchemy.exc.DBAPIError) and error.connection_invalidated:
        return True
    return isinstance(error, TRANSIENT_ERRORS)
