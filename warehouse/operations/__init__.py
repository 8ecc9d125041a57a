"""The registry of operations a run can apply. Adding one: a module, and one line in ``_builtin``."""

from __future__ import annotations

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


def _builtin() -> None:
    from .valuation import Valuation

    register(Valuation())


_builtin()

__all__ = ["ChunkOutcome", "ChunkWork", "ItemFailure", "Operation", "get", "names", "register"]
