"""A few tenths of a second of memory for GET /api/runs/{id}, the request every client polls.

While a run goes, every client polls its status, and each answer used to cost a database round trip
and several milliseconds of the web process's CPU (docs/benchmarks.md, "Status endpoint"). A run's
progress changes a few times a second at most, as chunks finish; so each web process keeps the last
answer for a run for ``warehouse.run_status_cache_seconds`` (production.ini: 0.5; off when 0, the
default) and serves repeats from memory. An answer is then at most that old: a client sees a chunk's
progress, or the run's end, that much later. A cancel or resume through this process forgets the
run's entry at once; other processes' entries age out.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from cachetools import TTLCache
from pyramid.config import Configurator
from pyramid.request import Request

SETTING = "warehouse.run_status_cache_seconds"
# Runs whose answer one process keeps at once: far more than are ever polled together.
MAX_RUNS = 4096


class RunStatusCache:
    def __init__(self, seconds: float, timer: Callable[[], float] = time.monotonic) -> None:
        self._entries: TTLCache[int, dict[str, Any]] | None = TTLCache(MAX_RUNS, seconds, timer) if seconds > 0 else None
        # TTLCache is not thread-safe, and waitress serves requests from a thread pool.
        self._lock = threading.Lock()

    def get(self, run_id: int, load: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """The run's answer from memory if it is recent enough, else ``load()``'s (then kept)."""
        if self._entries is None:
            return load()
        with self._lock:
            cached = self._entries.get(run_id)
        if cached is not None:
            return cached
        # Loaded outside the lock: a slow database must not hold up the other runs' answers. Two
        # requests missing together both load; the later one's answer is kept.
        answer = load()
        with self._lock:
            self._entries[run_id] = answer
        return answer

    def forget(self, run_id: int) -> None:
        if self._entries is not None:
            with self._lock:
                self._entries.pop(run_id, None)


def run_status_cache(request: Request) -> RunStatusCache:
    return request.registry["run_status_cache"]


def includeme(config: Configurator) -> None:
    seconds = float(config.registry.settings.get(SETTING, 0) or 0)
    if seconds < 0:
        raise ValueError(f"{SETTING} must be 0 (off) or more, not {seconds}")
    config.registry["run_status_cache"] = RunStatusCache(seconds)
