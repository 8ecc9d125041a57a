"""``warehouse-carrier-stub`` as a process of its own, for tests and benchmarks to count calls against."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

READY_PREFIX = "carrier stub listening on "


class StubServer:
    """A running stub: its base URL, and its ``/v1/stats``, ``/v1/reset`` and ``/v1/config``."""

    def __init__(self, url: str, process: subprocess.Popen[str]) -> None:
        self.url = url
        self.process = process

    def stats(self) -> dict[str, int]:
        return httpx.get(f"{self.url}/v1/stats", timeout=10).raise_for_status().json()

    def reset(self) -> None:
        httpx.post(f"{self.url}/v1/reset", timeout=10).raise_for_status()

    def configure(self, **changes: Any) -> dict[str, Any]:
        return httpx.post(f"{self.url}/v1/config", json=changes, timeout=10).raise_for_status().json()


@contextmanager
def serve_stub(*options: str) -> Iterator[StubServer]:
    """Start ``warehouse-carrier-stub --port 0 OPTIONS...`` and yield it once it listens; stop it after."""
    command = [sys.executable, "-m", "warehouse.scripts.carrier_stub", "--port", "0", *options]
    # stderr goes to ours: a stub that fails says why where the test or benchmark reports it.
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout is not None
            line = process.stdout.readline()
            if not line.startswith(READY_PREFIX):
                raise RuntimeError(f"the carrier stub did not start ({' '.join(command)}): {line!r}")
            yield StubServer(line.removeprefix(READY_PREFIX).strip(), process)
        finally:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
