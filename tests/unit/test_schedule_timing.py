"""Cron expressions and time zones checked in words, and the ticks they name, in UTC, across daylight
saving time both ways (warehouse/schedules/timing.py)."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.functional.helpers import assert_plain
from warehouse.errors import FieldError
from warehouse.schedules import latest_tick, next_tick, parse_cron, parse_timezone
from warehouse.schedules.timing import ticks_from_to

UTC = dt.timezone.utc


def at(*parts: int) -> dt.datetime:
    return dt.datetime(*parts, tzinfo=UTC)


@pytest.mark.parametrize(
    ("given", "stored"),
    [("0 6 * * *", "0 6 * * *"), ("*/15  9-17 * * 1-5", "*/15 9-17 * * 1-5"), (" 30 2 1,15 JAN-MAR SUN ", "30 2 1,15 JAN-MAR SUN")],
)
def test_a_five_field_cron_is_accepted_with_its_fields_single_spaced(given: str, stored: str) -> None:
    assert parse_cron(given) == stored


@pytest.mark.parametrize(
    ("cron", "words"),
    [
        ("0 6 * *", "cron must be five fields: minute hour day-of-month month day-of-week, such as '0 6 * * *'"),
        ("0 0 6 * * *", "cron must be five fields"),
        ("@daily", "cron must be five fields"),
        ("", "cron must be five fields"),
        ("0 6 * * *\u00a0x", "cron must be five fields"),
        ("61 * * * *", "cron's minute field is not valid: minutes go from 0 to 59"),
        ("0 24 * * *", "cron's hour field is not valid: hours go from 0 to 23"),
        ("0 6 0 * *", "cron's day-of-month field is not valid"),
        ("0 6 * 13 *", "cron's month field is not valid: months go from 1 to 12"),
        ("0 6 * * 8", "cron's day-of-week field is not valid"),
        ("*/0 * * * *", "cron's minute field is not valid"),
        ("0 6 * * *'; DROP TABLE schedules; --", "cron must be five fields"),
        ("<script> * * * *", "cron's minute field is not valid"),
        ("0\u0000 6 * * *", "cron's minute field is not valid"),
        ("0 0 30 2 *", "cron names no date that ever comes (such as the 30th of February)"),
    ],
)
def test_a_bad_cron_is_refused_in_words_naming_cron(cron: str, words: str) -> None:
    with pytest.raises(FieldError) as refused:
        parse_cron(cron)

    assert refused.value.details == {"field": "cron"}
    assert refused.value.message.startswith(words)
    assert_plain(refused.value.message)


@pytest.mark.parametrize("name", ["UTC", "Europe/Dublin", "America/Argentina/Buenos_Aires", "Asia/Kathmandu"])
def test_an_iana_time_zone_is_accepted(name: str) -> None:
    assert str(parse_timezone(name)) == name


@pytest.mark.parametrize(
    "name", ["Mars/Olympus", "europe/dublin", "Europe/Dublin ", "../../etc/passwd", "/etc/localtime", "localtime", "", "+01:00"]
)
def test_anything_else_is_refused_naming_timezone(name: str) -> None:
    with pytest.raises(FieldError) as refused:
        parse_timezone(name)

    assert refused.value.details == {"field": "timezone"}
    assert refused.value.message == "timezone must be an IANA time zone name, such as 'Europe/Dublin' or 'UTC'"


def test_next_ticks_fall_on_the_schedules_clock_and_are_given_in_utc() -> None:
    assert next_tick("0 6 * * *", "UTC", at(2026, 1, 1, 5, 59)) == at(2026, 1, 1, 6, 0)
    assert next_tick("0 6 * * *", "UTC", at(2026, 1, 1, 6, 0)) == at(2026, 1, 2, 6, 0)  # strictly after
    assert next_tick("0 6 * * *", "Europe/Dublin", at(2026, 7, 1, 12)) == at(2026, 7, 2, 5, 0)  # 06:00 IST
    assert next_tick("0 6 * * *", "Europe/Dublin", at(2026, 12, 1, 12)) == at(2026, 12, 2, 6, 0)  # 06:00 GMT
    assert next_tick("0 9 * * 1", "Asia/Kathmandu", at(2026, 1, 1)) == at(2026, 1, 5, 3, 15)  # +05:45


def test_the_latest_tick_is_the_one_at_or_before_the_moment() -> None:
    assert latest_tick("*/10 * * * *", "UTC", at(2026, 1, 1, 0, 25, 30)) == at(2026, 1, 1, 0, 20)
    assert latest_tick("*/10 * * * *", "UTC", at(2026, 1, 1, 0, 20)) == at(2026, 1, 1, 0, 20)


def daily_ticks(cron: str, zone: str, start: dt.datetime, days: int) -> list[dt.datetime]:
    ticks, moment = [], start
    while (moment := next_tick(cron, zone, moment)) < start + dt.timedelta(days=days):
        ticks.append(moment)
    return ticks


def test_spring_forward_the_skipped_half_hour_still_runs_once_an_hour_later() -> None:
    # Europe/Berlin, 29 March 2026: 02:00 CET becomes 03:00 CEST; 02:30 never happens.
    ticks = daily_ticks("30 2 * * *", "Europe/Berlin", at(2026, 3, 27, 12), days=4)

    assert ticks == [at(2026, 3, 28, 1, 30), at(2026, 3, 29, 1, 30), at(2026, 3, 30, 0, 30), at(2026, 3, 31, 0, 30)]
    # 01:30 UTC on the 29th is 03:30 CEST: the wall time as if the clocks had not gone forward yet.


def test_fall_back_the_repeated_half_hour_runs_once_the_first_time() -> None:
    # Europe/Berlin, 25 October 2026: 03:00 CEST becomes 02:00 CET; 02:30 happens twice.
    ticks = daily_ticks("30 2 * * *", "Europe/Berlin", at(2026, 10, 23, 12), days=4)

    assert ticks == [at(2026, 10, 24, 0, 30), at(2026, 10, 25, 0, 30), at(2026, 10, 26, 1, 30), at(2026, 10, 27, 1, 30)]


def test_an_hourly_cron_across_both_changes_never_fires_twice_at_one_moment() -> None:
    spring = daily_ticks("30 * * * *", "Europe/Berlin", at(2026, 3, 28, 22), days=1)
    autumn = daily_ticks("30 * * * *", "Europe/Berlin", at(2026, 10, 24, 21), days=1)

    for ticks in (spring, autumn):
        assert ticks == sorted(set(ticks))
    # 24 real hours each: in spring every one has its half past (the skipped 02:30 is 03:30, once);
    # in autumn the repeated 02:30 fires the first time only.
    assert len(spring) == 24
    assert len(autumn) == 23


def test_ticks_are_counted_between_two_moments() -> None:
    assert ticks_from_to("0 * * * *", "UTC", at(2026, 1, 1, 0), at(2026, 1, 1, 5)) == 5
    assert ticks_from_to("0 * * * *", "UTC", at(2026, 1, 1, 0), at(2026, 1, 1, 0)) == 0
