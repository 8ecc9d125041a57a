"""A counter of how many threads are inside a block at once, for tests of concurrency limits."""

from __future__ import annotations

import threading
from typing import Any


class InFlight:
    """``with counter:`` around the work a limit guards; ``peak`` is the most ever inside at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.now = 0
        self.peak = 0
        self.finished = 0

    def __enter__(self) -> InFlight:
        with self._lock:
            self.now += 1
            self.peak = max(self.peak, self.now)
        return self

    def __exit__(self, *exc_info: Any) -> None:
        with self._lock:
            self.now -= 1
            self.finished += 1
