"""Browser sessions: a signed, HttpOnly, SameSite cookie that stands for a token a person typed once.

The cookie holds no token, only an HMAC of it under the session secret: whoever reads a cookie learns
nothing to present elsewhere, and a token taken out of ``warehouse.tokens`` ends every session it
started, at the next request. Pages and the API both accept the session; anything but a GET, HEAD or
OPTIONS that relies on it needs Pyramid's CSRF token as well (``csrf_token`` form field or
``X-CSRF-Token`` header), so another site cannot make a signed-in browser act.
"""

from __future__ import annotations

import hashlib
import hmac

from pyramid.config import Configurator
from pyramid.request import Request
from pyramid.session import SignedCookieSessionFactory
from pyramid.settings import asbool

COOKIE_NAME = "warehouse_session"
# What the session keeps of the token it was started with (see token_fingerprint).
TOKEN_KEY = "token"
DEFAULT_TIMEOUT_SECONDS = 8 * 60 * 60


def session_secret(settings: dict) -> bytes:
    """``warehouse.session_secret`` if set; else one derived from the tokens.

    Derived, so that every web process of a deployment agrees on it with nothing more to configure,
    and so that a new set of tokens ends the sessions of the old. No one holding only some of the
    tokens can compute it.
    """
    configured = (settings.get("warehouse.session_secret") or "").strip()
    if configured:
        return configured.encode()
    tokens = " ".join(sorted((settings.get("warehouse.tokens") or "").split()))
    return hmac.new(b"warehouse session secret", tokens.encode(), hashlib.sha256).hexdigest().encode()


def token_fingerprint(secret: bytes, token: bytes) -> str:
    return hmac.new(secret, b"session:" + token, hashlib.sha256).hexdigest()


def relies_on_session(request: Request) -> bool:
    """Whether the request is authenticated by the cookie: it has one and presents no token.

    The CSRF check applies to these only: an API client that sends a bearer token sends no cookie
    a third party could ride on, and a request with neither is answered 401 as it always was.
    """
    return "Authorization" not in request.headers and COOKIE_NAME in request.cookies


def includeme(config: Configurator) -> None:
    settings = config.get_settings()
    timeout = int(settings.get("warehouse.session_timeout_seconds", DEFAULT_TIMEOUT_SECONDS))
    config.set_session_factory(
        SignedCookieSessionFactory(
            session_secret(settings),
            cookie_name=COOKIE_NAME,
            httponly=True,
            samesite="Lax",
            # Browsers send a Secure cookie over HTTPS only: production.ini sets it, development serves http.
            secure=asbool(settings.get("warehouse.session_secure", False)),
            timeout=timeout,
            # Re-signed at most every tenth of the timeout, so a page that polls does not set a cookie
            # on every answer, and a session in use does not expire under its viewer.
            reissue_time=max(timeout // 10, 1),
            hashalg="sha512",
        )
    )
    config.set_default_csrf_options(require_csrf=True, callback=relies_on_session)
