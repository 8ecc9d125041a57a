"""The carrier client's transport over an ``httpx.Client``, so that tests can drive the client through
httpx's in-process transports (``WSGITransport`` to the stub app, ``MockTransport`` for scripted answers)."""

from __future__ import annotations

from collections.abc import Mapping

import httpx

from warehouse.carrier.client import HttpResponse, TransportFailure


class HttpxTransport:
    def __init__(self, client: httpx.Client) -> None:
        self.client = client

    def post(self, url: str, headers: Mapping[str, str], body: bytes) -> HttpResponse:
        try:
            response = self.client.post(url, headers=dict(headers), content=body)
        except httpx.TransportError as error:  # timeouts included
            raise TransportFailure(f"{type(error).__name__}: {error}") from error
        return HttpResponse(response.status_code, response.headers, response.content)
