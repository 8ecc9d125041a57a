"""shipping_labels on PostgreSQL: a chunk's labels and refusals are written by one statement each, and a
shipment labelled meanwhile keeps the label it has."""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, delete, event, select
from sqlalchemy.orm import Session

from warehouse.carrier.buyer import Purchase
from warehouse.carrier.client import Label
from warehouse.models import Shipment, Warehouse
from warehouse.operations.shipping_labels import ShippingLabels


@pytest.fixture
def shipment_ids(engine: Engine) -> Iterator[list[int]]:
    with Session(engine) as session, session.begin():
        warehouse = Warehouse(code=f"stored-{secrets.token_hex(4)}", name="Stored at once")
        session.add(warehouse)
        session.flush()
        shipments = [
            Shipment(warehouse_id=warehouse.id, reference=f"S-{number}", ship_to="Somewhere 1", weight_grams=500,
                     shipping_date=dt.date.today())
            for number in range(6)
        ]
        session.add_all(shipments)
        session.flush()
        ids = [shipment.id for shipment in shipments]
        warehouse_id = warehouse.id
    yield ids
    with Session(engine) as session, session.begin():
        session.execute(delete(Shipment).where(Shipment.warehouse_id == warehouse_id))
        session.execute(delete(Warehouse).where(Warehouse.id == warehouse_id))


def _label(number: int) -> Label:
    return Label(label_id=f"L-{number}", tracking_number=f"T-{number}", label_url=f"https://labels.example/{number}")


def test_a_chunks_labels_and_refusals_are_one_statement_each_and_a_label_is_never_replaced(
    engine: Engine, shipment_ids: list[int]
) -> None:
    first, *bought_ids, refused_id = shipment_ids
    with Session(engine) as session, session.begin():
        # Labelled by someone else since the chunk read its orders: that label stays.
        session.get(Shipment, first).label_id = "L-earlier"
    bought = [Purchase(id_, label=_label(id_)) for id_ in [first, *bought_ids]]
    refused = [Purchase(refused_id, error="address refused by the carrier")]

    statements: list[str] = []
    with Session(engine) as session:
        event.listen(session.connection(), "before_cursor_execute", lambda *args: statements.append(args[2]))
        ShippingLabels._store_labels(session, bought)
        ShippingLabels._store_errors(session, refused)
        session.commit()

    assert len(statements) == 2, statements
    assert all("unnest" in statement for statement in statements)
    with Session(engine) as session:
        rows = {row.id: row for row in session.execute(select(Shipment).where(Shipment.id.in_(shipment_ids))).scalars()}
    assert rows[first].label_id == "L-earlier" and rows[first].tracking_number is None
    for id_ in bought_ids:
        assert (rows[id_].label_id, rows[id_].tracking_number, rows[id_].label_url, rows[id_].label_error) == (
            f"L-{id_}", f"T-{id_}", f"https://labels.example/{id_}", None
        )
    assert rows[refused_id].label_id is None
    assert rows[refused_id].label_error == "address refused by the carrier"


def test_a_chunk_with_nothing_to_store_sends_nothing(engine: Engine) -> None:
    statements: list[str] = []
    with Session(engine) as session:
        event.listen(session.connection(), "before_cursor_execute", lambda *args: statements.append(args[2]))
        ShippingLabels._store_labels(session, [])
        ShippingLabels._store_errors(session, [])
        session.commit()
    assert statements == []
