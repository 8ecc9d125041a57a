"""How long to wait before the next attempt at something that failed for now."""

from __future__ import annotations

import random


def backoff_seconds(retries: int, factor: float = 2, maximum: float = 120) -> float:
    """Exponential backoff with "equal jitter": half of ``factor * 2**retries`` (capped), plus a
    random part up to the other half.

    The fixed half keeps five retries from all landing within the first second, as full jitter can,
    which would spend them before a restarting database is back; the random half spreads the herd.
    """
    step = min(maximum, factor * 2**retries)
    return step / 2 + random.uniform(0, step / 2)
