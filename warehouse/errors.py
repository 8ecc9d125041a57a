"""Errors the API answers with, in its one JSON shape."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """Raise from a view to answer ``status`` with the standard error body."""

    def __init__(self, status: int, code: str, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details


class FieldError(ApiError):
    """Bad input in one named field; ``message`` is a sentence about it, the field its subject
    ("cursor is not one this API gave out"), as every error message reads (warehouse/wording.py)."""

    def __init__(self, field: str, message: str, status: int = 400, code: str = "invalid_field") -> None:
        super().__init__(status, code, message, {"field": field})


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details}}
