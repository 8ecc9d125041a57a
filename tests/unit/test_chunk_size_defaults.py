"""Which chunk size a run gets when it asks for none: the operation's own setting, else the operation's
declared default, else the deployment's ``warehouse.chunk_size``; and chunk size settings that are no
size, or name no operation, refused at start with the setting named."""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar

import pytest

from tasks.app import make_celery
from warehouse import operations
from warehouse.operations.shipping_labels import ShippingLabels
from warehouse.operations.valuation import Valuation


class BigChunks(Valuation):
    name = "big_chunks_probe"
    default_chunk_size: ClassVar[int | None] = 4_000


@pytest.fixture
def big_chunks() -> Iterator[str]:
    operations.register(BigChunks())
    yield BigChunks.name
    operations._registry.pop(BigChunks.name)


def test_product_operations_keep_500_as_the_design_fixes_it() -> None:
    assert Valuation.default_chunk_size is None
    assert operations.default_chunk_size("valuation", {}) == 500


def test_shipping_labels_declares_a_default_of_its_own() -> None:
    assert ShippingLabels.default_chunk_size not in (None, 500)
    assert operations.default_chunk_size("shipping_labels", {}) == ShippingLabels.default_chunk_size


def test_the_deployment_default_applies_to_operations_that_declare_none() -> None:
    settings = {"warehouse.chunk_size": "800"}

    assert operations.default_chunk_size("valuation", settings) == 800
    # An operation's own default is more specific than the deployment's.
    assert operations.default_chunk_size("shipping_labels", settings) == ShippingLabels.default_chunk_size


def test_an_operation_s_own_setting_wins_over_its_declared_default(big_chunks: str) -> None:
    settings = {"warehouse.chunk_size": "800", f"warehouse.chunk_size.{big_chunks}": "1200"}

    assert operations.default_chunk_size(big_chunks, {"warehouse.chunk_size": "800"}) == 4_000
    assert operations.default_chunk_size(big_chunks, settings) == 1_200
    assert operations.default_chunk_size("valuation", settings) == 800


def test_an_empty_setting_counts_as_unset() -> None:
    assert operations.default_chunk_size("valuation", {"warehouse.chunk_size": "", "warehouse.chunk_size.valuation": " "}) == 500


@pytest.mark.parametrize(
    ("setting", "value", "words"),
    [
        ("warehouse.chunk_size", "lots", "warehouse.chunk_size must be a whole number of items, not 'lots'"),
        ("warehouse.chunk_size", "0", "warehouse.chunk_size must be from 1 to 100,000, not 0"),
        ("warehouse.chunk_size.valuation", "200000", "warehouse.chunk_size.valuation must be from 1 to 100,000, not 200,000"),
        ("warehouse.chunk_size.valuaton", "500", "warehouse.chunk_size.valuaton names no operation (known: "),
    ],
)
def test_a_chunk_size_setting_that_is_no_size_stops_the_app_at_start(setting: str, value: str, words: str) -> None:
    settings = {
        "sqlalchemy.url": "sqlite://",
        "celery.broker_url": "memory://",
        "celery.result_backend": "cache+memory://",
        setting: value,
    }

    with pytest.raises(ValueError) as raised:
        make_celery(settings)

    assert words in str(raised.value)
