"""``Idempotency-Key`` on POSTs: a client that retries (a timeout, a dropped connection) gets the first
answer again instead of starting a second run.

The key's row is inserted at the start of the request, in the request's transaction, and the answer
is written to it at the end: both commit with the request's effects or not at all. A concurrent
request with the same key waits on the first one's row (its unique index) and then replays its
answer. The same key with another method, path or body is refused with 422. An error answer is not
kept (its transaction is rolled back), so a retry after a 409 or a 503 is tried afresh.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import re
from collections.abc import Callable
from typing import Any

from pyramid.request import Request
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from .errors import ApiError, FieldError
from .models import IdempotencyKey
from .request_guard import PARSED_JSON_KEY

HEADER = "Idempotency-Key"
KEY_PATTERN = re.compile(r"^[\x21-\x7e]{1,200}$")  # printable ASCII, no spaces
DEFAULT_KEEP_HOURS = 24

View = Callable[[Request], dict[str, Any]]


def fingerprint(request: Request) -> str:
    """What makes two requests the same request: method, path, and body (JSON compared as data)."""
    if PARSED_JSON_KEY in request.environ:
        body = json.dumps(request.environ[PARSED_JSON_KEY], sort_keys=True, separators=(",", ":")).encode()
    else:
        body = request.body
    digest = hashlib.sha256()
    for part in (request.method.encode(), request.path.encode(), body):
        digest.update(len(part).to_bytes(8, "big") + part)
    return digest.hexdigest()


def _keep_for(request: Request) -> dt.timedelta:
    return dt.timedelta(hours=float(request.registry.settings.get("warehouse.idempotency_key_hours", DEFAULT_KEEP_HOURS)))


def _find(request: Request, key: str) -> IdempotencyKey | None:
    return request.dbsession.scalar(select(IdempotencyKey).where(IdempotencyKey.key == key))


def _replay(request: Request, record: IdempotencyKey, request_hash: str) -> dict[str, Any]:
    if record.request_hash != request_hash:
        raise ApiError(
            422,
            "idempotency_key_reused",
            f"{HEADER} {record.key!r} was used for a different request",
            {"field": HEADER},
        )
    if record.status_code is None:  # only if the first request is still being answered
        raise ApiError(409, "idempotency_key_in_use", f"a request with {HEADER} {record.key!r} is in progress", {"field": HEADER})
    request.response.status_int = record.status_code
    if record.location:
        request.response.location = record.location
    request.response.headers["Idempotent-Replayed"] = "true"
    return record.response_body


def idempotent(view: View) -> View:
    """Wrap a POST view so that a repeated ``Idempotency-Key`` replays the first answer."""

    @functools.wraps(view)
    def wrapper(request: Request) -> dict[str, Any]:
        key = request.headers.get(HEADER)
        if key is None:
            return view(request)
        if not KEY_PATTERN.match(key):
            raise FieldError(HEADER, f"{HEADER} must be 1 to 200 printable ASCII characters without spaces")
        request_hash = fingerprint(request)
        session = request.dbsession
        now = dt.datetime.now(dt.timezone.utc)
        session.execute(delete(IdempotencyKey).where(IdempotencyKey.created_at < now - _keep_for(request)))
        record = _find(request, key)
        if record is not None:
            return _replay(request, record, request_hash)
        record = IdempotencyKey(key=key, request_hash=request_hash, created_at=now)
        try:
            with session.begin_nested():
                session.add(record)
        except IntegrityError:
            # A concurrent request with this key committed first: answer as it did.
            record = _find(request, key)
            if record is None:
                raise
            return _replay(request, record, request_hash)
        body = view(request)
        record.status_code = request.response.status_int
        record.response_body = body
        record.location = request.response.location
        return body

    return wrapper
