"""Schema migrations (Alembic), configured from the application's settings rather than an alembic.ini."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection

SCRIPT_LOCATION = "warehouse:migrations"


def alembic_config(settings: Mapping[str, Any], connection: Connection | None = None) -> Config:
    """An Alembic Config for the database in ``settings["sqlalchemy.url"]``.

    With ``connection``, migrations run on that connection (and inside its transaction, if one is open)
    instead of opening their own.
    """
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    # Config options go through configparser interpolation, where "%" starts a reference: a
    # percent-encoded password such as "p%40ss" must be written as "p%%40ss".
    config.set_main_option("sqlalchemy.url", settings["sqlalchemy.url"].replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def upgrade(
    settings: Mapping[str, Any], revision: str = "head", connection: Connection | None = None
) -> None:
    """Migrate the database up to ``revision``; a database already there is left as it is."""
    command.upgrade(alembic_config(settings, connection), revision)
