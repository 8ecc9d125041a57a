"""CSV request bodies, read into the same list of row objects a JSON body holds.

Registered with pyramid_openapi3 as the ``text/csv`` deserializer, so a CSV upload is then validated
against exactly the schema a JSON upload is (one validator, no second set of rules): a bad row is
reported with its index and field as for JSON, and the error view adds the line of the file.

Cells are typed by column name from the document's input schemas: digits become integers in integer
columns, decimals become numbers in number columns; anything else stays a string, and the schema then
says which row and field is wrong. An empty cell is a missing value (the field's default, or an error
if the field is required).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Mapping
from typing import Any

from .errors import ApiError

MEDIA_TYPE = "text/csv"
# ASCII digits only: int() and Decimal() also take "1_000", " 5" and other scripts' digits.
INTEGER = re.compile(r"^[+-]?[0-9]{1,19}$")
NUMBER = re.compile(r"^[+-]?[0-9]{1,19}(\.[0-9]{1,19})?$")

# The first line of data is line 2 of the file (after the header).
FIRST_DATA_LINE = 2


class CsvError(ApiError):
    """The body is not a CSV file this API can read: 400, saying where and why.

    Not a ValueError on purpose: openapi-core would turn that into "failed to deserialize <the whole
    body>"; this one reaches the error view as it is."""

    def __init__(self, message: str, line: int | None = None) -> None:
        details: dict[str, Any] = {"field": "body"}
        if line is not None:
            details["line"] = line
        super().__init__(400, "malformed_csv", message, details)


def column_types(spec: Mapping[str, Any], schema_names: list[str]) -> dict[str, str]:
    """Column name -> JSON type, from the properties of the named component schemas."""
    types: dict[str, str] = {}
    for name in schema_names:
        for column, schema in spec["components"]["schemas"][name]["properties"].items():
            kind = schema.get("type", "string")
            if types.setdefault(column, kind) != kind:
                raise ValueError(f"column {column!r} has two types in the OpenAPI document")
    return types


def _typed(value: str, kind: str) -> Any:
    if kind == "integer" and INTEGER.match(value):
        return int(value)
    if kind == "number" and NUMBER.match(value):
        return float(value) if "." in value else int(value)
    return value


# What a spreadsheet may have used instead of commas (a European locale's Excel uses semicolons).
OTHER_SEPARATORS = {";": "';'", "\t": "tabs", "|": "'|'"}


def _refuse_other_separators(columns: list[str]) -> None:
    if len(columns) == 1:
        for separator, name in OTHER_SEPARATORS.items():
            if separator in columns[0]:
                raise CsvError(f"the CSV looks separated by {name}: use commas", 1)


def make_deserializer(types: Mapping[str, str]):  # type: ignore[no-untyped-def]
    def deserialize(body: str | bytes) -> list[dict[str, Any]]:
        if isinstance(body, bytes):
            try:
                body = body.decode("utf-8-sig")
            except UnicodeDecodeError as error:
                raise CsvError(f"CSV must be UTF-8: byte {error.start} is not") from None
        reader = csv.reader(io.StringIO(body, newline=""), strict=True)
        try:
            header = next(reader, None)
            if not header or not any(cell.strip() for cell in header):
                raise CsvError("CSV needs a header line naming its columns")
            columns = [cell.strip() for cell in header]
            repeated = sorted({column for column in columns if columns.count(column) > 1})
            if repeated:
                raise CsvError(f"CSV header names {', '.join(map(repr, repeated))} more than once")
            if "" in columns:
                raise CsvError(f"CSV header column {columns.index('') + 1} has no name")
            _refuse_other_separators(columns)
            unknown = [column for column in columns if column not in types]
            if unknown:
                raise CsvError(f"unknown column {unknown[0]!r} (expected: {', '.join(types)})", 1)
            rows = []
            for cells in reader:
                if not cells:  # a blank line
                    continue
                if len(cells) != len(columns):
                    raise CsvError(f"CSV line {reader.line_num}: {len(cells)} cells for {len(columns)} columns", reader.line_num)
                rows.append(
                    {column: _typed(cell, types.get(column, "string")) for column, cell in zip(columns, cells) if cell != ""}
                )
        except csv.Error as error:
            raise CsvError(f"CSV line {reader.line_num}: {error}", reader.line_num) from None
        return rows

    return deserialize
