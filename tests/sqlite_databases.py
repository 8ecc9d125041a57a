"""A SQLite database of a test module's own, migrated to head, for tests that look at every row there
is (the reconciler, the sweep) and so must not share the session's database."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from warehouse.db import make_engine, make_session_factory
from warehouse.migrate import upgrade


@contextmanager
def own_sqlite_database(path: Path, make_settings: Callable[..., dict[str, Any]]) -> Iterator[sessionmaker[Session]]:
    """A session factory on a new SQLite file at ``path`` (embedded-mode settings), migrated to head."""
    settings = make_settings(path)
    upgrade(settings)
    engine = make_engine(settings)
    try:
        yield make_session_factory(engine)
    finally:
        engine.dispose()
