"""Tokens with two roles: ``viewer`` reads, ``operator`` also starts and changes things.

An API client presents its token on every request (``Authorization: Bearer TOKEN``); a browser presents
it once, at ``/login``, and then a session cookie that stands for it (warehouse/sessions.py).
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import Any

from pyramid.authorization import ACLHelper, Allow, Authenticated
from pyramid.config import Configurator
from pyramid.request import Request

from . import sessions

VIEW = "view"
OPERATE = "operate"
ROLES = ("viewer", "operator")


class Root:
    """The single context of every API route: who may do what."""

    __acl__ = [
        (Allow, "role:viewer", VIEW),
        (Allow, "role:operator", (VIEW, OPERATE)),
    ]

    def __init__(self, request: Request) -> None:
        self.request = request


def parse_tokens(value: str) -> list[tuple[str, str]]:
    """``"operator:abc viewer:def"`` → ``[("operator", "abc"), ("viewer", "def")]``."""
    pairs = []
    for item in value.split():
        role, sep, token = item.partition(":")
        if not sep or role not in ROLES or not token:
            raise ValueError(f"warehouse.tokens: expected role:token with role in {ROLES}, got {item.split(':')[0]!r}:…")
        pairs.append((role, token))
    return pairs


class TokenSecurityPolicy:
    """Who is asking: the token of the ``Authorization`` header or, without one, of the session."""

    def __init__(self, tokens: list[tuple[str, str]], session_secret: bytes = b"") -> None:
        self.tokens = [(role, token.encode()) for role, token in tokens]
        self.session_secret = session_secret
        self.fingerprints = {sessions.token_fingerprint(session_secret, token): role for role, token in self.tokens}
        self.acl = ACLHelper()

    def identity(self, request: Request) -> Mapping[str, str] | None:
        authorization = request.headers.get("Authorization")
        if authorization is not None:  # a header decides alone: a wrong token is not rescued by a cookie
            role = self.role_for(authorization)
            return {"role": role, "by": "token"} if role else None
        if sessions.COOKIE_NAME not in request.cookies:
            return None
        role = self.fingerprints.get(request.session.get(sessions.TOKEN_KEY, ""))
        return {"role": role, "by": "session"} if role else None

    def role_for(self, authorization: str) -> str | None:
        """The role of the token an ``Authorization`` header presents, or None."""
        scheme, _, presented = authorization.partition(" ")
        if scheme.lower() != "bearer" or not presented:
            return None
        return self.role_of_token(presented.strip())

    def role_of_token(self, presented: str) -> str | None:
        """The role of a token as a person typed it, or None."""
        presented_bytes = presented.encode()
        role_found = None
        # Compare against every token in constant time, without stopping at the first match,
        # so timing says nothing about which token (or how much of one) was right.
        for role, token in self.tokens:
            if hmac.compare_digest(presented_bytes, token) and role_found is None:
                role_found = role
        return role_found

    def roles_permitted(self, permission: str) -> set[str]:
        """The roles whose tokens the ACL grants ``permission`` (on the one context, Root)."""
        return {role for role in ROLES
                if self.acl.permits(Root, ["system.Everyone", Authenticated, f"role:{role}"], permission)}

    def authenticated_userid(self, request: Request) -> str | None:
        identity = request.identity
        return identity["role"] if identity else None

    def permits(self, request: Request, context: Any, permission: str):  # type: ignore[no-untyped-def]
        principals = ["system.Everyone"]
        identity = request.identity
        if identity:
            principals += [Authenticated, f"role:{identity['role']}"]
        return self.acl.permits(context, principals, permission)

    def remember(self, request: Request, token: str, **kw: Any) -> list:
        """Start a session for ``token`` (already checked with role_of_token)."""
        # A new session, not the one the browser came with: a session id planted before sign-in
        # must not become a signed-in one.
        request.session.invalidate()
        request.session[sessions.TOKEN_KEY] = sessions.token_fingerprint(self.session_secret, token.encode())
        request.session.new_csrf_token()
        return []

    def forget(self, request: Request, **kw: Any) -> list:
        request.session.invalidate()
        return []


def includeme(config: Configurator) -> None:
    settings = config.get_settings()
    config.include(sessions)
    config.set_security_policy(
        TokenSecurityPolicy(parse_tokens(settings.get("warehouse.tokens", "")), sessions.session_secret(settings))
    )
    config.set_root_factory(Root)
