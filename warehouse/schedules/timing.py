"""When a schedule's ticks fall: five-field cron expressions (croniter) read in an IANA time zone
(zoneinfo), every tick stored and compared in UTC.

Ticks are the wall-clock times the cron names, each taken once, then placed on the UTC line by
zoneinfo with ``fold=0`` (PEP 495):

- a wall-clock time that happens twice (the hour repeated when clocks go back) fires at its first
  occurrence only, so a daily '30 2 * * *' runs once on the fall-back day;
- a wall-clock time that never happens (the hour skipped when clocks go forward) fires as if the
  clocks had not moved yet, that much later in the new time: '30 2 * * *' in Europe/Berlin runs at
  03:30 on the spring-forward day, once.

croniter iterating on zone-aware datetimes would run such a daily job twice on the fall-back day
(02:30+02:00 and 02:30+01:00), hence the wall-clock iteration.
"""

from __future__ import annotations

import datetime as dt
import functools
import zoneinfo

from croniter import CroniterBadDateError, CroniterError, croniter

from ..errors import FieldError

CRON_FIELDS = ("minute", "hour", "day-of-month", "month", "day-of-week")
FIELD_RANGES = {
    "minute": "minutes go from 0 to 59",
    "hour": "hours go from 0 to 23",
    "day-of-month": "days of the month go from 1 to 31",
    "month": "months go from 1 to 12 (or JAN to DEC)",
    "day-of-week": "days of the week go from 0 (Sunday) to 6, 7 also Sunday (or SUN to SAT)",
}
FIVE_FIELDS = "cron must be five fields: minute hour day-of-month month day-of-week, such as '0 6 * * *'"
NOT_ZONES = frozenset({"localtime", "posixrules", "Factory"})  # files of the tz database, not zones
# Counting the ticks folded into one walks them one by one (about 40 µs each): past this many, the
# count says "at least".
MAX_COUNTED_TICKS = 10_000


def parse_cron(expression: str) -> str:
    """``expression`` with its fields separated by single spaces; a FieldError naming ``cron``, in
    words, if it is not five fields croniter can iterate, or names no date that ever comes."""
    fields = expression.split()
    if len(fields) != len(CRON_FIELDS) or not expression.isascii():
        raise FieldError("cron", FIVE_FIELDS)
    for position, name in enumerate(CRON_FIELDS):
        # The field alone, with every other field '*': which one is wrong, not only that one is.
        alone = " ".join(field if index == position else "*" for index, field in enumerate(fields))
        if not croniter.is_valid(alone):
            raise FieldError(
                "cron",
                f"cron's {name} field is not valid: {FIELD_RANGES[name]}, written as a number, a range (1-5), "
                f"a list (1,15), a step (*/10) or *",
            )
    normalised = " ".join(fields)
    try:
        croniter(normalised, dt.datetime(2000, 1, 1)).get_next(dt.datetime)
    except CroniterBadDateError:
        raise FieldError("cron", "cron names no date that ever comes (such as the 30th of February)") from None
    except (CroniterError, ValueError):
        raise FieldError("cron", FIVE_FIELDS) from None
    return normalised


@functools.cache
def _zone_names() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones()) - NOT_ZONES


def parse_timezone(name: str) -> zoneinfo.ZoneInfo:
    """The IANA time zone ``name``; a FieldError naming ``timezone`` if the tz database has none.

    Checked against the database's list of names before anything is loaded: a name is never a path.
    """
    if name not in _zone_names():
        raise FieldError("timezone", "timezone must be an IANA time zone name, such as 'Europe/Dublin' or 'UTC'")
    return zoneinfo.ZoneInfo(name)


def _on_utc_line(wall: dt.datetime, zone: zoneinfo.ZoneInfo) -> dt.datetime:
    return wall.replace(tzinfo=zone, fold=0).astimezone(dt.timezone.utc)


def _as_utc(moment: dt.datetime) -> dt.datetime:
    # SQLite hands back naive datetimes; everything stored is UTC.
    return moment.replace(tzinfo=dt.timezone.utc) if moment.tzinfo is None else moment.astimezone(dt.timezone.utc)


def next_tick(cron: str, timezone: str, after: dt.datetime) -> dt.datetime:
    """The first tick strictly after ``after``, in UTC."""
    zone = zoneinfo.ZoneInfo(timezone)
    after = _as_utc(after)
    walls = croniter(cron, after.astimezone(zone).replace(tzinfo=None))
    while True:
        tick = _on_utc_line(walls.get_next(dt.datetime), zone)
        # A wall time of the repeated hour, or one pushed out of a gap, can land at or before ``after``.
        if tick > after:
            return tick


def latest_tick(cron: str, timezone: str, at_or_before: dt.datetime) -> dt.datetime:
    """The last tick at or before ``at_or_before``, in UTC."""
    zone = zoneinfo.ZoneInfo(timezone)
    at_or_before = _as_utc(at_or_before)
    # Start a minute later: croniter's previous tick is strictly before its start.
    walls = croniter(cron, (at_or_before + dt.timedelta(minutes=1)).astimezone(zone).replace(tzinfo=None))
    while True:
        tick = _on_utc_line(walls.get_prev(dt.datetime), zone)
        if tick <= at_or_before:
            return tick


def ticks_from_to(cron: str, timezone: str, first: dt.datetime, last: dt.datetime) -> int:
    """How many ticks fall in [first, last) (``first`` a tick), at most ``MAX_COUNTED_TICKS``."""
    count, tick, last = 0, _as_utc(first), _as_utc(last)
    while tick < last and count < MAX_COUNTED_TICKS:
        count += 1
        tick = next_tick(cron, timezone, tick)
    return count


def local_time(moment: dt.datetime | None, timezone: str) -> dt.datetime | None:
    """``moment`` on the schedule's own clock, for people to read."""
    return None if moment is None else _as_utc(moment).astimezone(zoneinfo.ZoneInfo(timezone))
