"""The start-a-run form, read and checked the way the API checks its JSON, in words for people."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Mapping

from ..settings import MAX_CHUNK_SIZE


class FormError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class StartRunForm:
    warehouse: str
    operation: str
    chunk_size: int | None
    tolerated_failure_percent: Decimal


def read_start_run(form: Mapping[str, Any]) -> StartRunForm:
    warehouse = (form.get("warehouse") or "").strip()
    if not warehouse:
        raise FormError("warehouse", "Choose a warehouse.")
    operation = (form.get("operation") or "").strip()
    if not operation:
        raise FormError("operation", "Choose an operation.")
    return StartRunForm(warehouse, operation, _chunk_size(form.get("chunk_size")), _percent(form.get("tolerated_failure_percent")))


def _chunk_size(text: str | None) -> int | None:
    text = (text or "").strip().replace(",", "").replace("_", "")
    if not text:
        return None  # the server's default
    # ASCII digits, and few enough that int() is quick (it refuses past 4,300 digits anyway).
    if not (text.isascii() and text.isdigit() and len(text) <= 7) or not 1 <= int(text) <= MAX_CHUNK_SIZE:
        raise FormError("chunk_size", f"Chunk size must be a whole number from 1 to {MAX_CHUNK_SIZE:,}, or empty for the default.")
    return int(text)


def _percent(text: str | None) -> Decimal:
    text = (text or "").strip().rstrip("%").strip()
    if not text:
        return Decimal(0)
    try:
        value = Decimal(text)
    except InvalidOperation:
        value = None
    if value is None or not value.is_finite() or not 0 <= value <= 100 or value != round(value, 2):
        raise FormError("tolerated_failure_percent",
                        "Tolerated failures must be a percentage from 0 to 100, with at most two decimals.")
    return value
