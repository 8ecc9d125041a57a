"""Bearer tokens with two roles: ``viewer`` reads, ``operator`` also starts and changes things."""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import Any

from pyramid.authorization import ACLHelper, Allow, Authenticated
from pyramid.config import Configurator
from pyramid.request import Request

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


class BearerTokenSecurityPolicy:
    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self.tokens = [(role, token.encode()) for role, token in tokens]
        self.acl = ACLHelper()

    def identity(self, request: Request) -> Mapping[str, str] | None:
        role = self.role_for(request.headers.get("Authorization", ""))
        return {"role": role} if role else None

    def role_for(self, authorization: str) -> str | None:
        """The role of the token an ``Authorization`` header presents, or None."""
        scheme, _, presented = authorization.partition(" ")
        if scheme.lower() != "bearer" or not presented:
            return None
        presented_bytes = presented.strip().encode()
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

    def remember(self, request: Request, userid: str, **kw: Any) -> list:
        return []

    def forget(self, request: Request, **kw: Any) -> list:
        return []


def includeme(config: Configurator) -> None:
    settings = config.get_settings()
    config.set_security_policy(BearerTokenSecurityPolicy(parse_tokens(settings.get("warehouse.tokens", ""))))
    config.set_root_factory(Root)
