"""What a live run page draws: the state of every chunk, who ran them, and items finished over time.

Each answer is one indexed scan of the run's chunks (the unique index on (run_id, start_id)), a few
bytes per chunk, however far the run has got; the timeline is aggregated by the database, so only
its buckets (at most about ``MAX_BUCKETS``) come back.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sqlalchemy import BigInteger, Float, bindparam, cast, extract, func, or_, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.functions import FunctionElement

from ..models import ChunkStatus, RunChunk, WorkerProcess
from .workers import alive_condition

# One letter per chunk state, in the chunk map's ``states`` string.
LETTERS: dict[str, str] = {
    ChunkStatus.PENDING: "p",
    ChunkStatus.RUNNING: "r",
    ChunkStatus.DONE: "d",
    ChunkStatus.FAILED: "f",
    ChunkStatus.SKIPPED: "s",
}

# A chart of more points than this is no clearer, only heavier to send every few seconds.
MAX_BUCKETS = 120
# Bucket widths people read at a glance; past a day, whole days.
ROUND_WIDTHS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)
DAY = 86400


# --- the chunk map -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeShare:
    """What one worker node did of a run: the chunks it holds now, and those it finished."""

    node: str
    alive: bool | None  # None: the ledger has no process of that node (pruned, or never registered)
    chunks_running: int
    chunks_done: int
    chunks_failed: int


@dataclass(frozen=True)
class ChunkMap:
    states: str  # one letter of LETTERS per chunk, in chunk order
    counts: dict[str, int]  # chunk status → chunks, every status present
    nodes: list[NodeShare]  # most chunks done first


@dataclass(frozen=True)
class Tally:
    states: str
    counts: dict[str, int]
    by_node: dict[str, Counter[str]]
    processes: dict[str, set[int]]  # node → the worker process ids its chunks name


def tally(rows: Iterable[tuple[str, str | None, int | None]]) -> Tally:
    """``(status, node, worker id)`` per chunk, in chunk order → the states string, counts by status
    and by node, and the processes of each node."""
    letters: list[str] = []
    counts: Counter[str] = Counter()
    by_node: dict[str, Counter[str]] = defaultdict(Counter)
    processes: dict[str, set[int]] = defaultdict(set)
    for status, node, worker_id in rows:
        letters.append(LETTERS[status])
        counts[status] += 1
        if node is not None:
            by_node[node][status] += 1
            if worker_id is not None:
                processes[node].add(worker_id)
    return Tally("".join(letters), {str(status): counts[status] for status in LETTERS}, dict(by_node), dict(processes))


def node_shares(by_node: Mapping[str, Counter[str]], alive: Mapping[str, bool]) -> list[NodeShare]:
    """The nodes of a tally, most chunks done first (then by name, so the order is stable)."""
    shares = [
        NodeShare(
            node=node,
            alive=alive.get(node),
            chunks_running=counts[ChunkStatus.RUNNING],
            chunks_done=counts[ChunkStatus.DONE],
            chunks_failed=counts[ChunkStatus.FAILED],
        )
        for node, counts in by_node.items()
    ]
    return sorted(shares, key=lambda share: (-share.chunks_done, share.node))


def chunk_map(session: Session, run_id: int, dead_before: dt.datetime) -> ChunkMap:
    """The run's chunks in order, and the nodes that ran them (alive: a process of the node heartbeat
    since ``dead_before`` and has not stopped)."""
    rows = session.execute(
        select(RunChunk.status, RunChunk.worker_hostname, RunChunk.worker_id)
        .where(RunChunk.run_id == run_id)
        .order_by(RunChunk.start_id)
    )
    counted = tally(rows)
    alive = nodes_alive(session, counted.by_node, counted.processes, dead_before)
    return ChunkMap(counted.states, counted.counts, node_shares(counted.by_node, alive))


def nodes_alive(
    session: Session, nodes: Iterable[str], processes: Mapping[str, set[int]], dead_before: dt.datetime
) -> dict[str, bool]:
    """Node → whether any of its processes is alive; nodes the ledger has no process of are left out.

    A node's processes are the rows of that node name, and the rows its chunks name by id: a chunk's
    ``worker_hostname`` is what its task was told its node is, which the embedded worker's thread
    pool tells as the bare host name, not the node name its process registered under.
    """
    names = list(nodes)
    ids: set[int] = set().union(*processes.values())
    if not names:
        return {}
    rows = session.execute(
        select(WorkerProcess.id, WorkerProcess.node, alive_condition(dead_before))
        .where(or_(WorkerProcess.node.in_(names), WorkerProcess.id.in_(ids)))
    ).all()
    alive: dict[str, bool] = {}
    for node in names:
        mine = [bool(is_alive) for worker_id, name, is_alive in rows if name == node or worker_id in processes.get(node, ())]
        if mine:
            alive[node] = any(mine)
    return alive


# --- the timeline ------------------------------------------------------------------------------------


def bucket_seconds(span_seconds: float, max_buckets: int = MAX_BUCKETS) -> int:
    """The narrowest round width that cuts ``span_seconds`` into at most ``max_buckets`` buckets."""
    for width in ROUND_WIDTHS:
        if math.ceil(span_seconds / width) <= max_buckets:
            return width
    return DAY * math.ceil(span_seconds / (DAY * max_buckets))


@dataclass(frozen=True)
class Bucket:
    start: dt.datetime
    items: int
    chunks: int
    items_per_second: float


@dataclass(frozen=True)
class Timeline:
    started_at: dt.datetime | None
    bucket_seconds: int
    buckets: list[Bucket]


def fill_buckets(
    started_at: dt.datetime, end: dt.datetime, width: int, filled: Iterable[tuple[int, int, int]]
) -> list[Bucket]:
    """Every bucket from ``started_at`` to ``end``, empty ones as zeros, from ``(index, chunks, items)``.

    A chunk a worker's clock puts before the start or past the end is counted in the first or the
    last bucket: clocks differ a little between machines, and the chart must not grow for it.
    """
    count = max(1, math.ceil((end - started_at).total_seconds() / width))
    chunks, items = [0] * count, [0] * count
    for index, chunks_in, items_in in filled:
        index = min(max(int(index), 0), count - 1)
        chunks[index] += int(chunks_in)
        items[index] += int(items_in or 0)
    step = dt.timedelta(seconds=width)
    return [
        Bucket(started_at + i * step, items[i], chunks[i], round(items[i] / width, 2)) for i in range(count)
    ]


class epoch_seconds(FunctionElement):  # noqa: N801 (a SQL function, named as one)
    """Seconds since 1970 of a timestamp, with its fraction: ``extract('epoch', ...)`` on SQLite
    keeps whole seconds only, which would put chunks in the wrong 1-second bucket."""

    type = Float()
    inherit_cache = True
    name = "epoch_seconds"


@compiles(epoch_seconds)
def _epoch_seconds(element: epoch_seconds, compiler, **kw) -> str:  # type: ignore[no-untyped-def]
    (moment,) = element.clauses
    return compiler.process(extract("epoch", moment), **kw)


@compiles(epoch_seconds, "sqlite")
def _epoch_seconds_sqlite(element: epoch_seconds, compiler, **kw) -> str:  # type: ignore[no-untyped-def]
    # julianday counts days, fraction included, from noon on 24 November 4714 BC; 1970 is day 2440587.5.
    return f"((julianday({compiler.process(element.clauses, **kw)}) - 2440587.5) * 86400.0)"


def _bucket_index():  # type: ignore[no-untyped-def]
    """Which bucket a chunk's finished_at falls in, as whole milliseconds since the start divided by
    the width: integer division is the same on both databases (toward zero, and the few negative
    ones go to the first bucket anyway)."""
    finished_ms = cast(epoch_seconds(RunChunk.finished_at) * 1000, BigInteger)
    return (finished_ms - bindparam("origin_ms", type_=BigInteger)) // bindparam("width_ms", type_=BigInteger)


def timeline(session: Session, run_id: int, started_at: dt.datetime | None, end: dt.datetime) -> Timeline:
    """Items and chunks finished per bucket, from the run's start to ``end`` (its end, or now)."""
    if started_at is None:
        return Timeline(None, ROUND_WIDTHS[0], [])
    started_at = _aware(started_at)
    end = max(_aware(end), started_at)
    width = bucket_seconds((end - started_at).total_seconds())
    # Grouped over a subquery, so that GROUP BY names a column: PostgreSQL cannot tell that two copies
    # of an expression with bound parameters are the same expression.
    finished = (
        select(_bucket_index().label("bucket"), (RunChunk.items_done + RunChunk.items_failed).label("finished_items"))
        .where(
            RunChunk.run_id == run_id,
            RunChunk.status.in_((ChunkStatus.DONE, ChunkStatus.FAILED)),
            RunChunk.finished_at.is_not(None),
        )
        .subquery()
    )
    rows = session.execute(
        select(finished.c.bucket, func.count(), func.sum(finished.c.finished_items)).group_by(finished.c.bucket),
        {"origin_ms": round(started_at.timestamp() * 1000), "width_ms": width * 1000},
    )
    return Timeline(started_at, width, fill_buckets(started_at, end, width, rows))


def _aware(moment: dt.datetime) -> dt.datetime:
    """SQLite hands back naive datetimes; the ledger only ever stores UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)
