"""Log lines as an ini's handler would write them, for tests to read: every record that reaches the
root logger, formatted by the formatter given (``warehouse.logs.JsonFormatter`` or ``TextFormatter``)
in the thread that logged it, as the ini's StreamHandler does."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class CapturedLines:
    def __init__(self) -> None:
        self.stream = io.StringIO()

    def text(self) -> str:
        return self.stream.getvalue()

    def lines(self) -> list[str]:
        return self.text().splitlines()

    def json(self) -> list[dict[str, Any]]:
        """Every line parsed as JSON: fails on the first that is not."""
        return [json.loads(line) for line in self.lines()]


@contextmanager
def captured_lines(formatter: logging.Formatter, level: int = logging.DEBUG) -> Iterator[CapturedLines]:
    """Lines formatted with ``formatter`` while the block runs, with the root logger at ``level``
    (loggers with a level of their own, ``celery`` say, keep it)."""
    captured = CapturedLines()
    handler = logging.StreamHandler(captured.stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    level_before = root.level
    root.addHandler(handler)
    root.setLevel(level)
    try:
        yield captured
    finally:
        root.removeHandler(handler)
        root.setLevel(level_before)
