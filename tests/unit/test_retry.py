import pytest
import sqlalchemy.exc

from tasks.retry import is_transient
from warehouse.backoff import backoff_seconds


@pytest.mark.parametrize("retries", range(6))
def test_backoff_waits_between_half_and_all_of_its_doubling_step(retries: int) -> None:
    step = 2 * 2**retries
    waits = [backoff_seconds(retries, factor=2, maximum=120) for _ in range(200)]
    assert all(step / 2 <= wait <= step for wait in waits)
    assert len(set(waits)) > 1  # jittered, not one fixed value


def test_backoff_is_capped() -> None:
    assert all(30 <= backoff_seconds(10, factor=2, maximum=60) <= 60 for _ in range(50))


def test_database_and_connection_errors_are_transient_others_are_not() -> None:
    assert is_transient(sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception("server closed")))
    assert is_transient(ConnectionRefusedError())
    assert not is_transient(ValueError("bad data"))
    assert not is_transient(sqlalchemy.exc.IntegrityError("INSERT", {}, Exception("duplicate key")))
