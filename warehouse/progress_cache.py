"""The progress answers a run page polls (its chunk map, its timeline), made once and shared.

Each costs one scan of the run's chunks, and every viewer of a run polls it every second or two; so
each web process keeps the last answer per run for ``warehouse.run_progress_cache_seconds`` (1 by
default; 0 turns it off), shared by all its viewers, with the loading rules of ``RunStatusCache``
(past that time one request reloads, the others meanwhile get the last answer).

An ended run's answer no longer changes, unless the run itself does (a redrive sets it running
again), and every change of a run bumps its ``updated_at``: so it is kept until its ``updated_at``
moves, and a request past the short interval costs one primary-key read of the run's row.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from cachetools import LRUCache
from pyramid.config import Configurator
from pyramid.request import Request

from .conditional import Representation
from .presenters import TERMINAL_RUN_STATUSES
from .run_status import RunStatusCache

SETTING = "warehouse.run_progress_cache_seconds"
DEFAULT_SECONDS = 1.0
# Runs kept per answer kind: a 20,000-chunk run's chunk map is about 27 kB with its gzip, so this
# bounds a process's memory for them to a few megabytes whatever is polled.
MAX_RUNS = 128
CHUNKS = "run_chunks_answers"
TIMELINE = "run_timeline_answers"


@dataclass(frozen=True)
class RunFacts:
    """What the progress answers need of the run's row (one primary-key read)."""

    id: int
    status: str
    updated_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None

    @property
    def ended(self) -> bool:
        return self.status in TERMINAL_RUN_STATUSES


class ProgressAnswers:
    """One kind of progress answer, per run: fresh for ``seconds``, and an ended run's until it changes."""

    def __init__(self, seconds: float, timer: Callable[[], float] = time.monotonic) -> None:
        self.recent = RunStatusCache(seconds, timer, max_runs=MAX_RUNS)
        self._ended: LRUCache[int, tuple[dt.datetime, Representation]] = LRUCache(MAX_RUNS)
        self._lock = threading.Lock()  # LRUCache is not thread-safe

    def get(
        self, run_id: int, read_run: Callable[[], RunFacts], make: Callable[[RunFacts], Representation]
    ) -> Representation:
        """The run's answer: from memory if fresh, else ``make(read_run())``, unless the run has ended
        and has not changed since its answer was made."""

        def load() -> Representation:
            run = read_run()
            if run.ended:
                with self._lock:
                    kept = self._ended.get(run_id)
                if kept is not None and kept[0] == run.updated_at:
                    return kept[1]
            answer = make(run)
            if run.ended:
                with self._lock:
                    self._ended[run_id] = (run.updated_at, answer)
            return answer

        return self.recent.get(run_id, load)


def progress_answers(request: Request, kind: str) -> ProgressAnswers:
    return request.registry[kind]


def includeme(config: Configurator) -> None:
    seconds = float(config.registry.settings.get(SETTING, DEFAULT_SECONDS))
    if seconds < 0:
        raise ValueError(f"{SETTING} must be 0 (off) or more, not {seconds}")
    for kind in (CHUNKS, TIMELINE):
        config.registry[kind] = ProgressAnswers(seconds)
