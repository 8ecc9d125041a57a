"""What every request must be before any view, validator or transaction sees it.

- Its path decodes as UTF-8 (``/api/warehouses/%FF`` does not, and would crash routing): else 400.
- Its body is at most ``warehouse.max_body_bytes``, chunked ones included: else 413. A full upload of
  100,000 rows is about 15 MB of JSON; the default (64 MiB) leaves room for long addresses while
  keeping one request from filling a web process's memory.
- A JSON body is UTF-8, nested at most a few levels deep (not 10,000), free of NaN and Infinity, and
  names no key twice in one object: else 400. The parsed body is kept for the views that use it
  (``json_body``), so it is parsed once here rather than in each of them.

Answers are in the one error shape, from the outermost tween: a refused request never reaches the
transaction, the retry policy or a view.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from typing import Any

from pyramid.config import Configurator
from pyramid.registry import Registry
from pyramid.request import Request
from pyramid.response import Response
from pyramid.tweens import INGRESS

from .errors import error_body

DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024
JSON_MEDIA_TYPE = "application/json"
PARSED_JSON_KEY = "warehouse.json_body"


class MalformedJson(ValueError):
    pass


def _refuse_constant(name: str) -> Any:
    raise MalformedJson(f"{name} is not a JSON number")


def _refuse_repeated_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document = dict(pairs)
    if len(document) != len(pairs):
        repeated = sorted({key for key, _ in pairs if sum(1 for other, _ in pairs if other == key) > 1})
        raise MalformedJson(f"an object names {', '.join(map(repr, repeated[:3]))} more than once")
    return document


def parse_json(body: bytes) -> Any:
    """The body as JSON, strictly: UTF-8, no NaN/Infinity, no key twice in an object."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise MalformedJson(f"JSON must be UTF-8: byte {error.start} is not") from None
    try:
        return json.loads(text, parse_constant=_refuse_constant, object_pairs_hook=_refuse_repeated_keys)
    except RecursionError:
        raise MalformedJson("JSON nested too deeply") from None
    except json.JSONDecodeError as error:
        raise MalformedJson(f"not JSON: {error.msg} at line {error.lineno} column {error.colno}") from None


def json_body(request: Request) -> Any:
    """The request's JSON body as the guard parsed it."""
    return request.environ[PARSED_JSON_KEY]


def _answer(status: int, code: str, message: str, details: dict[str, Any]) -> Response:
    body = json.dumps(error_body(code, message, details))
    return Response(body, status=status, content_type=JSON_MEDIA_TYPE, charset="utf-8")


def max_body_bytes(registry: Registry) -> int:
    return int(registry.settings.get("warehouse.max_body_bytes", DEFAULT_MAX_BODY_BYTES))


def _read_limited(request: Request, limit: int) -> bool:
    """False if the body is over ``limit``; a chunked body is read (up to limit + 1) to find out."""
    length = request.content_length
    if length is not None:
        return length <= limit
    if not request.environ.get("wsgi.input_terminated"):
        return True
    data = request.environ["wsgi.input"].read(limit + 1)
    if len(data) > limit:
        return False
    request.environ["wsgi.input"] = io.BytesIO(data)
    request.environ.pop("wsgi.input_terminated")
    request.content_length = len(data)
    return True


def request_guard_tween_factory(handler: Callable[[Request], Response], registry: Registry) -> Callable[[Request], Response]:
    limit = max_body_bytes(registry)

    def request_guard_tween(request: Request) -> Response:
        try:
            request.path_info  # noqa: B018 - decoding it is the check
        except UnicodeDecodeError:
            return _answer(400, "malformed_path", "the path is not UTF-8 once percent-decoded", {"field": "path"})
        if not _read_limited(request, limit):
            return _answer(413, "body_too_large", f"request bodies may be at most {limit} bytes", {"field": "body", "limit_bytes": limit})
        if request.content_type == JSON_MEDIA_TYPE and request.content_length:
            try:
                request.environ[PARSED_JSON_KEY] = parse_json(request.body)
            except MalformedJson as error:
                return _answer(400, "malformed_body", f"body: {error}", {"field": "body"})
        return handler(request)

    return request_guard_tween


def includeme(config: Configurator) -> None:
    config.add_tween("warehouse.request_guard.request_guard_tween_factory", under=INGRESS)
