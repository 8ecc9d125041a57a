"""Formatters an ini's ``[formatter_*]`` section names: JSON lines for machines, plain text for people.

Both add the context bound in ``structlog.contextvars`` (a task's run and chunk, a request's id) to
every stdlib log record: ours, Celery's, SQLAlchemy's, whoever logged it. Nothing calls structlog
to log; the call sites stay ``logging.getLogger(__name__)``, and the context is read when the record
is formatted, which the ini's StreamHandler does in the thread (and so the context) that logged it.

``logging.config.fileConfig`` instantiates a formatter class as ``cls(format, datefmt, style)``
(Python 3.12 adds ``validate`` and ``defaults``), so both take those and build the rest themselves.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

# structlog is imported when the first line is formatted, not when an ini's logging is set up: every
# command sets logging up at start, most write no line, and structlog's import (with rich, where it
# is installed) cost a sixth of a second of each start-up.


def _pre_chain() -> tuple[Any, ...]:
    """The foreign (stdlib) record's fields, then the context: every record gets these, in this order."""
    import structlog
    from structlog.processors import CallsiteParameter

    return (
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        # "message" rather than structlog's "event": what Loki, CloudWatch and people call it.
        structlog.processors.EventRenamer("message"),
        # The pool child's pid and the thread tell two chunks of one node apart when their lines interleave.
        structlog.processors.CallsiteParameterAdder([CallsiteParameter.PROCESS, CallsiteParameter.THREAD_NAME]),
        # ``logger.info(..., extra={"status": 200})`` becomes a field (the access line's status, duration).
        structlog.stdlib.ExtraAdder(),
        structlog.contextvars.merge_contextvars,
    )


def _json_formatter() -> logging.Formatter:
    import structlog

    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_pre_chain(),
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            structlog.processors.StackInfoRenderer(),
            # Values that are not JSON (a Decimal, a date) are written as their repr, never dropped.
            structlog.processors.JSONRenderer(),
        ],
    )


class JsonFormatter(logging.Formatter):
    """One JSON object per line: timestamp (ISO 8601, UTC), level, logger, message, exception (the
    traceback as text, when there is one), process, thread_name, the record's extras and every key
    bound in ``structlog.contextvars``. The ini's ``format`` is ignored: the fields are fixed.

    A structlog ``ProcessorFormatter`` does the work, made when the first line is formatted."""

    def __init__(self, fmt: str | None = None, datefmt: str | None = None, style: str = "%", *_more: Any, **_options: Any) -> None:
        # fileConfig's arguments (and 3.12's validate and defaults) are taken and left unused.
        super().__init__()
        self._lock = threading.Lock()
        self._formatter: logging.Formatter | None = None

    def format(self, record: logging.LogRecord) -> str:
        if self._formatter is None:
            with self._lock:
                if self._formatter is None:
                    self._formatter = _json_formatter()
        return self._formatter.format(record)


class TextFormatter(logging.Formatter):
    """The ini's ``format``, with the bound context appended to the message line as
    ``[end_id=500 run_id=3 start_id=1 ...]`` (before any traceback, which stays below it)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        from structlog.contextvars import get_contextvars

        line = super().formatMessage(record)
        context = get_contextvars()
        if not context:
            return line
        # Sorted: contextvars come back in no particular order, and a reader looks for a key by place.
        return f"{line} [{' '.join(f'{key}={context[key]}' for key in sorted(context))}]"
