"""Schedules: runs that start by themselves, on a cron in a time zone.

- ``timing``: cron expressions and time zones checked, and the ticks they name, in UTC;
- ``editing``: adding, changing, pausing and deleting schedules (the API and the command);
- ``ticker``: due schedules turned into exactly one run (or one skipped tick) per tick;
- ``presenting``: their JSON.
"""

from .editing import create_schedule, delete_schedule, list_schedules, schedule_or_404, update_schedule
from .presenting import recent_ticks, schedule_json, tick_json, ticks_page
from .ticker import Firing, fire_due_schedules, fire_schedule
from .timing import latest_tick, next_tick, parse_cron, parse_timezone

__all__ = [
    "Firing",
    "create_schedule",
    "delete_schedule",
    "fire_due_schedules",
    "fire_schedule",
    "latest_tick",
    "list_schedules",
    "next_tick",
    "parse_cron",
    "parse_timezone",
    "recent_ticks",
    "schedule_json",
    "schedule_or_404",
    "tick_json",
    "ticks_page",
    "update_schedule",
]
