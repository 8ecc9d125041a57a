"""The pages people watch: an overview, the runs, each run live, the fleet; sign-in for browsers.

Server-rendered Jinja2 templates (warehouse/templates/pages/) with a little JavaScript of our own
(warehouse/static/) that polls the API's compact endpoints. Nothing is fetched from another origin,
and the Content-Security-Policy says so, so a page cannot be made to run a script it did not ship.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from pyramid.config import Configurator
from pyramid.events import NewResponse
from pyramid.static import QueryStringConstantCacheBuster

from . import formatting

STATIC_DIRECTORY = Path(__file__).resolve().parent.parent / "static"

# name, pattern: the pages' routes (the views are in this package's modules).
PAGE_ROUTES: list[tuple[str, str]] = [
    ("page.overview", "/"),
    ("page.runs", "/runs"),
    ("page.run", "/runs/{id}"),
    ("page.run.action", "/runs/{id}/{action:cancel|resume|redrive}"),
    ("page.workers", "/workers"),
    ("page.login", "/login"),
    ("page.logout", "/logout"),
]

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


def static_version() -> str:
    """A digest of the static files: their URLs change when they do, so they may be cached long."""
    digest = hashlib.sha256()
    for path in sorted(STATIC_DIRECTORY.rglob("*")):
        if path.is_file():
            digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:12]


def _page_headers(event: NewResponse) -> None:
    route = getattr(event.request, "matched_route", None)
    if route is None or not route.name.startswith("page."):
        return
    headers = event.response.headers
    headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "same-origin")
    # Pages show what a signed-in person may see: never kept by a shared cache.
    headers.setdefault("Cache-Control", "no-store")


def includeme(config: Configurator) -> None:
    config.include("pyramid_jinja2")
    config.add_jinja2_renderer(".html")
    config.add_static_view("static", "warehouse:static", cache_max_age=365 * 24 * 3600)
    config.add_cache_buster("warehouse:static/", QueryStringConstantCacheBuster(static_version()))
    for name, pattern in PAGE_ROUTES:
        config.add_route(name, pattern)
    config.add_subscriber(_page_headers, NewResponse)

    def add_filters() -> None:
        config.get_jinja2_environment(".html").filters.update(formatting.FILTERS)

    # After the renderer's own action has made its environment.
    config.action(None, add_filters, order=999)
    config.scan(".")
