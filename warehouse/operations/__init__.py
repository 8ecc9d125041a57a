"""The registry of operations a run can apply. Adding one: a module, and one line in ``_builtin``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pyramid.path import DottedNameResolver
from pyramid.settings import aslist

from .base import ChunkOutcome, ChunkWork, ItemFailure, Operation

_registry: dict[str, Operation] = {}


def register(operation: Operation) -> Operation:
    _registry[operation.name] = operation
    return operation


def get(name: str) -> Operation:
    """The operation called ``name``; KeyError if there is none."""
    return _registry[name]


def names() -> list[str]:
    return sorted(_registry)


def default_chunk_size(name: str, settings: Mapping[str, Any]) -> int:
    """Items per chunk for a run of operation ``name`` that asks for no size, from the most specific
    source: ``warehouse.chunk_size.<name>``, else the operation's own ``default_chunk_size``, else the
    deployment's ``warehouse.chunk_size`` (500)."""
    from ..settings import chunk_size, operation_chunk_size

    chosen = operation_chunk_size(settings, name)
    if chosen is None:
        operation = _registry.get(name)
        chosen = operation.default_chunk_size if operation is not None else None
    return chosen or chunk_size(settings)


def check_chunk_sizes(settings: Mapping[str, Any]) -> None:
    """Raise ValueError, naming the setting, for a chunk size setting that is no size or that names
    no operation (a misspelt ``warehouse.chunk_size.<name>`` would otherwise be silently ignored)."""
    prefix = "warehouse.chunk_size."
    for setting in settings:
        if setting.startswith(prefix) and setting.removeprefix(prefix) not in _registry:
            raise ValueError(f"{setting} names no operation (known: {', '.join(names())})")
    for name in names():
        default_chunk_size(name, settings)


def register_from_settings(settings: Mapping[str, Any]) -> None:
    """Register the operations named in ``warehouse.extra_operations`` (dotted names of Operation
    subclasses, space-separated): operations that live in another package, or tests' probes.
    Web app, workers and scripts all call this, so they agree on what exists."""
    resolver = DottedNameResolver()
    for dotted in aslist(settings.get("warehouse.extra_operations", "")):
        register(resolver.resolve(dotted)())


def _builtin() -> None:
    from .shipping_labels import ShippingLabels
    from .valuation import Valuation

    register(Valuation())
    register(ShippingLabels())


_builtin()

__all__ = [
    "ChunkOutcome",
    "ChunkWork",
    "ItemFailure",
    "Operation",
    "check_chunk_sizes",
    "default_chunk_size",
    "get",
    "names",
    "register",
    "register_from_settings",
]
