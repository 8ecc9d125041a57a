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

__all__ = ["ChunkOutcome", "ChunkWork", "ItemFailure", "Operation", "get", "names", "register", "register_from_settings"]
