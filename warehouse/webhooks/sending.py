"""One signed POST of one delivery to one checked address.

The body is the Standard Webhooks envelope, ``{"type", "timestamp", "data"}``, signed with the
``standardwebhooks`` library under the headers ``webhook-id``, ``webhook-timestamp`` and
``webhook-signature``. The connection goes to the address ``addresses.check_url`` checked, with the
URL's host in the Host header and in TLS (SNI and the certificate check), so nothing resolves the
name again between the check and the send. Redirects are never followed (a 3xx is a failed attempt:
following one would reach an address nobody checked) and at most 64 KiB of an answer is read.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import dataclass
from typing import Any

import urllib3
from standardwebhooks import Webhook

from .addresses import Target

MAX_ANSWER_BYTES = 64 * 1024
USER_AGENT = "warehouse-webhooks/1"


@dataclass(frozen=True)
class Answer:
    """What one attempt came to: the status code (None if there was no answer), an error in words."""

    status_code: int | None
    error: str | None
    duration_ms: int

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def envelope(event_type: str, event_time: str, data: Any) -> str:
    """The body every attempt of a delivery sends, byte for byte."""
    return json.dumps({"type": event_type, "timestamp": event_time, "data": data}, separators=(",", ":"))


def signed_headers(secret: str, msg_id: str, body: str, now: dt.datetime | None = None) -> dict[str, str]:
    """The Standard Webhooks headers for ``body``, signed at ``now``."""
    moment = now or dt.datetime.now(dt.timezone.utc)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(moment.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, moment, body),
        "content-type": "application/json",
        "user-agent": USER_AGENT,
    }


def _pool(target: Target, timeout: float) -> urllib3.HTTPConnectionPool:
    options: dict[str, Any] = {"timeout": urllib3.Timeout(total=timeout), "retries": False, "maxsize": 1}
    if target.scheme == "https":
        return urllib3.HTTPSConnectionPool(
            target.address, target.port, server_hostname=target.hostname, assert_hostname=target.hostname,
            cert_reqs="CERT_REQUIRED", **options,
        )
    return urllib3.HTTPConnectionPool(target.address, target.port, **options)


def post(target: Target, body: str, headers: dict[str, str], timeout: float) -> Answer:
    """POST ``body`` to ``target``; never raises for what the network or the receiver does."""
    started = time.monotonic()
    pool = _pool(target, timeout)
    try:
        response = pool.urlopen(
            "POST", target.path, body=body.encode(), headers={**headers, "host": target.host_header},
            redirect=False, retries=False, preload_content=False, assert_same_host=False,
        )
        try:
            response.read(MAX_ANSWER_BYTES)  # the answer's start only: a receiver cannot make us read more
        finally:
            response.release_conn()
        status: int | None = response.status
        error = None if 200 <= response.status < 300 else f"the receiver answered {response.status}"
    except urllib3.exceptions.TimeoutError:
        status, error = None, f"no answer within {timeout:g} s"
    except urllib3.exceptions.HTTPError as failure:
        status, error = None, f"could not deliver: {_reason(failure)}"
    finally:
        pool.close()
    return Answer(status, error, int((time.monotonic() - started) * 1000))


def _reason(failure: Exception) -> str:
    reason = getattr(failure, "reason", None) or failure
    return f"{type(reason).__name__}: {reason}"[:500]
