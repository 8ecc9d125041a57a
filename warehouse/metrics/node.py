"""A worker node's metrics: its main process serves ``warehouse.worker_metrics_port``, adding up the
figures of every process that ran its tasks, prefork children included.

prometheus_client's multiprocess mode: each process writes its figures to files of its own in one
directory, and the scrape reads them all, so a scrape never sees one child's numbers. The directory
is the node's own (``warehouse.worker_metrics_dir``, else one per main process under the system's
temporary directory) and is emptied when the node starts: figures left by an earlier run of a node
would otherwise be added to this one's. A child's counters outlive it (a replaced child's chunks
still count); its in-flight gauge does not: a child that ended, however it ended, is marked dead.

prometheus_client reads the directory from the environment when it is imported, and the worker's
own metrics must be made after the node chose it: ``recording`` makes them on first use, in the
process that records (a pool child, after the fork).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

PORT_SETTING = "warehouse.worker_metrics_port"
ADDRESS_SETTING = "warehouse.worker_metrics_address"
DIRECTORY_SETTING = "warehouse.worker_metrics_dir"
ENVIRONMENT = "PROMETHEUS_MULTIPROC_DIR"
# gauge_livesum_1234.db: the files of a live-only gauge, by the pid that wrote them.
LIVE_FILE = re.compile(r"^gauge_live\w+_(\d+)\.db$")


def metrics_port(settings: Mapping[str, Any]) -> int | None:
    """The port to serve on, or None if the node serves none; a clear error for a bad value."""
    value = str(settings.get(PORT_SETTING) or "").strip()
    if not value:
        return None
    if not value.isdigit() or not 0 <= int(value) <= 65535:
        raise ValueError(f"{PORT_SETTING} must be a port number from 0 to 65535 (0: any free port), not {value!r}")
    return int(value)


def prepare_directory(settings: Mapping[str, Any]) -> Path:
    """Empty (or make) this node's directory and name it in the environment, which the processes
    the node forks inherit; directories of earlier nodes on this machine that have ended go too."""
    configured = str(settings.get(DIRECTORY_SETTING) or "").strip()
    if configured:
        directory = Path(configured)
    else:
        parent = Path(tempfile.gettempdir()) / "warehouse-worker-metrics"
        _remove_ended_nodes(parent)
        directory = parent / str(os.getpid())
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    os.environ[ENVIRONMENT] = str(directory)
    return directory


def _remove_ended_nodes(parent: Path) -> None:
    if not parent.is_dir():
        return
    for entry in parent.iterdir():
        if entry.name.isdigit() and not _alive(int(entry.name)):
            shutil.rmtree(entry, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True


def _pids_with_live_files(directory: Path) -> Iterator[int]:
    for entry in directory.iterdir():
        match = LIVE_FILE.match(entry.name)
        if match:
            yield int(match.group(1))


class NodeFigures:
    """The node's figures, every process's added up; processes that ended marked dead first (the
    child's own shutdown does so too, but a child killed outright cannot)."""

    def __init__(self, directory: Path) -> None:
        from prometheus_client import CollectorRegistry, multiprocess

        self.directory = directory
        self._mark_process_dead = multiprocess.mark_process_dead
        self._inner = CollectorRegistry(auto_describe=False)
        multiprocess.MultiProcessCollector(self._inner, path=str(directory))

    def collect(self) -> Iterator[Any]:
        for pid in set(_pids_with_live_files(self.directory)):
            if not _alive(pid):
                self._mark_process_dead(pid, str(self.directory))
        yield from self._inner.collect()


def prepare_node(settings: Mapping[str, Any]) -> Path | None:
    """In a worker node's main process, before it forks its pool: the node's directory, emptied and
    named for the processes it will fork (None if the settings name no metrics port)."""
    if metrics_port(settings) is None:
        return None
    directory = prepare_directory(settings)
    from prometheus_client import values

    if not getattr(values.ValueClass, "_multiprocess", False):
        # prometheus_client was imported before the directory was set, so it chose per-process
        # values: `celery` imports its command plugins (Flower's, where Flower is installed) before
        # our app, and Flower imports prometheus_client. Metrics made from now on (ours are made in
        # the pool children, on first use) take the files instead.
        values.ValueClass = values.MultiProcessValue()
    return directory


def serve_node(settings: Mapping[str, Any], directory: Path) -> Any:
    """The HTTP server of the node's figures on the metrics port (its thread runs in the background)."""
    from prometheus_client import CollectorRegistry, start_http_server

    registry = CollectorRegistry(auto_describe=False)
    registry.register(NodeFigures(directory))
    address = str(settings.get(ADDRESS_SETTING) or "0.0.0.0")
    server, _thread = start_http_server(metrics_port(settings) or 0, addr=address, registry=registry)
    logger.info("worker metrics on http://%s:%s/metrics (figures in %s)", address, server.server_port, directory)
    return server


def process_ended(pid: int | None = None) -> None:
    """A process of the node ends: its in-flight figures stop counting at once."""
    directory = os.environ.get(ENVIRONMENT)
    if directory and "prometheus_client" in sys.modules:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid or os.getpid(), directory)
