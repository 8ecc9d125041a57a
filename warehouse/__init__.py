"""warehouse: batch jobs over a warehouse's products and shipments, fanned out to Celery workers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyramid.router import Router

    from .run_status import StatusRepeats


def main(global_config: dict[str, Any], **settings: Any) -> Router | StatusRepeats:
    """The WSGI application (the paste ``app_factory``)."""
    # Imported here, not at the top: every command (warehouse-run, the workers) imports this package,
    # and the web framework's import tree would add a fifth of a second to each start-up.
    from pyramid.config import Configurator

    from . import operations
    from .run_status import serving_repeats
    from .settings import apply_environment

    settings = apply_environment(settings)
    operations.register_from_settings(settings)
    with Configurator(settings=settings) as config:
        config.include(".logs")
        config.include(".request_guard")
        config.include(".security")
        config.include(".models")
        config.include(".dispatch")
        config.include(".openapi")
        config.include(".run_status")
        config.include(".progress_cache")
        config.include(".routes")
        config.include(".metrics.web")
        config.include(".pages")
        config.scan(".views")
    return serving_repeats(config.make_wsgi_app())
