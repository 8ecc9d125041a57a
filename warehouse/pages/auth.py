"""Signing in and out in a browser: ``/login`` takes a token once and starts a session."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from pyramid.httpexceptions import HTTPSeeOther
from pyramid.interfaces import ISecurityPolicy
from pyramid.request import Request
from pyramid.security import NO_PERMISSION_REQUIRED
from pyramid.view import view_config

LOGIN_TEMPLATE = "warehouse:templates/pages/login.html"
DEVELOPMENT_OPERATOR_TOKEN = "dev-operator-token"


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a path of this site, never another site (an open redirect)."""
    if not target:
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


@view_config(route_name="page.login", request_method="GET", renderer=LOGIN_TEMPLATE, permission=NO_PERMISSION_REQUIRED)
def login_form(request: Request) -> dict[str, Any]:
    return {"next": safe_next(request.params.get("next")), "error": None, "signed_in_as": _role(request),
            "development": _has_development_tokens(request)}


# No CSRF token: there is no session yet to hold one (the session cookie is SameSite, so another
# site's form could not carry it anyway), and signing someone in with a token they typed is harmless.
@view_config(route_name="page.login", request_method="POST", renderer=LOGIN_TEMPLATE,
             permission=NO_PERMISSION_REQUIRED, require_csrf=False)
def login(request: Request) -> Any:
    token = (request.POST.get("token") or "").strip()
    next_page = safe_next(request.POST.get("next"))
    policy = request.registry.getUtility(ISecurityPolicy)
    error = None
    if not token:
        error, status = "Enter a token: the viewer or operator token your administrator gave you.", 400
    elif policy.role_of_token(token) is None:
        error, status = "That token is not one this server knows. Check it and try again.", 403
    if error:
        request.response.status_int = status
        return {"next": next_page, "error": error, "signed_in_as": None, "development": _has_development_tokens(request)}
    policy.remember(request, token)
    return HTTPSeeOther(location=next_page)


@view_config(route_name="page.logout", request_method="POST", permission=NO_PERMISSION_REQUIRED, require_csrf=False)
def logout(request: Request) -> HTTPSeeOther:
    # Without a CSRF token too: ending a session is what a person signing out wants, and the worst
    # another site could do with it is sign someone out.
    request.registry.getUtility(ISecurityPolicy).forget(request)
    return HTTPSeeOther(location=request.route_path("page.login"))


def _has_development_tokens(request: Request) -> bool:
    """Whether development.ini's well-known token works here: then the form may say what it is."""
    return request.registry.getUtility(ISecurityPolicy).role_of_token(DEVELOPMENT_OPERATOR_TOKEN) is not None


def _role(request: Request) -> str | None:
    identity = request.identity
    return identity["role"] if identity else None
