"""Opaque cursors for keyset pagination: clients pass back what they were given, nothing else."""

from __future__ import annotations

import base64
import binascii
import re

from .errors import FieldError

ID = re.compile(r"^[0-9]{1,19}$")
MAX_ID = 2**63 - 1


def encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"after:{last_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int | None:
    """The id the previous page ended at; None for the first page."""
    if not cursor:
        return None
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        prefix, _, value = text.partition(":")
        # ASCII digits only (str.isdigit() takes other scripts' too), and an id a BIGINT can hold.
        if prefix != "after" or not ID.match(value) or int(value) > MAX_ID:
            raise ValueError(text)
        return int(value)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise FieldError("cursor", "cursor is not one this API gave out: pass next_cursor from the previous page as it came") from None
