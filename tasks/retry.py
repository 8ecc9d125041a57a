"""Which errors are worth retrying, and how long to wait before the next attempt."""

from __future__ import annotations

import random

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


def backoff_seconds(retries: int, factor: float = 2, maximum: float = 120) -> float:
    """Exponential backoff with "equal jitter": half of ``factor * 2**retries`` (capped), plus a
    random part up to the other half.

    The fixed half keeps five retries from all landing within the first second, as full jitter can,
    which would spend them before a restarting database is back; the random half spreads the herd.
    """
    step = min(maximum, factor * 2**retries)
    return step / 2 + random.uniform(0, step / 2)
