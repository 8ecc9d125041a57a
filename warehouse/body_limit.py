"""Refuse request bodies over ``warehouse.max_body_bytes`` with 413, before anything reads them.

A full upload of 100,000 rows is about 15 MB of JSON; the default limit (64 MiB) leaves room for
long addresses and names while keeping one request from filling the memory of a web process.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable

from pyramid.config import Configurator
from pyramid.registry import Registry
from pyramid.request import Request
from pyramid.response import Response
from pyramid.tweens import INGRESS

from .errors import error_body

DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024


def max_body_bytes(registry: Registry) -> int:
    return int(registry.settings.get("warehouse.max_body_bytes", DEFAULT_MAX_BODY_BYTES))


def too_large(limit: int) -> Response:
    body = error_body("body_too_large", f"request bodies may be at most {limit} bytes", {"field": "body", "limit_bytes": limit})
    return Response(json.dumps(body), status=413, content_type="application/json", charset="utf-8")


def body_limit_tween_factory(handler: Callable[[Request], Response], registry: Registry) -> Callable[[Request], Response]:
    limit = max_body_bytes(registry)

    def body_limit_tween(request: Request) -> Response:
        length = request.content_length
        if length is not None:
            if length > limit:
                return too_large(limit)
        elif request.environ.get("wsgi.input_terminated"):
            # Chunked: no length up front. Read one byte past the limit to know, and keep what was read.
            data = request.environ["wsgi.input"].read(limit + 1)
            if len(data) > limit:
                return too_large(limit)
            request.environ["wsgi.input"] = io.BytesIO(data)
            request.environ.pop("wsgi.input_terminated")
            request.content_length = len(data)
        return handler(request)

    return body_limit_tween


def includeme(config: Configurator) -> None:
    # Outermost: a refused body never reaches the transaction, the retry policy or a view.
    config.add_tween("warehouse.body_limit.body_limit_tween_factory", under=INGRESS)
