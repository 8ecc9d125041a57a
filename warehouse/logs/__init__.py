"""Structured logs: the formatters an ini names, and the request id of every web request.

- ``JsonFormatter`` (production.ini: ``class = warehouse.logs.JsonFormatter``): one JSON object per
  line. ``TextFormatter`` (development.ini): the usual text line, with the context appended.
- The context is what ``structlog.contextvars`` holds: a task's (tasks/logcontext.py) or a web
  request's (``requests``). Code keeps logging through ``logging.getLogger(__name__)``.
- ``config.include("warehouse.logs")`` adds the request id tween.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .formatters import JsonFormatter, TextFormatter

if TYPE_CHECKING:
    from pyramid.config import Configurator

__all__ = ["JsonFormatter", "TextFormatter", "includeme"]

REQUEST_GUARD_TWEEN = "warehouse.request_guard.request_guard_tween_factory"


def includeme(config: Configurator) -> None:
    # Imported here: every command's logging names the formatters above, and needs no Pyramid.
    from pyramid.tweens import INGRESS, MAIN

    # Over the request guard, so that its refusals carry the id too. Pyramid leaves out the names of
    # ``over`` that are not there as long as one is, and MAIN always is: an app without the guard
    # (a test's) still gets the tween.
    config.add_tween("warehouse.logs.requests.request_id_tween_factory", under=INGRESS, over=(REQUEST_GUARD_TWEEN, MAIN))
