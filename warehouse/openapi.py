"""The OpenAPI document: every API request and response is validated against it (pyramid_openapi3)."""

from __future__ import annotations

import json
from pathlib import Path

import swagger_ui_bundle
import yaml
from pyramid.config import Configurator
from pyramid.request import Request
from pyramid.response import Response
from pyramid.security import NO_PERMISSION_REQUIRED
from pyramid.settings import asbool

SPEC_PATH = Path(__file__).with_name("openapi.yaml")


def load_spec() -> dict:
    return yaml.safe_load(SPEC_PATH.read_text())


def validate_response_as_documented(request: Request) -> None:
    """For a view declared ``openapi=False`` (it checks its input itself, faster): have
    pyramid_openapi3 check its response all the same, as ``openapi=True`` would, if the settings say so.
    A HEAD (Pyramid routes it to the GET view) is GET's answer without its body: the document, which
    describes the GET, has nothing to check it against."""
    if request.method == "HEAD":
        return
    request.environ["pyramid_openapi3.enabled"] = True
    request.environ["pyramid_openapi3.validate_response"] = asbool(
        request.registry.settings.get("pyramid_openapi3.enable_response_validation", True)
    )


def includeme(config: Configurator) -> None:
    spec = load_spec()
    config.include("pyramid_openapi3")
    config.pyramid_openapi3_spec(str(SPEC_PATH), route="/api/openapi.yaml", route_name="api.openapi.yaml")
    # The document readable in a browser: Swagger UI, its files from the swagger-ui-bundle package.
    config.add_static_view(name="api/docs/assets", path=str(swagger_ui_bundle.swagger_ui_path))
    config.pyramid_openapi3_add_explorer(
        route="/api/docs", route_name="api.docs", template="warehouse:templates/api_docs.html",
        ui_config={"url": "/api/openapi.json", "layout": "BaseLayout", "tryItOutEnabled": False},
    )
    spec_json = json.dumps(spec, indent=2)

    def openapi_json(request: Request) -> Response:
        return Response(spec_json, content_type="application/json", charset="utf-8")

    config.add_route("api.openapi.json", "/api/openapi.json")
    config.add_view(openapi_json, route_name="api.openapi.json", permission=NO_PERMISSION_REQUIRED)
    config.include(".uploads")
