"""Log lines as an ini's handler would write them, for tests to read: every record that reaches the
root logger, formatted by the formatter given (``warehouse.logs.JsonFormatter`` or ``TextFormatter``)
in the thread that logged it, as the ini's StreamHandler does."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]


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


def run_with_ini(script: str, ini: str) -> subprocess.CompletedProcess[str]:
    """``script`` run by a Python of its own with the repository's ``ini`` as its argument: for what
    must not happen in the tests' process (fileConfig replaces every handler, pytest's too)."""
    done = subprocess.run(
        [sys.executable, "-c", script, str(REPO_ROOT / ini)], cwd=REPO_ROOT, capture_output=True, text=True,
        timeout=60, check=False,
    )
    assert done.returncode == 0, done.stderr
    return done
