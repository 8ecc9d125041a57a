"""Every error the API answers has one shape: {"error": {"code", "message", "details"}}."""

from __future__ import annotations

import logging
from typing import Any

from pyramid.httpexceptions import HTTPException
from pyramid.request import Request
from pyramid.view import exception_view_config, forbidden_view_config, notfound_view_config
from pyramid_openapi3.exceptions import RequestValidationError, ResponseValidationError

from ..errors import ApiError, error_body

logger = logging.getLogger(__name__)

MAX_MESSAGE_CHARS = 300


def _answer(request: Request, status: int, body: dict[str, Any]) -> Any:
    request.response.status_int = status
    return body


@exception_view_config(ApiError, renderer="json")
def api_error(exc: ApiError, request: Request) -> Any:
    return _answer(request, exc.status, error_body(exc.code, exc.message, exc.details))


def _field_of(error: Any, parent: str | None = None) -> str | None:
    """The dotted path of the field a jsonschema / openapi-core error is about."""
    path = [str(part) for part in getattr(error, "absolute_path", getattr(error, "path", [])) or []]
    if getattr(error, "validator", None) == "required":
        # jsonschema reports a missing property on the parent object: name the property itself.
        missing = str(error.message).split("'")[1] if "'" in str(error.message) else None
        if missing:
            path.append(missing)
    name = getattr(error, "name", None)
    if not path and name:
        path = [str(name)]
    parts = ([parent] if parent else []) + path
    dotted = ""
    for part in parts:  # list positions read as [3], names as .name: "[3].sku"
        dotted += f"[{part}]" if part.isdigit() else (f".{part}" if dotted else part)
    return dotted or None


def _flatten(errors: list[Any], parent: str | None = None) -> list[dict[str, Any]]:
    flat: list[dict[str, Any]] = []
    for error in errors:
        cause = getattr(error, "__cause__", None)
        schema_errors = getattr(cause, "schema_errors", None) or getattr(error, "schema_errors", None)
        if schema_errors:
            flat += _flatten(list(schema_errors), getattr(error, "name", None) or parent)
            continue
        message = str(cause) if cause is not None else str(getattr(error, "message", error))
        # Some messages quote the value, which may be a whole upload: keep the answer small.
        if len(message) > MAX_MESSAGE_CHARS:
            message = message[:MAX_MESSAGE_CHARS] + "…"
        flat.append({"field": _field_of(error, parent) or "body", "message": message})
    return flat


@exception_view_config(RequestValidationError, renderer="json")
def request_invalid(exc: RequestValidationError, request: Request) -> Any:
    errors = _flatten(list(exc.errors))
    summary = "; ".join(f"{item['field']}: {item['message']}" for item in errors[:5])
    code = "malformed_body" if any("Failed to deserialize" in item["message"] for item in errors) else "invalid_request"
    details = {"field": errors[0]["field"] if errors else None, "errors": errors}
    return _answer(request, 400, error_body(code, summary or "request is not valid", details))


@exception_view_config(ResponseValidationError, renderer="json")
def response_invalid(exc: ResponseValidationError, request: Request) -> Any:
    logger.error("response to %s %s broke the OpenAPI document: %s", request.method, request.path, exc)
    return _answer(request, 500, error_body("internal_error", "the server produced an invalid response"))


@forbidden_view_config(renderer="json")
def forbidden(exc: HTTPException, request: Request) -> Any:
    if request.identity is None:
        request.response.headers["WWW-Authenticate"] = 'Bearer realm="warehouse"'
        return _answer(request, 401, error_body("unauthorized", "a valid 'Authorization: Bearer TOKEN' is required"))
    return _answer(request, 403, error_body("forbidden", "this token's role may not do that"))


@notfound_view_config(renderer="json")
def not_found(exc: HTTPException, request: Request) -> Any:
    return _answer(request, 404, error_body("not_found", f"no such resource: {request.path}"))


@exception_view_config(Exception, renderer="json")
def unexpected(exc: Exception, request: Request) -> Any:
    # A bug: logged with its traceback, answered in the one shape, with nothing of its inner workings.
    logger.error("%s %s failed", request.method, request.path, exc_info=exc)
    return _answer(request, 500, error_body("internal_error", "the server failed to answer this request"))


@exception_view_config(HTTPException, renderer="json")
def http_error(exc: HTTPException, request: Request) -> Any:
    code = exc.title.lower().replace(" ", "_")
    return _answer(request, exc.code or 500, error_body(code, exc.detail or exc.explanation or exc.title))
