"""The embedded default's result backend (development.ini: ``celery.result_backend = embedded://``).

Celery's in-memory backend (``cache+memory://``) cannot carry a big chord. Each header task's return
restores the whole group from the backend to count it (``GroupResult.restore``: every child's id,
an AsyncResult each), so a run of N chunks costs N² in all: 4,000 chunks ran at about 5 a second.
And it keeps results in a cache of 5,000 entries, so past 5,000 chunks the callback's join waits
for results that were evicted.

This is that backend with the chord Redis's backend has: the size Celery announces
(``set_chord_size``) and each part's result kept per group in memory, the callback sent with them,
in order, when the last part returns; nothing else is stored. The tasks and the chord are the same
as production's, and since the chord keeps its header's results, the chunks need not store theirs
(tasks/canvas.py). Everything lives in this process, as the in-memory broker does.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from celery import states
from celery.backends.cache import CacheBackend
from celery.canvas import maybe_signature
from celery.exceptions import ChordError

logger = logging.getLogger(__name__)


@dataclass
class _Chord:
    size: int | None = None
    parts: list[tuple[int, str, str, Any]] = field(default_factory=list)  # (index, task id, state, result)


# Celery makes a backend per thread (app.backend is thread-local), and the thread that sends a chord
# is not the one its parts return on: what they share lives here, as Celery's memory cache does.
# Group ids are UUIDs, so the apps of one process never mix their chords up.
_CHORDS: dict[str, _Chord] = {}
_CHORDS_LOCK = threading.Lock()


class EmbeddedResultBackend(CacheBackend):
    """Celery's memory cache backend, its chord counted in O(1) per part."""

    keeps_chord_results = True  # the chord hands its header's results to the callback by itself

    def __init__(self, app: Any, url: str | None = None, **kwargs: Any) -> None:
        kwargs.pop("backend", None)
        super().__init__(app, backend="memory", url="memory://", **kwargs)

    def apply_chord(self, header_result_args: Any, body: Any, **kwargs: Any) -> None:
        # Nothing saved: no part restores the group (that restore was the N² cost).
        self.ensure_chords_allowed()

    def set_chord_size(self, group_id: str, chord_size: int) -> None:
        with _CHORDS_LOCK:
            _CHORDS.setdefault(group_id, _Chord()).size = chord_size

    def on_chord_part_return(self, request: Any, state: str, result: Any, **kwargs: Any) -> None:
        group_id = request.group
        if not group_id or not request.chord:
            return
        with _CHORDS_LOCK:
            chord = _CHORDS.setdefault(group_id, _Chord())
            chord.parts.append((request.group_index or 0, request.id, state, result))
            size = chord.size if chord.size is not None else request.chord.get("chord_size")
            if size is None or len(chord.parts) < size:
                return
            del _CHORDS[group_id]
        self._call_back(group_id, request.chord, sorted(chord.parts, key=lambda part: part[0]))

    def _call_back(self, group_id: str, body: Any, parts: list[tuple[int, str, str, Any]]) -> None:
        callback = maybe_signature(body, app=self.app)
        failed = next(((task_id, result) for _, task_id, state, result in parts if state in states.PROPAGATE_STATES), None)
        if failed is not None:
            logger.error("Chord %r: dependency %s raised %r", group_id, *failed)
            self.chord_error_from_stack(callback, ChordError(f"Dependency {failed[0]} raised {failed[1]!r}"))
            return
        try:
            callback.delay([result for _, _, _, result in parts])
        except Exception as error:  # noqa: BLE001 - recorded on the callback, as Celery's backends do
            logger.exception("Chord %r: sending its callback failed", group_id)
            self.chord_error_from_stack(callback, ChordError(f"Callback error: {error!r}"))
