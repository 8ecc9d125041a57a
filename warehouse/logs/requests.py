"""Request ids: every line a web request logs carries one, and every answer says which it was.

The id is the client's ``X-Request-ID`` when that is a sane value (what a proxy or a caller's
tracing puts there: visible ASCII, at most 128 characters), else a new one: a hostile header can
neither forge a line's fields nor make lines long. It is bound as ``request_id`` (with the method and
path) in ``structlog.contextvars`` for the request's duration, ``request.request_id`` to views, and
sent back as ``X-Request-ID`` on every answer, errors and pages included.

The tween is the outermost but for Pyramid's own: over the request guard, whose refusals (400, 413)
get the header too, and over the exception views, whose answers it sees as the client gets them.
Waitress and Granian run each request in a thread of theirs and one after another in that thread,
so the tween clears the context when the request starts and when it ends: no field of one request
is ever on another's lines.

One access line per request, at INFO on ``warehouse.access``: method, route name, status, duration.
Never the query string (a value in it may be anything, a token pasted by mistake included), nor
any header but this one: the Authorization header and cookies hold tokens and sessions. The status
repeats answered in front of the router (warehouse/run_status.py) send the header back too, but
write no line: they are the polls, hundreds a second, and made cheap on purpose.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

import structlog
from pyramid.registry import Registry
from pyramid.request import Request
from pyramid.response import Response

REQUEST_ID_HEADER = "X-Request-ID"
REQUEST_ID_ENVIRON_KEY = "HTTP_X_REQUEST_ID"
_SANE_REQUEST_ID = re.compile(r"[\x21-\x7e]{1,128}")
# Longer paths are a scanner's or an attacker's: the start says enough.
MAX_LOGGED_PATH = 256
# The characters a path keeps unquoted in a line (RFC 3986's path characters): any other byte,
# newlines and control characters included, is written percent-encoded.
_PATH_SAFE = "/:@!$&'()*+,;=-._~"

access_logger = logging.getLogger("warehouse.access")


def request_id_from(sent: str | None) -> str:
    """``sent`` if it is a sane request id, else a new one (32 hex digits)."""
    if sent and _SANE_REQUEST_ID.fullmatch(sent):
        return sent
    return uuid.uuid4().hex


def request_id_header(environ: Mapping[str, Any]) -> tuple[str, str]:
    """The ``X-Request-ID`` header of an answer made in front of Pyramid (warehouse/run_status.py)."""
    return (REQUEST_ID_HEADER, request_id_from(environ.get(REQUEST_ID_ENVIRON_KEY)))


def logged_path(environ: Mapping[str, Any]) -> str:
    """The request's path as a line may show it: percent-encoded, without the query string, cut
    short. Read from the environ, not ``request.path``, which raises on a path that is not UTF-8
    (the request guard, under this tween, refuses those with a 400 that is logged too)."""
    raw = f"{environ.get('SCRIPT_NAME', '')}{environ.get('PATH_INFO', '')}"
    path = quote(raw.encode("latin-1", "replace"), safe=_PATH_SAFE)  # WSGI strings are bytes as latin-1
    return path if len(path) <= MAX_LOGGED_PATH else f"{path[:MAX_LOGGED_PATH]}..."


def request_id_tween_factory(handler: Callable[[Request], Response], registry: Registry) -> Callable[[Request], Response]:
    def request_id_tween(request: Request) -> Response:
        request_id = request_id_from(request.environ.get(REQUEST_ID_ENVIRON_KEY))
        request.request_id = request_id
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id, method=request.method, path=logged_path(request.environ))
        started = time.perf_counter()
        status = 500  # unless an answer comes back: what the server sends when an exception escapes
        try:
            response = handler(request)
            response.headers[REQUEST_ID_HEADER] = request_id
            status = response.status_code
            return response
        finally:
            _log_access(request, status, started)
            structlog.contextvars.clear_contextvars()

    return request_id_tween


def _log_access(request: Request, status: int, started: float) -> None:
    duration_ms = round((time.perf_counter() - started) * 1000, 1)
    route = request.matched_route.name if request.matched_route is not None else None
    access_logger.info(
        "%s %s %s in %.1f ms", request.method, route or "(no route)", status, duration_ms,
        extra={"route": route, "status": status, "duration_ms": duration_ms},
    )
