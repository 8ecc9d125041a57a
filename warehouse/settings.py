"""Settings read from the ini file, with environment overrides where the ini asks for them.

production.ini sets ``warehouse.environment_overrides = true`` so that every URL and secret can come
from the environment (twelve-factor style); development.ini does not, so a stray ``DATABASE_URL`` in a
developer's shell never points the embedded demo at a real database.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import plaster
from plaster_pastedeploy import Loader
from pyramid.settings import asbool

# setting name -> environment variables, first one set wins
ENVIRONMENT_OVERRIDES: dict[str, tuple[str, ...]] = {
    "sqlalchemy.url": ("DATABASE_URL",),
    "celery.broker_url": ("BROKER_URL", "REDIS_URL"),
    "celery.result_backend": ("RESULT_BACKEND", "REDIS_URL"),
    "warehouse.chunk_size": ("WAREHOUSE_CHUNK_SIZE",),
    "warehouse.carrier_url": ("CARRIER_URL",),
    "warehouse.carrier_max_in_flight": ("CARRIER_MAX_IN_FLIGHT",),
    "warehouse.carrier_limiter_url": ("CARRIER_LIMITER_URL",),
    "warehouse.tokens": ("WAREHOUSE_TOKENS",),
    "warehouse.session_secret": ("WAREHOUSE_SESSION_SECRET",),
    "warehouse.session_secure": ("WAREHOUSE_SESSION_SECURE",),
    "warehouse.metrics_token": ("WAREHOUSE_METRICS_TOKEN",),
    "warehouse.worker_metrics_port": ("WAREHOUSE_WORKER_METRICS_PORT",),
}

DEFAULT_CHUNK_SIZE = 500
MAX_CHUNK_SIZE = 100_000


def apply_environment(settings: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> dict:
    """Return a copy of ``settings`` with environment overrides applied, if the ini enables them."""
    result = dict(settings)
    if not asbool(result.get("warehouse.environment_overrides", False)):
        return result
    environ = os.environ if environ is None else environ
    for setting, variables in ENVIRONMENT_OVERRIDES.items():
        for variable in variables:
            if environ.get(variable):
                result[setting] = environ[variable]
                break
    return result


def chunk_size(settings: Mapping[str, Any]) -> int:
    """The deployment's default items per chunk (``warehouse.chunk_size``), for operations that
    declare none of their own; ``warehouse.operations.default_chunk_size`` says which applies."""
    return _chunk_size_setting(settings, "warehouse.chunk_size") or DEFAULT_CHUNK_SIZE


def operation_chunk_size(settings: Mapping[str, Any], operation: str) -> int | None:
    """``warehouse.chunk_size.<operation>``, if the ini sets it."""
    return _chunk_size_setting(settings, f"warehouse.chunk_size.{operation}")


def _chunk_size_setting(settings: Mapping[str, Any], name: str) -> int | None:
    text = str(settings.get(name, "")).strip()
    if not text:
        return None
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{name} must be a whole number of items, not {text!r}") from None
    if not 1 <= value <= MAX_CHUNK_SIZE:
        raise ValueError(f"{name} must be from 1 to {MAX_CHUNK_SIZE:,}, not {value:,}")
    return value


# pyramid.paster's get_appsettings and setup_logging, without importing it: pyramid.paster imports
# the whole of Pyramid's configurator, a fifth of a second of every command's start-up. And the ini's
# loader is made directly rather than found: plaster finds it by reading the metadata of every
# installed distribution, another quarter of a second each time.


def _ini(config_uri: str) -> plaster.ILoader:
    return Loader(plaster.parse_uri(config_uri))


def load_settings(config_uri: str) -> dict:
    """The ``[app:main]`` settings of an ini file, with environment overrides applied."""
    return apply_environment(_ini(config_uri).get_wsgi_app_settings("main"))


def setup_logging(config_uri: str) -> None:
    """Set up logging from the ini file's logging sections, as ``pserve`` does."""
    _ini(config_uri).setup_logging()
