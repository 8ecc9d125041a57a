"""What more than one phase of a run needs: the clock, chunk bounds, which chunks are unfinished,
and whether a run has failed past what it tolerates."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import ColumnElement

from ..models import UNFINISHED_CHUNK_STATUSES, Run, RunChunk


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


@dataclass(frozen=True)
class ChunkBounds:
    start_id: int
    end_id: int


def unfinished_chunk(run_id: int, start_id: int) -> tuple[ColumnElement[bool], ...]:
    return (
        RunChunk.run_id == run_id,
        RunChunk.start_id == start_id,
        RunChunk.status.in_(UNFINISHED_CHUNK_STATUSES),
    )


def exceeds_threshold(run: Run) -> bool:
    """True once more items failed than the run tolerates: the rest of the run is not worth doing."""
    if not run.items_failed and not run.chunks_failed:
        return False
    if not run.items_total:
        return True
    return Decimal(run.items_failed) * 100 / Decimal(run.items_total) > Decimal(run.tolerated_failure_percent or 0)
