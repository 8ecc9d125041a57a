"""What the built-in operations do with ``ChunkWork.previous_summary``, the summary a redriven chunk's
earlier attempt recorded: valuation ignores it (it redoes the whole chunk), shipping labels carries its
earlier purchases over (it redoes only what is still missing). Called directly, on the SQLite test
database; shipping labels against the session's carrier stub over HTTP."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import select, update

from warehouse.models import Product, Shipment
from warehouse.operations import ChunkOutcome, ChunkWork
from warehouse.operations.shipping_labels import ShippingLabels
from warehouse.operations.valuation import Valuation

pytestmark = pytest.mark.timeout(60)


def process(
    db: Any, operation: Any, settings: dict[str, Any], warehouse_id: int, ids: list[int], previous: Any = None
) -> ChunkOutcome:
    with db.session() as session:
        work = ChunkWork(
            session=session,
            run_id=0,
            warehouse_id=warehouse_id,
            start_id=ids[0],
            end_id=ids[-1],
            settings=settings,
            planned_on=dt.datetime.now(dt.timezone.utc).date(),
            item_count=len(ids),
            previous_summary=previous,
        )
        return operation.process_chunk(work)


def test_chunk_work_has_no_previous_summary_unless_a_redrive_gives_one(db: Any) -> None:
    with db.session() as session:
        work = ChunkWork(session, 1, 1, 1, 2, {}, dt.date(2030, 1, 1))
    assert work.previous_summary is None


def test_valuation_redoes_its_whole_chunk_whatever_the_previous_summary_says(db: Any, settings: dict[str, Any]) -> None:
    warehouse = db.add_warehouse()
    ids = db.add_products(warehouse.id, 12)
    valuation = Valuation()
    first = process(db, valuation, settings, warehouse.id, ids)
    values = db.scalars(select(Product.stock_value).where(Product.id.in_(ids)).order_by(Product.id))

    again = process(
        db, valuation, settings, warehouse.id, ids,
        previous={"total_stock_value": "999999.99", "products_needing_reorder": 12},
    )

    assert first.items_done == 12
    assert (again.items_done, again.items_failed, again.summary) == (12, 0, first.summary)
    assert db.scalars(select(Product.stock_value).where(Product.id.in_(ids)).order_by(Product.id)) == values


def labelled(db: Any, ids: list[int]) -> list[bool]:
    labels = db.scalars(select(Shipment.label_id).where(Shipment.id.in_(ids)).order_by(Shipment.id))
    return [label is not None for label in labels]


def give_labels(db: Any, ids: list[int], label_id: str = "EARLIER") -> None:
    db.execute(update(Shipment).where(Shipment.id.in_(ids)).values(label_id=label_id, tracking_number="T", label_url="u://"))


def test_shipping_labels_carries_a_redriven_chunk_s_earlier_purchases_over(
    db: Any, settings: dict[str, Any], carrier: Any
) -> None:
    warehouse = db.add_warehouse()
    # Two labelled by the earlier attempt, one refused then (weightless), now fixed; one still refused.
    ids = db.add_shipments(warehouse.id, [1, 2, 3, 4])
    give_labels(db, ids[:2])
    db.execute(update(Shipment).where(Shipment.id == ids[3]).values(weight_grams=0))
    before = carrier.stats()["purchases"]
    earlier = {"labels_bought": 2, "labels_failed": 2, "shipments_skipped": 0}

    outcome = process(db, ShippingLabels(), settings, warehouse.id, ids, previous=earlier)

    assert outcome.summary == {"labels_bought": 3, "labels_failed": 1, "shipments_skipped": 0}
    assert (outcome.items_done, outcome.items_failed) == (3, 1)
    assert [failure.item_id for failure in outcome.failures] == [ids[3]]
    assert labelled(db, ids) == [True, True, True, False]
    assert carrier.stats()["purchases"] - before == 1  # nothing bought twice


def test_shipping_labels_still_counts_what_was_skipped_before_a_redrive(
    db: Any, settings: dict[str, Any], carrier: Any
) -> None:
    warehouse = db.add_warehouse()
    ids = db.add_shipments(warehouse.id, [1, 2, 3])
    # The first had a label from elsewhere (skipped then), the second was bought then, the third refused then.
    give_labels(db, ids[:2])
    earlier = {"labels_bought": 1, "labels_failed": 1, "shipments_skipped": 1}

    outcome = process(db, ShippingLabels(), settings, warehouse.id, ids, previous=earlier)

    assert outcome.summary == {"labels_bought": 2, "labels_failed": 0, "shipments_skipped": 1}
    assert (outcome.items_done, outcome.items_failed) == (3, 0)


def test_shipping_labels_without_a_previous_summary_counts_labels_found_as_skipped(
    db: Any, settings: dict[str, Any], carrier: Any
) -> None:
    warehouse = db.add_warehouse()
    ids = db.add_shipments(warehouse.id, [1, 2, 3])
    give_labels(db, ids[:1], "ELSEWHERE")

    outcome = process(db, ShippingLabels(), settings, warehouse.id, ids)

    assert outcome.summary == {"labels_bought": 2, "labels_failed": 0, "shipments_skipped": 1}
