"""A JSON answer rendered once, as it is sent many times: its bytes, their gzip, and an ETag.

A page polls the same answer every second or two; most polls find it unchanged. With the ETag a
browser revalidates (``If-None-Match``) and gets a 304 without a body; when the answer did change,
it travels gzipped if the client accepts gzip, compressed once when the answer was made rather
than once per request.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from pyramid.request import Request
from pyramid.response import Response

# Private: the answers are behind a token. no-cache: a browser may keep the answer, but asks
# (If-None-Match) before each use, which is what lets a poll cost a 304.
CACHE_CONTROL = "private, no-cache"


@dataclass(frozen=True)
class Representation:
    body: bytes
    gzipped: bytes
    etag: str  # weak: the gzipped and the plain bytes are the same answer

    @classmethod
    def of(cls, document: Any) -> Representation:
        body = json.dumps(document, separators=(",", ":")).encode()
        digest = hashlib.blake2b(body, digest_size=12).hexdigest()
        return cls(body, gzip.compress(body, compresslevel=9, mtime=0), f'W/"{digest}"')


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """Whether an ``If-None-Match`` header names ``etag`` (compared weakly, as that header is), or is ``*``."""
    if not if_none_match:
        return False
    wanted = etag.removeprefix("W/")
    for tag in if_none_match.split(","):
        tag = tag.strip()
        if tag == "*" or tag.removeprefix("W/") == wanted:
            return True
    return False


def accepts_gzip(request: Request) -> bool:
    """Only when the client says so: without Accept-Encoding, plain bytes are the safe choice."""
    return "Accept-Encoding" in request.headers and bool(request.accept_encoding.acceptable_offers(["gzip"]))


def conditional_answer(request: Request, answer: Representation) -> Response:
    """200 with the answer (gzipped if accepted), or 304 if the client has it already."""
    headers = {"ETag": answer.etag, "Vary": "Accept-Encoding", "Cache-Control": CACHE_CONTROL}
    if etag_matches(request.headers.get("If-None-Match"), answer.etag):
        response = Response(status=304, headers=headers)
        del response.content_type  # no body, so nothing to type
        return response
    response = Response(body=answer.body, content_type="application/json", charset=None)
    response.headers.update(headers)  # (given to Response(), headers would replace the Content-Type)
    if accepts_gzip(request):
        # Swapped in after the tweens: the OpenAPI response check (a tween) reads the plain JSON.
        request.add_response_callback(lambda _request, sent: _gzipped(sent, answer))
    return response


def _gzipped(response: Response, answer: Representation) -> None:
    response.body = answer.gzipped
    response.content_encoding = "gzip"
