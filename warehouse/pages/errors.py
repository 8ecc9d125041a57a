"""What a page answers when it cannot show itself: the sign-in form, or a page that says why.

The API's error views (warehouse/views/errors.py) answer JSON; these are chosen instead for the paths
of pages (their ``path_info`` predicate makes them the more specific match).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from pyramid.exceptions import BadCSRFOrigin, BadCSRFToken
from pyramid.httpexceptions import HTTPException, HTTPSeeOther
from pyramid.request import Request
from pyramid.view import exception_view_config, forbidden_view_config, notfound_view_config

# Every path but the API's, the static files' and /metrics (Prometheus reads its errors as JSON, as the API's).
PAGE_PATHS = r"^/(?!api(/|$)|static/|metrics$)"
ERROR_TEMPLATE = "warehouse:templates/pages/error.html"


def _page(request: Request, status: int, title: str, message: str) -> dict[str, Any]:
    request.response.status_int = status
    return {"title": title, "message": message}


@forbidden_view_config(path_info=PAGE_PATHS, renderer=ERROR_TEMPLATE)
def page_forbidden(exc: HTTPException, request: Request) -> Any:
    if request.identity is None:
        # A GET comes back to where it was after sign-in; a form sent without a session cannot be
        # replayed, so it comes back to the page it was sent from.
        target = request.path_qs if request.method in ("GET", "HEAD") else "/"
        return HTTPSeeOther(location=request.route_path("page.login") + "?" + urlencode({"next": target}))
    role = request.identity["role"]
    return _page(request, 403, "Operators only",
                 f"You are signed in as a {role}, and a {role} may look but not act. Sign in with an operator token to do this.")


@notfound_view_config(path_info=PAGE_PATHS, renderer=ERROR_TEMPLATE)
def page_not_found(exc: HTTPException, request: Request) -> Any:
    detail = exc.detail if isinstance(exc.detail, str) and exc.detail else f"There is no page at {request.path}."
    return _page(request, 404, "Not found", detail)


@exception_view_config(BadCSRFToken, path_info=PAGE_PATHS, renderer=ERROR_TEMPLATE)
@exception_view_config(BadCSRFOrigin, path_info=PAGE_PATHS, renderer=ERROR_TEMPLATE)
def page_csrf_refused(exc: HTTPException, request: Request) -> Any:
    return _page(request, 403, "Form refused",
                 "This form came without the page's security token, so nothing was done. Go back, reload the page and try again.")
