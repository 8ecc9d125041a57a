"""The stand-in carrier: its label API in process (WebTest), and its in-flight cap as a real server."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from webtest import TestApp

from warehouse.carrier.served import serve_stub
from warehouse.carrier.stub import StubConfig, make_app
from warehouse.scripts.carrier_stub import default_threads, parse_args

ORDER = {"shipment_reference": "SHP-1", "ship_to": "1 Main St, Springfield", "weight_grams": 1200}


def make_carrier(**settings: Any) -> TestApp:
    return TestApp(make_app(StubConfig(**settings)))


@pytest.fixture
def carrier() -> TestApp:
    return make_carrier()


def buy(carrier: TestApp, key: str | None, body: Any = ORDER, status: int | str = "*") -> Any:
    headers = {"Idempotency-Key": key} if key is not None else {}
    return carrier.post_json("/v1/labels", body, headers=headers, status=status)


def stats(carrier: TestApp) -> dict[str, int]:
    return carrier.get("/v1/stats").json


# --- labels and idempotency ------------------------------------------------------------------------


def test_same_key_twice_buys_one_label(carrier: TestApp) -> None:
    first = buy(carrier, "shipment-1", status=201).json
    again = buy(carrier, "shipment-1", status=200).json

    assert again == first
    assert first["label_id"].startswith("LBL-")
    assert first["tracking_number"].startswith("1Z")
    assert stats(carrier) == {
        "requests": 2,
        "purchases": 1,
        "duplicate_keys": 1,
        "duplicate_purchases": 0,
        "max_in_flight": 1,
        "in_flight": 0,
        "rejected_over_cap": 0,
        "rate_limited": 0,
        "failed": 0,
    }


def test_distinct_keys_get_distinct_labels(carrier: TestApp) -> None:
    labels = [buy(carrier, f"shipment-{n}", {**ORDER, "shipment_reference": f"SHP-{n}"}, 201).json for n in range(3)]

    assert len({label["label_id"] for label in labels}) == 3
    assert len({label["tracking_number"] for label in labels}) == 3
    assert stats(carrier)["duplicate_purchases"] == 0


def test_key_reused_for_another_order_is_refused(carrier: TestApp) -> None:
    buy(carrier, "shipment-1", status=201)

    refused = buy(carrier, "shipment-1", {**ORDER, "weight_grams": 999}, status=422).json

    assert refused["error"]["code"] == "idempotency_key_reused"
    assert stats(carrier)["purchases"] == 1


def test_new_key_for_a_shipment_with_a_label_is_a_duplicate_purchase(carrier: TestApp) -> None:
    # What a client without stable keys does when it retries: the carrier sells it a second label.
    first = buy(carrier, "attempt-1", status=201).json
    second = buy(carrier, "attempt-2", status=201).json

    assert second["label_id"] != first["label_id"]
    assert stats(carrier)["purchases"] == 2
    assert stats(carrier)["duplicate_purchases"] == 1


def test_label_url_serves_a_pdf(carrier: TestApp) -> None:
    label = buy(carrier, "shipment-1", status=201).json

    assert label["label_url"] == f"http://localhost/v1/labels/{label['label_id']}.pdf"
    pdf = carrier.get(label["label_url"], status=200)
    assert pdf.content_type == "application/pdf"
    assert pdf.body.startswith(b"%PDF-")
    carrier.get("/v1/labels/LBL-999999.pdf", status=404)


# --- permanent errors --------------------------------------------------------------------------------


@pytest.mark.parametrize("key", [None, "", "   "])
def test_missing_idempotency_key_is_400(carrier: TestApp, key: str | None) -> None:
    error = buy(carrier, key, status=400).json["error"]

    assert error["code"] == "missing_idempotency_key"
    assert stats(carrier)["purchases"] == 0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("shipment_reference", None),
        ("shipment_reference", ""),
        ("shipment_reference", 12),
        ("ship_to", None),
        ("ship_to", "  "),
        ("weight_grams", None),
        ("weight_grams", 0),
        ("weight_grams", 70_001),
        ("weight_grams", 1.5),
        ("weight_grams", "1200"),
        ("weight_grams", True),
    ],
)
def test_bad_field_is_422_naming_it(carrier: TestApp, field: str, value: Any) -> None:
    body = {name: given for name, given in {**ORDER, field: value}.items() if given is not None}

    error = buy(carrier, "shipment-1", body, status=422).json["error"]

    assert error["code"] == "invalid_field"
    assert error["message"].startswith(f"{field}:")
    assert error["details"] == {"field": field}


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b"\xff\xfe"])
def test_malformed_json_is_422(carrier: TestApp, body: bytes) -> None:
    response = carrier.post(
        "/v1/labels", body, headers={"Idempotency-Key": "k", "Content-Type": "application/json"}, status=422
    )

    assert response.json["error"]["code"] == "invalid_json"


# --- faults -----------------------------------------------------------------------------------------


def test_fail_rate_one_answers_503() -> None:
    carrier = make_carrier(fail_rate=1)

    assert buy(carrier, "shipment-1", status=503).json["error"]["code"] == "unavailable"
    assert stats(carrier)["failed"] == 1
    assert stats(carrier)["purchases"] == 0


def test_rate_limited_rate_one_answers_429_with_retry_after() -> None:
    carrier = make_carrier(rate_limited_rate=1, retry_after=7)

    refused = buy(carrier, "shipment-1", status=429)

    assert refused.headers["Retry-After"] == "7"
    assert refused.json["error"]["code"] == "rate_limited"
    assert stats(carrier)["rate_limited"] == 1
    assert stats(carrier)["purchases"] == 0


def test_slow_calls_take_slow_ms() -> None:
    carrier = make_carrier(slow_rate=1, slow_ms=100)

    started = time.monotonic()
    buy(carrier, "shipment-1", status=201)

    assert time.monotonic() - started >= 0.1


# --- control endpoints -----------------------------------------------------------------------------


def test_reset_forgets_counters_and_labels(carrier: TestApp) -> None:
    first = buy(carrier, "shipment-1", status=201).json

    assert carrier.post("/v1/reset", status=200).json == {}

    assert set(stats(carrier).values()) == {0}
    carrier.get(first["label_url"], status=404)
    # The key is forgotten, so it buys again; the new label never reuses an id handed out before.
    assert buy(carrier, "shipment-1", status=201).json["label_id"] != first["label_id"]


def test_config_changes_behaviour_at_run_time(carrier: TestApp) -> None:
    effective = carrier.post_json("/v1/config", {"fail_rate": 1, "retry_after": 3}, status=200).json

    assert effective["fail_rate"] == 1.0
    assert effective["retry_after"] == 3
    assert effective["latency_ms"] == 0  # untouched settings keep their values
    assert carrier.get("/v1/config").json == effective
    buy(carrier, "shipment-1", status=503)

    carrier.post_json("/v1/config", {"fail_rate": 0}, status=200)
    buy(carrier, "shipment-1", status=201)


@pytest.mark.parametrize(
    ("changes", "field"),
    [({"fail_rate": 1.5}, "fail_rate"), ({"latency_ms": -1}, "latency_ms"), ({"seed": 3}, "seed"), ({"x": 1}, "x")],
)
def test_bad_config_is_422_and_changes_nothing(carrier: TestApp, changes: dict[str, Any], field: str) -> None:
    before = carrier.get("/v1/config").json

    error = carrier.post_json("/v1/config", changes, status=422).json["error"]

    assert error["details"] == {"field": field}
    assert carrier.get("/v1/config").json == before


def test_unknown_paths_and_methods(carrier: TestApp) -> None:
    carrier.get("/v1/nothing", status=404)
    carrier.get("/v1/labels", status=405)
    carrier.post("/v1/stats", status=405)


def test_command_line_builds_the_config() -> None:
    args = parse_args(["--port", "0", "--max-in-flight", "40", "--fail-rate", "0.1", "--seed", "7"])

    assert args.config == StubConfig(max_in_flight=40, fail_rate=0.1, seed=7)
    assert default_threads(args.config.max_in_flight) == 88


def test_command_line_refuses_a_bad_rate(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_args(["--port", "0", "--rate-limited-rate", "1.5"])

    assert exited.value.code == 2
    assert "--rate-limited-rate: must be a number from 0 to 1" in capsys.readouterr().err


# --- the real server: the in-flight cap under concurrency ----------------------------------------------


@pytest.fixture
def served_carrier() -> Iterator[str]:
    """The console script as its own process, on a free port it picks and reports itself."""
    with serve_stub("--latency-ms", "200", "--max-in-flight", "5") as stub:
        yield stub.url


def http(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any, Any]:
    """(status, headers, JSON body) for any answer, errors included."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.headers, json.load(response)
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.headers, json.load(error)


@pytest.mark.timeout(30)
def test_server_admits_at_most_max_in_flight(served_carrier: str) -> None:
    callers = 20
    start_together = threading.Barrier(callers)
    answers: list[tuple[int, Any, Any]] = []

    def call(n: int) -> None:
        order = {**ORDER, "shipment_reference": f"SHP-{n}"}
        start_together.wait()
        answers.append(http("POST", f"{served_carrier}/v1/labels", order, {"Idempotency-Key": f"shipment-{n}"}))

    threads = [threading.Thread(target=call, args=(n,)) for n in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)

    statuses = sorted(status for status, _, _ in answers)
    created = statuses.count(201)
    refused = [headers for status, headers, _ in answers if status == 429]
    assert len(answers) == callers
    assert created >= 5 and created + len(refused) == callers, statuses
    assert all(headers["Retry-After"] == "1" for headers in refused)
    _, _, counted = http("GET", f"{served_carrier}/v1/stats")
    assert counted["max_in_flight"] == 5
    assert counted["purchases"] == created
    assert counted["rejected_over_cap"] == len(refused)
    assert counted["in_flight"] == 0
