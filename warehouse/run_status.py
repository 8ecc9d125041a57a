"""A few tenths of a second of memory for GET /api/runs/{id}, the request every client polls.

While a run goes, every client polls its status, and each answer used to cost a database round trip
and several milliseconds of the web process's CPU (docs/benchmarks.md, "Status endpoint"). A run's
progress changes a few times a second at most, as chunks finish; so each web process keeps the last
answer for a run for ``warehouse.run_status_cache_seconds`` (production.ini: 0.5; off when 0, the
default) and serves repeats from memory. Past that time, the first request loads the next answer and
those meanwhile get the last one. An answer is then at most that old, plus one load: a client sees a
chunk's progress, or the run's end, that much later. A cancel or resume through this process forgets the
run's entry at once; other processes' entries age out.

What is kept is the answer's JSON, rendered once. A repeat is answered by ``StatusRepeats``, a WSGI
layer in front of Pyramid's router: at 500 polls a second, the router's path for a repeat (request,
tweens, transaction, view) took twice the web process's CPU of everything else, the server's HTTP
included (docs/benchmarks.md, "Pollers"). It answers only what the view would answer the same way (a
GET of ``/api/runs/{id}`` with no body, whose answer is kept, with a token the security policy lets
view); anything else goes the whole way, so errors, 401 and 404 are exactly the view's.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cachetools import LRUCache
from pyramid.config import Configurator
from pyramid.interfaces import ISecurityPolicy
from pyramid.request import Request
from pyramid.response import Response
from pyramid.router import Router

from .logs.requests import request_id_header
from .metrics import recording as metrics
from .security import VIEW

SETTING = "warehouse.run_status_cache_seconds"
# Runs whose answer one process keeps at once: far more than are ever polled together.
MAX_RUNS = 4096
STATUS_PATH_PREFIX = "/api/runs/"
STATUS_ROUTE = "api.run"
# The document's RunId: an integer from 1 to 2**31 - 1.
MAX_RUN_ID = 2**31 - 1
JSON = "application/json"


@dataclass
class _Entry:
    answer: Any
    loaded_at: float
    loading: bool = False  # a request is loading a newer answer right now


class RunStatusCache:
    """The last answer per run, fresh for ``seconds``; past that, one request loads the next while
    the others are answered with the last (so the database sees one query per run per ``seconds``
    whatever the number of pollers, rather than one per request that arrives during a load)."""

    def __init__(self, seconds: float, timer: Callable[[], float] = time.monotonic, max_runs: int = MAX_RUNS) -> None:
        self.seconds = seconds
        self._timer = timer
        self._entries: LRUCache[int, _Entry] = LRUCache(max_runs)
        # LRUCache is not thread-safe, and the web server runs requests on several threads.
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.seconds > 0

    def peek(self, run_id: int) -> Any:
        """The run's kept answer if it is fresh, or while another request loads the next; else None."""
        if not self.enabled:
            return None
        with self._lock:
            entry = self._entries.get(run_id)
            if entry is not None and (entry.loading or self._timer() - entry.loaded_at < self.seconds):
                return entry.answer
        return None

    def get(self, run_id: int, load: Callable[[], Any]) -> Any:
        """The run's answer from memory (as ``peek``), else ``load()``'s, then kept."""
        if not self.enabled:
            return load()
        with self._lock:
            entry = self._entries.get(run_id)
            if entry is not None:
                if entry.loading or self._timer() - entry.loaded_at < self.seconds:
                    return entry.answer
                entry.loading = True  # this request loads; the others meanwhile get the last answer
        # Loaded outside the lock: a slow database must not hold up the other runs' answers.
        try:
            answer = load()
        except BaseException:
            with self._lock:
                if self._entries.get(run_id) is entry and entry is not None:
                    entry.loading = False
            raise
        with self._lock:
            self._entries[run_id] = _Entry(answer, self._timer())
        return answer

    def forget(self, run_id: int) -> None:
        """Drop the run's answer, so that the next request loads it (a cancel or resume here)."""
        with self._lock:
            self._entries.pop(run_id, None)


def run_status_cache(request: Request) -> RunStatusCache:
    return request.registry["run_status_cache"]


def json_answer(body: bytes) -> Response:
    """The status answer as the view sends it."""
    return Response(body=body, content_type=JSON, charset=None)


def parse_run_id(raw: str) -> int | None:
    """``"42"`` → 42; None for what the document's RunId refuses."""
    # At most 10 digits before int(): Python refuses to convert more than 4,300 (a ValueError, a 500).
    if len(raw.lstrip("0")) <= 10 and raw.isascii() and raw.isdigit() and 1 <= int(raw) <= MAX_RUN_ID:
        return int(raw)
    return None


def run_id_of_status_path(path: str) -> int | None:
    """``/api/runs/42`` → 42; None for any other path, or an id the document's RunId refuses."""
    return parse_run_id(path[len(STATUS_PATH_PREFIX):]) if path.startswith(STATUS_PATH_PREFIX) else None


class StatusRepeats:
    """The WSGI app: Pyramid's router, with repeats of the status answered in front of it."""

    def __init__(self, router: Router) -> None:
        self.router = router
        self.registry = router.registry
        self.cache: RunStatusCache = router.registry["run_status_cache"]
        self.policy = router.registry.getUtility(ISecurityPolicy)
        self.viewing_roles = self.policy.roles_permitted(VIEW)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if (environ["REQUEST_METHOD"] == "GET" and environ.get("CONTENT_LENGTH") in (None, "", "0")
                and "HTTP_TRANSFER_ENCODING" not in environ):
            run_id = run_id_of_status_path(environ.get("PATH_INFO", ""))
            if run_id is not None:
                started = time.perf_counter()
                body = self.cache.peek(run_id)
                if body is not None and self.policy.role_for(environ.get("HTTP_AUTHORIZATION", "")) in self.viewing_roles:
                    start_response("200 OK", [("Content-Type", JSON), ("Content-Length", str(len(body))), request_id_header(environ)])
                    # Counted as the router would have (warehouse.metrics.web): same route, same figures.
                    metrics.http_request(STATUS_ROUTE, "GET", 200, time.perf_counter() - started)
                    return [body]
        return self.router(environ, start_response)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.router, name)  # the rest of the Router's face (tests, scripts)


def includeme(config: Configurator) -> None:
    seconds = float(config.registry.settings.get(SETTING, 0) or 0)
    if seconds < 0:
        raise ValueError(f"{SETTING} must be 0 (off) or more, not {seconds}")
    config.registry["run_status_cache"] = RunStatusCache(seconds)


def serving_repeats(router: Router) -> Router | StatusRepeats:
    """``router``, with ``StatusRepeats`` in front if the cache is on."""
    return StatusRepeats(router) if router.registry["run_status_cache"].enabled else router
