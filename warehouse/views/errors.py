"""Every error the API answers has one shape: {"error": {"code", "message", "details"}}."""

from __future__ import annotations

import logging
from typing import Any

from pyramid.exceptions import BadCSRFOrigin, BadCSRFToken
from pyramid.httpexceptions import HTTPException
from pyramid.request import Request
from pyramid.view import exception_view_config, forbidden_view_config, notfound_view_config
from openapi_core.casting.schemas.exceptions import CastError
from openapi_core.deserializing.exceptions import DeserializeError
from openapi_core.validation.request.exceptions import MissingParameterError, MissingRequestBodyError
from pyramid_openapi3.exceptions import RequestValidationError, ResponseValidationError

from .. import wording
from ..errors import ApiError, error_body

logger = logging.getLogger(__name__)

MAX_MESSAGE_CHARS = 300


def _answer(request: Request, status: int, body: dict[str, Any]) -> Any:
    request.response.status_int = status
    return body


@exception_view_config(ApiError, renderer="json")
def api_error(exc: ApiError, request: Request) -> Any:
    return _answer(request, exc.status, error_body(exc.code, exc.message, exc.details))


def _dotted(parts: list[str]) -> str:
    dotted = ""
    for part in parts:  # list positions read as [3], names as .name: "[3].sku"
        dotted += f"[{part}]" if part.isdigit() else (f".{part}" if dotted else part)
    return dotted


def _plain(error: Any, parent: str | None) -> dict[str, Any]:
    """One schema error as ``{"field", "message"}``, the message in words (warehouse/wording.py)."""
    if isinstance(error, MissingParameterError):
        return {"field": error.name, "message": f"the {error.location} parameter {error.name} is required"}
    if isinstance(error, MissingRequestBodyError):
        return {"field": "body", "message": "the body is empty: send a JSON object"}
    cause = getattr(error, "__cause__", None)
    name = getattr(error, "name", None) or parent
    if isinstance(cause, CastError):
        return {"field": name or "body", "message": f"{name or 'body'} must be {wording.kind(cause.type)}"}
    if isinstance(cause, DeserializeError) or isinstance(error, DeserializeError):
        return {"field": name or "body", "message": f"{name or 'the body'} could not be read: send JSON"}
    rule = getattr(error, "validator", None)
    path = [str(part) for part in getattr(error, "absolute_path", None) or []]
    if rule is None:  # nothing a person can act on beyond the field: say that much
        field = _dotted(([parent] if parent else []) + path) or "body"
        return {"field": field, "message": f"{field} is not valid"}
    if rule == "required":
        missing = wording.missing_property(error.instance, error.validator_value)
        path += [missing] if missing else []
    field = _dotted(([parent] if parent else []) + path) or "body"
    return {"field": field, "message": wording.describe(field, rule, error.validator_value, error.schema, error.instance)}


def _flatten(errors: list[Any], parent: str | None = None) -> list[dict[str, Any]]:
    flat: list[dict[str, Any]] = []
    for error in errors:
        cause = getattr(error, "__cause__", None)
        schema_errors = getattr(cause, "schema_errors", None) or getattr(error, "schema_errors", None)
        if schema_errors:
            flat += _flatten(list(schema_errors), getattr(error, "name", None) or parent)
            continue
        item = _plain(error, parent)
        item["message"] = item["message"][:MAX_MESSAGE_CHARS]
        flat.append(item)
    return flat


@exception_view_config(RequestValidationError, renderer="json")
def request_invalid(exc: RequestValidationError, request: Request) -> Any:
    errors = _flatten(list(exc.errors))
    summary = "; ".join(item["message"] for item in errors[:5])
    code = "malformed_body" if any("could not be read" in item["message"] for item in errors) else "invalid_request"
    details = {"field": errors[0]["field"] if errors else None, "errors": errors}
    return _answer(request, 400, error_body(code, summary or "the request is not valid", details))


@exception_view_config(ResponseValidationError, renderer="json")
def response_invalid(exc: ResponseValidationError, request: Request) -> Any:
    logger.error("response to %s %s broke the OpenAPI document: %s", request.method, request.path, exc)
    return _answer(request, 500, error_body("internal_error", "the server produced an invalid response"))


@forbidden_view_config(renderer="json")
def forbidden(exc: HTTPException, request: Request) -> Any:
    if request.identity is None:
        request.response.headers["WWW-Authenticate"] = 'Bearer realm="warehouse"'
        given = "no" if not request.headers.get("Authorization") else "an unknown"
        return _answer(request, 401, error_body(
            "unauthorized", f"the Authorization header carries {given} token: send 'Authorization: Bearer TOKEN'",
            {"field": "Authorization"}))
    role = request.identity["role"]
    if request.identity.get("by") == "session":
        return _answer(request, 403, error_body(
            "forbidden", f"this session was started with a {role}'s token, and a {role} may not do this",
            {"field": "session", "role": role}))
    return _answer(request, 403, error_body(
        "forbidden", f"the token in the Authorization header is a {role}'s, and a {role} may not do this",
        {"field": "Authorization", "role": role}))


# Pyramid answers a missing CSRF token with 400; it is a refusal to act for whoever sent the request.
@exception_view_config(BadCSRFToken, renderer="json")
@exception_view_config(BadCSRFOrigin, renderer="json")
def csrf_refused(exc: HTTPException, request: Request) -> Any:
    return _answer(request, 403, error_body(
        "csrf_token_missing",
        "a request that relies on the session cookie must carry the session's CSRF token in the X-CSRF-Token "
        "header (or a csrf_token form field); nothing was done",
        {"field": "X-CSRF-Token"}))


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
