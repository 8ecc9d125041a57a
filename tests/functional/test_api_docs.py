"""/api/docs: the OpenAPI document in Swagger UI, every file of it served by the app itself (no CDN).
An HTTP test: the page, each file it names, and the document it reads. (A browser drives it once the
live pages' browser harness exists.)"""

from __future__ import annotations

import json
import re

from webtest import TestApp


def test_the_explorer_page_loads_its_files_and_the_document_from_the_app(testapp: TestApp) -> None:
    page = testapp.get("/api/docs", status=200)  # no token: the document is public
    assert page.content_type == "text/html"
    names = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert names, page.text
    assert all(name.startswith("/") and not name.startswith("//") for name in names), names  # nothing from elsewhere
    assert "http" not in "".join(names)
    kinds = {testapp.get(name, status=200).content_type for name in names}
    assert {"text/css", "text/javascript"} <= kinds
    config = json.loads(re.search(r"const uiConfig = (\{.*?\});", page.text).group(1))
    document = testapp.get(config["url"], status=200)
    assert document.json["openapi"].startswith("3.") and "/api/runs/{id}" in document.json["paths"]


def test_a_file_the_explorer_does_not_have_is_404_in_the_one_error_shape(testapp: TestApp) -> None:
    response = testapp.get("/api/docs/assets/nothing-here.js", status=404)
    assert set(response.json) == {"error"}
