"""The pages and browser sessions through WebTest: sign-in, redirects, CSRF, forms, what each role sees.

The browser tests (tests/integration/browser/) drive the same pages in Chromium; these check what
can be checked without one, much faster, and the cases a browser would never send.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from webtest import TestApp

from tests.conftest import OPERATOR_TOKEN, VIEWER_TOKEN, bearer
from tests.functional.helpers import add_run, assert_error
from warehouse.operations.shipping_labels import ShippingLabels

PAGES = ["/", "/runs", "/workers"]


def sign_in(testapp: TestApp, token: str) -> str:
    """Sign in through the form; the CSRF token of the new session (as the pages' forms carry it)."""
    response = testapp.post("/login", {"token": token}, status=303)
    assert response.location.endswith("/")
    page = testapp.get("/runs", status=200)
    found = re.search(r'name="csrf_token" value="([^"]+)"', testapp.get("/", status=200).text)
    assert page.status_int == 200
    return found.group(1) if found else ""


def csrf_of(page: Any) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)


@pytest.mark.parametrize("path", [*PAGES, "/runs/1"])
def test_every_page_sends_a_stranger_to_sign_in_and_back(testapp: TestApp, path: str) -> None:
    response = testapp.get(path, status=303)
    assert response.location.endswith(f"/login?next={path.replace('/', '%2F')}")


def test_signing_in_with_a_token_starts_a_signed_httponly_samesite_session(testapp: TestApp) -> None:
    form = testapp.get("/login", status=200)
    assert 'name="token"' in form.text
    response = testapp.post("/login", {"token": OPERATOR_TOKEN, "next": "/workers"}, status=303)
    assert response.location.endswith("/workers")
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("warehouse_session=")
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert OPERATOR_TOKEN not in cookie  # an HMAC of it, not the token
    assert "Signed in as operator" in testapp.get("/workers", status=200).text


@pytest.mark.parametrize(("token", "status", "words"), [
    ("", 400, "Enter a token"),
    ("not-a-token", 403, "not one this server knows"),
])
def test_a_wrong_or_missing_token_is_refused_in_words_and_starts_nothing(
    testapp: TestApp, token: str, status: int, words: str
) -> None:
    response = testapp.post("/login", {"token": token}, status=status)
    assert words in response.text
    assert "Set-Cookie" not in response.headers
    testapp.get("/", status=303)


@pytest.mark.parametrize("target", ["//evil.example/", "https://evil.example/", "/\\evil.example", "runs"])
def test_sign_in_never_sends_anyone_to_another_site(testapp: TestApp, target: str) -> None:
    response = testapp.post("/login", {"token": VIEWER_TOKEN, "next": target}, status=303)
    assert response.location in ("http://localhost/", "/")


def test_signing_out_ends_the_session(testapp: TestApp) -> None:
    sign_in(testapp, VIEWER_TOKEN)
    kept = testapp.cookies["warehouse_session"]
    testapp.post("/logout", status=303)
    testapp.get("/", status=303)
    # The old cookie, replayed, still names a session that is signed in: a stateless cookie cannot be
    # revoked by the server, so signing out removes it from the browser (and tokens end sessions).
    assert kept


def test_the_form_says_each_operation_s_default_chunk_size(testapp: TestApp, warehouse: Any) -> None:
    sign_in(testapp, OPERATOR_TOKEN)
    help_text = testapp.get("/", status=200).html.find(id="chunk-help").get_text(" ", strip=True)

    assert "empty for its default (" in help_text
    assert "valuation 500" in help_text
    assert f"shipping_labels {ShippingLabels.default_chunk_size:,}" in help_text


def test_an_operator_sees_the_form_and_starts_a_run_from_it(testapp: TestApp, db: Any, warehouse: Any) -> None:
    db.add_products(warehouse.id, 30)
    sign_in(testapp, OPERATOR_TOKEN)
    overview = testapp.get("/", status=200)
    assert "Start a run" in overview.text and warehouse.code in overview.text
    response = testapp.post("/runs", {
        "csrf_token": csrf_of(overview), "warehouse": warehouse.code, "operation": "valuation",
        "chunk_size": "10", "tolerated_failure_percent": "5",
    }, status=303)
    run_id = int(response.location.rsplit("/", 1)[1])
    page = testapp.get(f"/runs/{run_id}", status=200)
    assert f"Run {run_id} started." in page.text
    assert 'id="chunk-map"' in page.text and 'data-action="cancel"' in page.text
    run = testapp.get(f"/api/runs/{run_id}", headers=bearer(VIEWER_TOKEN)).json
    assert run["chunk_size"] == 10 and run["tolerated_failure_percent"] == 5


@pytest.mark.parametrize(("fields", "status", "words"), [
    ({"chunk_size": "ten"}, 400, "Chunk size must be a whole number from 1 to 100,000"),
    ({"chunk_size": "0"}, 400, "Chunk size must be a whole number"),
    ({"chunk_size": "9" * 5000}, 400, "Chunk size must be a whole number"),
    ({"chunk_size": "٣"}, 400, "Chunk size must be a whole number"),
    ({"tolerated_failure_percent": "NaN"}, 400, "Tolerated failures must be a percentage"),
    ({"tolerated_failure_percent": "1e999999"}, 400, "Tolerated failures must be a percentage"),
    ({"warehouse": ""}, 400, "Choose a warehouse"),
    ({"operation": "x" * 10000}, 422, "is not known"),
    ({"tolerated_failure_percent": "120"}, 400, "Tolerated failures must be a percentage from 0 to 100"),
    ({"tolerated_failure_percent": "1.234"}, 400, "at most two decimals"),
    ({"operation": "teleport"}, 422, "Operation &#39;teleport&#39; is not known"),
    ({"warehouse": "nowhere"}, 404, "No warehouse with code"),
])
def test_a_refused_form_says_why_keeps_what_was_typed_and_starts_nothing(
    testapp: TestApp, db: Any, warehouse: Any, fields: dict[str, str], status: int, words: str
) -> None:
    sign_in(testapp, OPERATOR_TOKEN)
    csrf = csrf_of(testapp.get("/"))
    before = db.row_counts()
    form = {"csrf_token": csrf, "warehouse": warehouse.code, "operation": "valuation", **fields}
    response = testapp.post("/runs", form, status=status)
    assert words in response.text, response.text[-2000:]
    assert 'aria-invalid="true"' in response.text
    assert db.row_counts() == before


def test_a_form_without_the_csrf_token_is_refused_and_does_nothing(testapp: TestApp, db: Any, warehouse: Any) -> None:
    sign_in(testapp, OPERATOR_TOKEN)
    before = db.row_counts()
    response = testapp.post("/runs", {"warehouse": warehouse.code, "operation": "valuation"}, status=403)
    assert "security token" in response.text
    run_id = add_run(db, warehouse.id, "running")
    testapp.post(f"/runs/{run_id}/cancel", status=403)
    assert db.row_counts()["runs"] == before["runs"] + 1
    assert testapp.get(f"/api/runs/{run_id}").json["status"] == "running"


def test_a_viewer_sees_no_operator_buttons_and_cannot_act(testapp: TestApp, db: Any, warehouse: Any) -> None:
    run_id = add_run(db, warehouse.id, "running")
    sign_in(testapp, VIEWER_TOKEN)
    page = testapp.get(f"/runs/{run_id}", status=200)
    assert 'data-action=' not in page.text and "csrf_token" not in page.text
    assert "Start a run" not in testapp.get("/").text
    csrf = testapp.get("/api/runs/1", status="*") and _session_csrf(testapp)
    refused = testapp.post(f"/runs/{run_id}/cancel", {"csrf_token": csrf}, status=403)
    assert "Operators only" in refused.text
    assert testapp.get(f"/api/runs/{run_id}").json["status"] == "running"


def _session_csrf(testapp: TestApp) -> str:
    """A viewer's pages carry no form; the session has a CSRF token all the same (set at sign-in)."""
    import base64
    import json

    from warehouse.sessions import COOKIE_NAME

    # A signed cookie is readable (not secret, only tamper-proof): base64 of signature + JSON.
    raw = base64.urlsafe_b64decode(testapp.cookies[COOKIE_NAME].strip('"') + "===")
    payload = json.loads(raw[64:])  # sha512 signature first
    return payload[2]["_csrft_"]


def test_the_api_takes_the_session_and_wants_csrf_for_what_changes(testapp: TestApp, db: Any, warehouse: Any) -> None:
    run_id = add_run(db, warehouse.id, "running")
    sign_in(testapp, OPERATOR_TOKEN)
    assert testapp.get(f"/api/runs/{run_id}", status=200).json["id"] == run_id
    error = assert_error(testapp.post_json(f"/api/runs/{run_id}/cancel", None, status=403), 403, "csrf_token_missing", "X-CSRF-Token")
    assert "nothing was done" in error["message"]
    assert testapp.get(f"/api/runs/{run_id}").json["status"] == "running"
    testapp.post_json(f"/api/runs/{run_id}/cancel", None, headers={"X-CSRF-Token": _session_csrf(testapp)}, status=202)


def test_a_bearer_token_needs_no_csrf_even_beside_a_cookie(testapp: TestApp, db: Any, warehouse: Any) -> None:
    run_id = add_run(db, warehouse.id, "running")
    sign_in(testapp, VIEWER_TOKEN)
    testapp.post_json(f"/api/runs/{run_id}/cancel", None, headers=bearer(OPERATOR_TOKEN), status=202)
    # A header decides alone: a wrong token is a 401 whatever cookie comes with it.
    assert_error(testapp.get(f"/api/runs/{run_id}", headers=bearer("wrong"), status=401), 401, "unauthorized")


def test_a_viewer_session_on_an_operator_route_is_told_so(testapp: TestApp, db: Any, warehouse: Any) -> None:
    run_id = add_run(db, warehouse.id, "running")
    sign_in(testapp, VIEWER_TOKEN)
    response = testapp.post_json(f"/api/runs/{run_id}/cancel", None, headers={"X-CSRF-Token": _session_csrf(testapp)}, status=403)
    assert_error(response, 403, "forbidden", "session")


def test_pages_carry_a_strict_content_security_policy(testapp: TestApp) -> None:
    sign_in(testapp, VIEWER_TOKEN)
    headers = testapp.get("/").headers
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert headers["Cache-Control"] == "no-store"
    assert headers["X-Content-Type-Options"] == "nosniff"


def test_the_run_page_embeds_the_run_without_letting_it_close_the_script(testapp: TestApp, db: Any, warehouse: Any) -> None:
    from warehouse.models import Run

    run_id = add_run(db, warehouse.id, "failed")
    with db.session() as session:
        session.get(Run, run_id).error = "</script><script>alert(1)</script>"
    sign_in(testapp, VIEWER_TOKEN)
    page = testapp.get(f"/runs/{run_id}").text
    document = page.split('id="run-document">', 1)[1].split("</script>", 1)[0]
    assert "<" not in document and "\\u003c/script\\u003e" in document
    assert "&lt;/script&gt;&lt;script&gt;" in page  # and the error shown on the page is escaped


@pytest.mark.parametrize("path", ["/runs/999999999", "/runs/abc", "/runs/0", "/nowhere"])
def test_a_page_that_does_not_exist_says_so_in_a_page(testapp: TestApp, path: str) -> None:
    sign_in(testapp, VIEWER_TOKEN)
    response = testapp.get(path, status=404)
    assert response.content_type == "text/html" and "Not found" in response.text


def test_the_runs_list_filters_and_says_what_it_ignored(testapp: TestApp, db: Any, warehouse: Any) -> None:
    kept = add_run(db, warehouse.id, "failed")
    other = add_run(db, warehouse.id, "succeeded")
    sign_in(testapp, VIEWER_TOKEN)
    page = testapp.get("/runs", {"warehouse": warehouse.code, "status": "failed"}).text
    assert f"/runs/{kept}\"" in page and f"/runs/{other}\"" not in page
    noted = testapp.get("/runs", {"status": "exploded", "cursor": "%%%"}).text
    assert "is not a run status" in noted and "page link is not valid" in noted


def test_the_empty_states_say_what_to_do(testapp: TestApp, db: Any, warehouse: Any) -> None:
    sign_in(testapp, VIEWER_TOKEN)
    page = testapp.get("/runs", {"warehouse": warehouse.code}).text
    assert "No run matches these filters" in page


def test_the_workers_page_lists_the_embedded_worker(testapp: TestApp) -> None:
    sign_in(testapp, VIEWER_TOKEN)
    page = testapp.get("/workers").text
    assert "Processes" in page and 'data-source="/api/workers' in page


@pytest.mark.parametrize("token", ["x" * 100_000, "op-token\x00", "☃", " op-token "])
def test_sign_in_takes_any_typed_text_without_failing(testapp: TestApp, token: str) -> None:
    expected = 303 if token.strip() == OPERATOR_TOKEN else 403
    testapp.post("/login", {"token": token}, status=expected)
