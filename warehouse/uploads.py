"""Bulk uploads (JSON list or CSV), validated against the OpenAPI document's own row schemas.

pyramid_openapi3 validates every other request. For uploads of up to 100,000 rows its validator
(openapi-core) takes about a millisecond per row (it resolves the document's references afresh for
each one: 100 s for a full upload), so these two views validate their bodies here instead: against
the same document's schemas (``ProductUpload``, ``ShipmentUpload``), with the references inlined and
compiled once by fastjsonschema (0.3 s for 100,000 rows). The row schemas use only keywords that
JSON Schema and OpenAPI 3.0 read alike. Responses are still checked by pyramid_openapi3.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import fastjsonschema
from pyramid.request import Request

from . import csvbody, wording
from .errors import ApiError
from .openapi import validate_response_as_documented
from .request_guard import json_body

JSON_MEDIA_TYPE = "application/json"
MAX_MESSAGE_CHARS = 300


def inline_refs(schema: Any, components: Mapping[str, Any]) -> Any:
    """``schema`` with every ``{"$ref": "#/components/schemas/X"}`` replaced by X (the row schemas are
    not recursive), so the validator never resolves a reference per row."""
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
            return inline_refs(components[ref.rsplit("/", 1)[1]], components)
        return {key: inline_refs(value, components) for key, value in schema.items()}
    if isinstance(schema, list):
        return [inline_refs(item, components) for item in schema]
    return schema


def _field(path: list[Any]) -> str:
    dotted = ""
    for part in path:  # list positions read as [3], names as .name: "[3].sku"
        dotted += f"[{part}]" if isinstance(part, int) else (f".{part}" if dotted else str(part))
    return dotted or "body"


class UploadSchema:
    """One upload route's body schema, from the OpenAPI document, compiled to validate rows fast."""

    def __init__(self, spec: Mapping[str, Any], upload_schema: str, row_schema: str) -> None:
        components = spec["components"]["schemas"]
        self.validate = fastjsonschema.compile(inline_refs(components[upload_schema], components))
        self.csv = csvbody.make_deserializer(csvbody.column_types(spec, [row_schema]))

    def rows(self, request: Request) -> list[dict[str, Any]]:
        """The request's rows if every one is valid; else a 400 naming the first row and field at fault."""
        media_type = request.content_type
        if media_type == JSON_MEDIA_TYPE:
            if not request.content_length:
                raise ApiError(400, "malformed_body", "the body is empty: send a JSON list of rows, or CSV", {"field": "body"})
            rows = json_body(request)  # parsed, strictly, by the request guard
        elif media_type == csvbody.MEDIA_TYPE:
            rows = self.csv(request.body)
        else:
            raise ApiError(
                415,
                "unsupported_media_type",
                f"send {JSON_MEDIA_TYPE} or {csvbody.MEDIA_TYPE}, not {media_type or 'no Content-Type'}",
                {"field": "Content-Type"},
            )
        try:
            self.validate(rows)
        except fastjsonschema.JsonSchemaValueException as error:
            raise self._invalid(error, csv=media_type == csvbody.MEDIA_TYPE) from None
        return rows

    @staticmethod
    def _invalid(error: fastjsonschema.JsonSchemaValueException, csv: bool) -> ApiError:
        # path[0] is "data", the body itself; list positions come as digit strings (no property of
        # the row schemas is named with digits).
        path: list[Any] = [int(part) if str(part).isdigit() else part for part in error.path[1:]]
        if error.rule == "required":
            missing = wording.missing_property(error.value, error.rule_definition)
            path += [missing] if missing else []  # name the missing field itself
        field = _field(path)
        message = wording.describe(field, error.rule or "", error.rule_definition, error.definition or {}, error.value)
        details: dict[str, Any] = {"field": field}
        if csv and path and isinstance(path[0], int):
            details["line"] = path[0] + csvbody.FIRST_DATA_LINE  # row [0] is line 2, under the header
        return ApiError(400, "invalid_request", message[:MAX_MESSAGE_CHARS], details)


def includeme(config: Any) -> None:
    """Build the upload schemas once, from the document the rest of the API is validated against."""
    from .openapi import load_spec

    spec = load_spec()
    config.registry["upload_schemas"] = {
        "products": UploadSchema(spec, "ProductUpload", "ProductInput"),
        "shipments": UploadSchema(spec, "ShipmentUpload", "ShipmentInput"),
    }


def validated_rows(request: Request, upload: str) -> list[dict[str, Any]]:
    """The rows of an upload view's body (views declared ``openapi=False``; see the module's doc).

    Marks the request for pyramid_openapi3's response validation, as ``openapi=True`` would."""
    validate_response_as_documented(request)
    return request.registry["upload_schemas"][upload].rows(request)

