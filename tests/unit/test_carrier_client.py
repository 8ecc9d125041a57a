"""The carrier client against the stub, in process (httpx's WSGI transport: no sockets)."""

from __future__ import annotations

import socket

import httpx
import pytest

from tests.httpx_transport import HttpxTransport
from warehouse.carrier.client import (
    CarrierClient,
    LabelOrder,
    PermanentCarrierError,
    TransientCarrierError,
    make_http_client,
)
from warehouse.carrier.served import serve_stub
from warehouse.carrier.stub import StubConfig, make_app

ORDER = LabelOrder(shipment_id=42, reference="SHP-42", ship_to="1 Quay St, Dublin", weight_grams=1200)


def client_for(stub) -> CarrierClient:  # type: ignore[no-untyped-def]
    return CarrierClient("http://carrier.test", HttpxTransport(httpx.Client(transport=httpx.WSGITransport(app=stub))))


def test_buying_twice_with_the_same_shipment_buys_one_label() -> None:
    stub = make_app(StubConfig())
    client = client_for(stub)

    first = client.buy_label(ORDER)
    again = client.buy_label(ORDER)

    assert first == again
    assert first.label_id and first.tracking_number and first.label_url
    assert stub.state.stats()["purchases"] == 1
    assert stub.state.stats()["duplicate_keys"] == 1


def test_the_idempotency_key_names_the_shipment() -> None:
    assert ORDER.idempotency_key == "shipment-42"


@pytest.mark.parametrize(
    ("config", "retry_after"),
    [(StubConfig(fail_rate=1.0), None), (StubConfig(rate_limited_rate=1.0, retry_after=3), 3.0)],
    ids=["503", "429"],
)
def test_503_and_429_are_transient_and_carry_retry_after(config: StubConfig, retry_after: float | None) -> None:
    with pytest.raises(TransientCarrierError) as raised:
        client_for(make_app(config)).buy_label(ORDER)
    assert raised.value.retry_after == retry_after


def test_a_refused_order_is_permanent_with_the_carriers_message() -> None:
    bad = LabelOrder(shipment_id=7, reference="SHP-7", ship_to="somewhere", weight_grams=999_999)
    with pytest.raises(PermanentCarrierError, match="weight_grams"):
        client_for(make_app(StubConfig())).buy_label(bad)


def test_timeouts_and_connection_errors_are_transient() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    def time_out(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("read timed out", request=request)

    for handler in (refuse, time_out):
        client = CarrierClient("http://carrier.test", HttpxTransport(httpx.Client(transport=httpx.MockTransport(handler))))
        with pytest.raises(TransientCarrierError):
            client.buy_label(ORDER)


@pytest.mark.parametrize("answer", [b"<html>bad gateway</html>", b'{"label_id": "LBL-1"}', b"[]"], ids=["html", "partial", "list"])
def test_a_success_without_a_label_is_transient(answer: bytes) -> None:
    # Asking again with the same key is safe, and gets the label the carrier sold, if it sold one.
    client = CarrierClient(
        "http://carrier.test",
        HttpxTransport(httpx.Client(transport=httpx.MockTransport(lambda request: httpx.Response(201, content=answer)))),
    )
    with pytest.raises(TransientCarrierError, match="without a label"):
        client.buy_label(ORDER)


@pytest.mark.parametrize(
    ("status", "header", "expected"),
    [(429, "nan", 1.0), (429, "inf", 1.0), (429, "-5", 0.0), (429, "86400", 300.0), (503, "nan", None), (503, "2.5", 2.5)],
)
def test_retry_after_is_a_finite_pause_of_at_most_five_minutes(status: int, header: str, expected: float | None) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, headers={"Retry-After": header}, json={"error": {"message": "later"}})

    client = CarrierClient("http://carrier.test", HttpxTransport(httpx.Client(transport=httpx.MockTransport(answer))))
    with pytest.raises(TransientCarrierError) as raised:
        client.buy_label(ORDER)
    assert raised.value.retry_after == expected


# --- the transport workers use: urllib3 over real sockets -------------------------------------------


def test_the_urllib3_transport_buys_over_http_and_sorts_timeouts_and_refusals() -> None:
    with serve_stub("--slow-rate", "0", "--latency-ms", "5") as quick, serve_stub("--slow-rate", "1", "--slow-ms", "2000") as slow:
        label = CarrierClient(quick.url, make_http_client(5, 4)).buy_label(ORDER)
        assert label.label_id.startswith("LBL-")
        assert quick.stats()["purchases"] == 1

        with pytest.raises(TransientCarrierError, match="Timeout"):
            CarrierClient(slow.url, make_http_client(0.3, 4)).buy_label(ORDER)

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        nobody = f"http://127.0.0.1:{probe.getsockname()[1]}"
    with pytest.raises(TransientCarrierError, match="Connection|refused"):
        CarrierClient(nobody, make_http_client(2, 4)).buy_label(ORDER)
