"""A few tenths of a second of memory for GET /api/runs/{id}, the request every client polls.

While a run goes, every client polls its status, and each answer used to cost a database round trip
and several milliseconds of the web process's CPU (docs/benchmarks.md, "Status endpoint"). A run's
progress changes a few times a second at most, as chunks finish; so each web process keeps the last
answer for a run for ``warehouse.run_status_cache_seconds`` (production.ini: 0.5; off when 0, the
default) and serves repeats from memory. An answer is then at most that old: a client sees a chunk's
progress, or the run's end, that much later. A cancel or resume through this process forgets the
run's entry at once; other processes' entries age out.

What is kept is the answer's JSON, rendered once. A repeat is answered by ``status_repeat_tween``
before the transaction and the view: at 500 polls a second, Pyramid's whole path for a repeat was
most of the web process's CPU (docs/benchmarks.md, "Pollers"). It answers only what the view would
answer the same way (a GET of ``/api/runs/{id}`` whose answer is kept, by a token that may view);
anything else goes the whole way, so errors, 401 and 404 are exactly the view's.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from cachetools import TTLCache
from pyramid.config import Configurator
from pyramid.registry import Registry
from pyramid.request import Request
from pyramid.response import Response

from .security import VIEW, Root

SETTING = "warehouse.run_status_cache_seconds"
# Runs whose answer one process keeps at once: far more than are ever polled together.
MAX_RUNS = 4096
STATUS_PATH_PREFIX = "/api/runs/"
# The document's RunId: an integer from 1 to 2**31 - 1.
MAX_RUN_ID = 2**31 - 1
JSON = "application/json"


class RunStatusCache:
    def __init__(self, seconds: float, timer: Callable[[], float] = time.monotonic) -> None:
        self._entries: TTLCache[int, dict[str, Any]] | None = TTLCache(MAX_RUNS, seconds, timer) if seconds > 0 else None
        # TTLCache is not thread-safe, and waitress serves requests from a thread pool.
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self._entries is not None

    def peek(self, run_id: int) -> Any:
        """The run's kept answer if it is recent enough, else None (nothing is loaded)."""
        if self._entries is None:
            return None
        with self._lock:
            return self._entries.get(run_id)

    def get(self, run_id: int, load: Callable[[], Any]) -> Any:
        """The run's answer from memory if it is recent enough, else ``load()``'s (then kept)."""
        if self._entries is None:
            return load()
        cached = self.peek(run_id)
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


def json_answer(body: bytes) -> Response:
    """The status answer as the view sends it."""
    return Response(body=body, content_type=JSON, charset=None)


def parse_run_id(raw: str) -> int | None:
    """``"42"`` → 42; None for what the document's RunId refuses."""
    if raw.isascii() and raw.isdigit() and 1 <= int(raw) <= MAX_RUN_ID:
        return int(raw)
    return None


def run_id_of_status_path(path: str) -> int | None:
    """``/api/runs/42`` → 42; None for any other path, or an id the document's RunId refuses."""
    return parse_run_id(path[len(STATUS_PATH_PREFIX):]) if path.startswith(STATUS_PATH_PREFIX) else None


def status_repeat_tween_factory(handler: Callable[[Request], Response], registry: Registry) -> Callable[[Request], Response]:
    cache: RunStatusCache = registry["run_status_cache"]
    if not cache.enabled:
        return handler

    def status_repeat_tween(request: Request) -> Response:
        if request.method == "GET":
            run_id = run_id_of_status_path(request.path_info)
            if run_id is not None:
                body = cache.peek(run_id)
                if body is not None and request.has_permission(VIEW, Root(request)):
                    return json_answer(body)
        return handler(request)

    return status_repeat_tween


def includeme(config: Configurator) -> None:
    seconds = float(config.registry.settings.get(SETTING, 0) or 0)
    if seconds < 0:
        raise ValueError(f"{SETTING} must be 0 (off) or more, not {seconds}")
    config.registry["run_status_cache"] = RunStatusCache(seconds)
    # Under the request guard (a request it refuses is refused here too), over the transaction.
    config.add_tween("warehouse.run_status.status_repeat_tween_factory", under="warehouse.request_guard.request_guard_tween_factory")
