"""The pages in headless Chromium, on a real web process and a real worker: what a person sees and does."""

from __future__ import annotations

import random
import re
import threading
import time
from typing import Any

import httpx
import pytest

from tests.integration.browser.helpers import Stage, screenshot, sign_in
from tests.integration.conftest import OPERATOR_TOKEN, VIEWER_TOKEN

pytestmark = pytest.mark.timeout(240)

ACTIVE = {"pending", "running", "cancelling"}


def watch(page: Any, until_status: set[str], timeout: float = 90) -> list[dict[str, Any]]:
    """What the page shows, read off its DOM every 100 ms until its status is one of ``until_status``
    and (for a run that ended) the page has drawn the end and stopped."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while True:
        state = page.evaluate("""() => ({
            status: document.querySelector('#status [data-status]').dataset.status,
            items: document.getElementById('items-bar').value,
            states: document.getElementById('chunk-map').dataset.states || '',
            reloaded: window.__sameDocument !== true,
            ended: document.getElementById('run').dataset.ended === 'true',
        })""")
        seen.append(state)
        if state["status"] in until_status and (state["ended"] or state["status"] in ACTIVE):
            return seen
        assert time.monotonic() < deadline, f"the page still shows {state} after {timeout} s"
        time.sleep(0.1)


def mark_document(page: Any) -> None:
    """A mark that a reload would wipe: the page must update without one."""
    page.evaluate("() => { window.__sameDocument = true; }")


def requests_during(page: Any, seconds: float) -> list[str]:
    made: list[str] = []
    page.on("request", lambda request: made.append(request.url))
    page.wait_for_timeout(seconds * 1000)
    return made


def test_an_operator_starts_a_run_from_the_overview_and_watches_it_succeed(page: Any, stage: Stage) -> None:
    code = stage.add_warehouse(products=1000)
    sign_in(page, OPERATOR_TOKEN)
    form = page.locator("form.start")
    form.get_by_label("Warehouse").select_option(code)
    form.get_by_label("Operation").select_option("slow_valuation")
    form.get_by_label("Chunk size").fill("25")
    page.get_by_role("button", name="Start the run").click()
    page.wait_for_url(re.compile(r".*/runs/\d+$"))
    run_id = int(page.url.rsplit("/", 1)[1])
    assert page.get_by_text(f"Run {run_id} started.").is_visible()
    mark_document(page)

    seen = watch(page, {"succeeded", "partially_failed", "failed", "cancelled"})
    middle = [state for state in seen if "d" in state["states"] and re.search("[pr]", state["states"])]
    assert middle, "the chunk map never showed a run part-way through"
    assert seen[-1]["status"] == "succeeded"
    assert len({state["items"] for state in seen}) >= 3, "the progress bar did not move on its own"
    assert seen[-1]["states"] == "d" * 40 and seen[-1]["items"] == 1000
    assert not any(state["reloaded"] for state in seen)
    assert page.locator("#result").get_by_text("total stock value").is_visible()
    assert page.locator("#result dd").first.inner_text() == "12,500.00"  # 1,000 products x 5 x 2.50

    # Ended: the page says so and asks the server for nothing more.
    page.wait_for_function("() => document.getElementById('run').dataset.ended === 'true'")
    assert requests_during(page, 5) == []


def test_a_running_run_is_cancelled_from_its_page_and_a_hidden_tab_stops_polling(page: Any, stage: Stage) -> None:
    code = stage.add_warehouse(products=6000)
    run_id = stage.start_run(code, "slow_valuation", chunk_size=20)
    sign_in(page, OPERATOR_TOKEN, then=f"/runs/{run_id}")
    # A fifth of the way: enough on the chart and the map for the README's picture.
    page.wait_for_function("() => ((document.getElementById('chunk-map').dataset.states || '').match(/d/g) || []).length >= 60")
    screenshot(page, "run-page-running.png")

    # Hidden, the page stops asking; shown again, it asks at once.
    page.evaluate("""() => {
        Object.defineProperty(document, 'hidden', {configurable: true, get: () => true});
        document.dispatchEvent(new Event('visibilitychange'));
    }""")
    page.wait_for_timeout(300)  # a poll already on its way may land
    assert requests_during(page, 4) == []
    page.evaluate("""() => {
        Object.defineProperty(document, 'hidden', {configurable: true, get: () => false});
        document.dispatchEvent(new Event('visibilitychange'));
    }""")
    assert any("/api/runs/" in url for url in requests_during(page, 1.5))

    page.get_by_role("button", name="Cancel the run").click()
    page.wait_for_url(f"**/runs/{run_id}")
    assert page.get_by_text(f"Run {run_id} is being cancelled").is_visible()
    seen = watch(page, {"cancelled", "succeeded"})
    assert seen[-1]["status"] == "cancelled"
    assert stage.run(run_id)["status"] == "cancelled"
    assert "s" in seen[-1]["states"]  # the chunks that never started show as skipped
    assert page.locator('[data-count="skipped"]').inner_text() != "0"


def test_failures_show_and_a_redrive_from_the_page_ends_the_run_succeeded(page: Any, stage: Stage) -> None:
    code = stage.add_warehouse(products=300, negative=7)
    run_id = stage.start_run(code, "picky_valuation", chunk_size=50, tolerated_failure_percent=50)
    ended = stage.wait_until_ended(run_id)
    assert ended["items"]["failed"] == 7 and ended["status"] in ("partially_failed", "failed")
    sign_in(page, OPERATOR_TOKEN, then=f"/runs/{run_id}")
    failures = page.locator("#failed-items")
    failures.get_by_text(f"{code}-00000", exact=True).wait_for()
    assert failures.locator("tbody tr").count() == 7
    assert failures.get_by_text("quantity on hand is negative (-3)").first.is_visible()
    assert page.locator("#cancel, [data-action='cancel']").is_hidden()
    screenshot(page, "run-page-failures.png")

    # The fault fixed, as a person would (the products corrected), then the page's button.
    fixed = [{"sku": f"{code}-{index:05d}", "qty_on_hand": 1, "unit_cost": "2.50", "reorder_point": 2} for index in range(7)]
    stage.operator.post(f"/api/warehouses/{code}/products", json=fixed).raise_for_status()
    page.get_by_role("button", name="Redrive failed chunks").click()
    page.wait_for_url(f"**/runs/{run_id}")
    seen = watch(page, {"succeeded", "partially_failed", "failed"})
    assert seen[-1]["status"] == "succeeded"
    run = stage.run(run_id)
    assert run["status"] == "succeeded" and run["redrive_count"] == 1 and run["items"] == {
        "total": 300, "done": 300, "failed": 0, "remaining": 0}
    page.get_by_text("No failures.").wait_for()
    assert page.locator("#redrives").inner_text() == "once"


def test_a_viewer_sees_no_buttons_and_a_forged_post_is_refused(page: Any, context: Any, stage: Stage) -> None:
    code = stage.add_warehouse(products=4000)
    run_id = stage.start_run(code, "slow_valuation", chunk_size=20)
    try:
        sign_in(page, VIEWER_TOKEN, then=f"/runs/{run_id}")
        page.locator("#status [data-status]").wait_for()
        assert page.locator("#actions").count() == 0
        assert page.get_by_role("button", name="Cancel the run").count() == 0
        page.goto("/")
        assert page.get_by_role("button", name="Start the run").count() == 0

        # The session's cookie rides along with these, as it would with another site's form.
        for path in (f"/runs/{run_id}/cancel", f"/api/runs/{run_id}/cancel"):
            assert context.request.post(path, headers={"Content-Type": "application/json"}, data="null").status == 403
        assert stage.run(run_id)["status"] == "running"
    finally:
        stage.operator.post(f"/api/runs/{run_id}/cancel", json=None)


def test_an_operator_session_without_the_csrf_token_changes_nothing(page: Any, context: Any, stage: Stage) -> None:
    code = stage.add_warehouse(products=4000)
    run_id = stage.start_run(code, "slow_valuation", chunk_size=20)
    try:
        sign_in(page, OPERATOR_TOKEN)
        response = context.request.post(f"/runs/{run_id}/cancel", form={"csrf_token": "guessed"})
        assert response.status == 403
        api = context.request.post(f"/api/runs/{run_id}/cancel", headers={"Content-Type": "application/json"}, data="null")
        assert api.status == 403 and api.json()["error"]["code"] == "csrf_token_missing"
        assert stage.run(run_id)["status"] == "running"
    finally:
        stage.operator.post(f"/api/runs/{run_id}/cancel", json=None)


@pytest.mark.parametrize("path", ["/", "/runs", "/runs/1", "/workers"])
def test_every_page_sends_a_stranger_to_sign_in(page: Any, path: str) -> None:
    page.goto(path)
    assert re.search(r"/login\?next=", page.url), page.url
    assert page.get_by_label("Token").is_visible()


def test_the_run_page_reads_on_a_phone_and_with_the_keyboard_in_local_time(browser: Any, stage: Stage) -> None:
    code = stage.add_warehouse(products=200)
    run_id = stage.start_run(code, "valuation", chunk_size=10)
    stage.wait_until_ended(run_id)
    phone = browser.new_context(base_url=stage.base_url, viewport={"width": 390, "height": 844}, is_mobile=True,
                                timezone_id="America/New_York", locale="en-US")
    try:
        page = phone.new_page()
        sign_in(page, VIEWER_TOKEN, then=f"/runs/{run_id}")
        page.wait_for_function("() => document.getElementById('chunk-map').dataset.states === 'd'.repeat(20)")
        assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth + 1")
        started = page.locator("#started time")
        assert re.search(r"\bE[SD]T\b", started.inner_text()), started.inner_text()  # New York time, not UTC
        assert started.get_attribute("datetime").endswith("+00:00")
        page.locator("#chunk-map").focus()
        page.keyboard.press("ArrowRight")
        assert page.locator("#map-readout").inner_text() == "Chunk 2 of 20: done"
        page.keyboard.press("End")
        assert page.locator("#map-readout").inner_text() == "Chunk 20 of 20: done"
        assert page.locator('[data-count="done"]').inner_text() == "20"
        assert "200 of 200 items done" in page.locator("#items-text").inner_text()
    finally:
        phone.close()


def test_the_workers_page_shows_the_stage_worker_alive(page: Any, stage: Stage) -> None:
    sign_in(page, VIEWER_TOKEN, then="/workers")
    table = page.locator("#workers-table")
    table.get_by_text(re.compile(r"^b1@")).first.wait_for()
    assert table.get_by_text("● alive").count() >= 1
    assert httpx.get(f"{stage.base_url}/workers", follow_redirects=False).status_code == 303


def seed_big_run(engine: Any, code: str, chunks: int) -> int:
    """A running run of ``chunks`` chunks in a mix of every state, written straight to the ledger
    (no worker touches it: the test changes it as it likes)."""
    from sqlalchemy import insert, select
    from sqlalchemy.orm import Session

    from warehouse.ledger.shared import utcnow
    from warehouse.models import Run, RunChunk, Warehouse

    mix = ["done", "done", "failed", "running", "pending", "skipped", "done", "pending"]
    rng = random.Random(7)
    with Session(engine) as session, session.begin():
        warehouse_id = session.scalar(select(Warehouse.id).where(Warehouse.code == code))
        run = Run(warehouse_id=warehouse_id, operation="valuation", status="running", chunk_size=500,
                  chunks_total=chunks, items_total=chunks * 500, started_at=utcnow())
        session.add(run)
        session.flush()
        session.execute(insert(RunChunk), [
            {"run_id": run.id, "seq": seq, "start_id": seq * 1000 + 1, "end_id": seq * 1000 + 500,
             "item_count": 500, "status": rng.choice(mix)}
            for seq in range(chunks)
        ])
        return run.id


def churn(engine: Any, run_id: int, stop: threading.Event) -> None:
    """Every half second, some chunks change state and the run's counters move: every poll sees news."""
    from sqlalchemy import text

    while not stop.wait(0.5):
        with engine.begin() as connection:
            connection.execute(text(
                "UPDATE run_chunks SET status = (ARRAY['done','failed','running','pending'])[1 + floor(random() * 4)::int] "
                "WHERE id IN (SELECT id FROM run_chunks WHERE run_id = :run ORDER BY random() LIMIT 200)"), {"run": run_id})
            connection.execute(text("UPDATE runs SET items_done = items_done + 500, chunks_done = chunks_done + 1, "
                                    "updated_at = now() WHERE id = :run"), {"run": run_id})


def test_a_page_watching_20000_chunks_transfers_under_a_megabyte_a_minute(page: Any, stage: Stage) -> None:
    code = stage.add_warehouse(products=1)
    run_id = seed_big_run(stage.engine, code, 20_000)
    sign_in(page, VIEWER_TOKEN, then=f"/runs/{run_id}")
    page.wait_for_function("() => (document.getElementById('chunk-map').dataset.states || '').length === 20000")
    transferred: list[int] = []

    def count(request: Any) -> None:
        sizes = request.sizes()
        transferred.append(sum(sizes[key] for key in ("requestHeadersSize", "requestBodySize", "responseHeadersSize", "responseBodySize")))

    page.on("requestfinished", count)
    stop = threading.Event()
    changer = threading.Thread(target=churn, args=(stage.engine, run_id, stop), daemon=True)
    changer.start()
    try:
        page.wait_for_timeout(20_000)
    finally:
        stop.set()
        changer.join(timeout=10)
        stage.operator.post(f"/api/runs/{run_id}/cancel", json=None)
    per_minute = sum(transferred) * 3
    print(f"\na page watching 20,000 changing chunks: {len(transferred)} requests in 20 s, {per_minute:,} bytes a minute")
    assert len(transferred) >= 10, "the page did not keep polling"
    assert per_minute < 1_000_000
