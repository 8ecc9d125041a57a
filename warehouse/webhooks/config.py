"""The webhook settings, read in one place."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pyramid.settings import asbool

DEFAULT_TIMEOUT_SECONDS = 10.0
DEFAULT_RETRY_HOURS = 24.0
DEFAULT_BACKOFF_SECONDS = 10.0
DEFAULT_BACKOFF_MAX_SECONDS = 3600.0


def timeout_seconds(settings: Mapping[str, Any]) -> float:
    """How long one delivery may take, connecting and answering, before it counts as failed."""
    return float(settings.get("warehouse.webhook_timeout_seconds", DEFAULT_TIMEOUT_SECONDS))


def retry_hours(settings: Mapping[str, Any]) -> float:
    """How long after its event a delivery is tried again before it is given up."""
    return float(settings.get("warehouse.webhook_retry_hours", DEFAULT_RETRY_HOURS))


def backoff_seconds(settings: Mapping[str, Any]) -> float:
    """The first wait between attempts; it doubles each time, with jitter."""
    return float(settings.get("warehouse.webhook_backoff_seconds", DEFAULT_BACKOFF_SECONDS))


def backoff_max_seconds(settings: Mapping[str, Any]) -> float:
    return float(settings.get("warehouse.webhook_backoff_max_seconds", DEFAULT_BACKOFF_MAX_SECONDS))


def allow_private_addresses(settings: Mapping[str, Any]) -> bool:
    """Whether receivers may be on loopback or private networks (development and tests only)."""
    return asbool(settings.get("warehouse.webhooks_allow_private_addresses", False))


def lease_seconds(settings: Mapping[str, Any]) -> float:
    """How long a claimed attempt is its sender's alone: past that (the sender died), another
    process may claim the delivery again. Twice the timeout and a margin: an attempt that is still
    going is never taken over."""
    return 2 * timeout_seconds(settings) + 5
