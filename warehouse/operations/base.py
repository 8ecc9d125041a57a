"""What an operation is: which rows a run covers, what one chunk does, how a run is summarised."""

from __future__ import annotations

import abc
import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from sqlalchemy import ColumnElement, Select
from sqlalchemy.orm import Session


@dataclass(frozen=True)
class ChunkWork:
    """One chunk's slice of a run: items with ``start_id <= id <= end_id`` of one warehouse."""

    session: Session
    run_id: int
    warehouse_id: int
    start_id: int
    end_id: int
    settings: Mapping[str, Any]
    # The day the run was planned on, so date windows do not move under a run that crosses midnight.
    planned_on: dt.date
    # How many items the plan put in this chunk (some may have changed since).
    item_count: int = 0
    # What this chunk's earlier attempt summed, when a redrive has it done again (None otherwise): an
    # operation that redoes only what is still undone carries its earlier counts over from it.
    previous_summary: Mapping[str, Any] | None = None


@dataclass
class ItemFailure:
    item_id: int
    error: str


@dataclass
class ChunkOutcome:
    items_done: int
    items_failed: int = 0
    summary: dict[str, Any] = field(default_factory=dict)
    failures: list[ItemFailure] = field(default_factory=list)


class Operation(abc.ABC):
    """A plug-in that a run applies to one warehouse. Subclass it and register an instance."""

    name: ClassVar[str]
    description: ClassVar[str]
    # The table column that names an item to a person (a product's sku, a shipment's reference), for
    # the run's failures; None lists items by id alone. A Column, not the ORM attribute: an attribute
    # on a class is a descriptor, which would read it from the operation instance.
    item_key: ClassVar[Any] = None
    # Items per chunk when a run asks for no size: None takes the deployment's ``warehouse.chunk_size``
    # (500). An operation whose items cost very differently from a product row's update declares its
    # own; ``warehouse.chunk_size.<name>`` overrides it, and a run's own chunk_size overrides both.
    default_chunk_size: ClassVar[int | None] = None

    @abc.abstractmethod
    def item_ids(self, warehouse_id: int, today: dt.date) -> Select[tuple[int]]:
        """The keyset query: a SELECT of the ``id`` column of every item the run covers."""

    @abc.abstractmethod
    def process_chunk(self, work: ChunkWork) -> ChunkOutcome:
        """Do the work for the items of one chunk, inside ``work.session``'s transaction."""

    @abc.abstractmethod
    def summarise(self, summaries: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
        """Combine the chunks' summaries into the run's result."""

    @staticmethod
    def in_chunk(id_column: ColumnElement[int], work: ChunkWork) -> ColumnElement[bool]:
        return id_column.between(work.start_id, work.end_id)
