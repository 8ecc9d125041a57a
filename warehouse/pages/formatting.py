"""How the pages write numbers, times and states for people (the templates' filters).

Times are written in UTC inside a ``<time datetime>`` element; the page's script rewrites them in the
viewer's own time zone, so they read right without JavaScript too, only in UTC.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from markupsafe import Markup, escape

# A state is never told by colour alone: each has a word and a symbol as well.
STATUS_LABELS = {
    "pending": ("◌", "Pending"),
    "running": ("▶", "Running"),
    "cancelling": ("■", "Cancelling"),
    "succeeded": ("✓", "Succeeded"),
    "partially_failed": ("⚠", "Partially failed"),
    "failed": ("✗", "Failed"),
    "cancelled": ("■", "Cancelled"),
}


def number(value: Any) -> str:
    """``12345`` → ``12,345``; a missing value → an en dash."""
    if value is None:
        return "–"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.1f}"
    return f"{int(value):,}"


DECIMAL_TEXT = re.compile(r"-?[0-9]+(\.[0-9]+)?")


def figure(value: Any) -> str:
    """A result's value for people: numbers, and amounts of money sent as decimal strings
    (``"12500.00"``), with thousands separators; anything else as it is."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, (int, float)):
        return number(value)
    text = str(value)
    if DECIMAL_TEXT.fullmatch(text):
        whole, _, cents = text.partition(".")
        sign = "-" if whole.startswith("-") else ""
        return f"{sign}{int(whole.lstrip('-')):,}" + (f".{cents}" if cents else "")
    return text


def percent(part: int, whole: int) -> str:
    if not whole:
        return "0 %"
    share = 100 * part / whole
    return f"{share:.0f} %" if share in (0, 100) or share >= 10 else f"{share:.1f} %"


def status_badge(status: str) -> Markup:
    symbol, label = STATUS_LABELS.get(status, ("•", status))
    return Markup('<span class="status status-{0}" data-status="{0}"><span aria-hidden="true">{1}</span> {2}</span>').format(
        escape(status), symbol, label
    )


def when(moment: Any) -> Markup:
    """A time for people: a ``<time>`` the script localises; an en dash if there is none."""
    if moment is None:
        return Markup("–")
    if isinstance(moment, str):
        moment = dt.datetime.fromisoformat(moment)
    if moment.tzinfo is None:  # SQLite hands back naive datetimes; we only ever store UTC
        moment = moment.replace(tzinfo=dt.timezone.utc)
    utc = moment.astimezone(dt.timezone.utc)
    return Markup('<time datetime="{}">{}</time>').format(utc.isoformat(), utc.strftime("%Y-%m-%d %H:%M:%S UTC"))


def duration(seconds: Any) -> str:
    """``3725`` → ``1 h 2 min``: two units at most, as a person says it."""
    if seconds is None:
        return "–"
    seconds = int(round(float(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s" if seconds else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


FILTERS = {"figure": figure, "number": number, "percent": percent, "status_badge": status_badge, "when": when, "duration": duration}
