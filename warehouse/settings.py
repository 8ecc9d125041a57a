"""Settings read from the ini file, with environment overrides where the ini asks for them.

production.ini sets ``warehouse.environment_overrides = true`` so that every URL and secret can come
from the environment (twelve-factor style); development.ini does not, so a stray ``DATABASE_URL`` in a
developer's shell never points the embedded demo at a real database.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from pyramid.paster import get_appsettings
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
    return int(settings.get("warehouse.chunk_size", DEFAULT_CHUNK_SIZE))


def load_settings(config_uri: str) -> dict:
    """The ``[app:main]`` settings of an ini file, with environment overrides applied."""
    return apply_environment(get_appsettings(config_uri, name="main"))
