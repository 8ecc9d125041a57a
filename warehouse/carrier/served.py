"""``warehouse-carrier-stub`` as a process of its own, for tests and benchmarks to count calls against."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any


READY_PREFIX = "carrier stub listening on "


class StubServer:
    """A running stub: its base URL, and its ``/v1/stats``, ``/v1/reset`` and ``/v1/config``."""

    def __init__(self, url: str, process: subprocess.Popen[str]) -> None:
        self.url = url
        self.process = process

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.url}{path}", data=data, method=method, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:  # raises for any error status
            return json.load(response)

    def stats(self) -> dict[str, int]:
        return self._call("GET", "/v1/stats")

    def reset(self) -> None:
        self._call("POST", "/v1/reset", {})

    def configure(self, **changes: Any) -> dict[str, Any]:
        return self._call("POST", "/v1/config", changes)


@contextmanager
def serve_stub(*options: str, host_prefix: Sequence[str] = ()) -> Iterator[StubServer]:
    """Start ``warehouse-carrier-stub --port 0 OPTIONS...`` and yield it once it listens; stop it after.

    ``host_prefix`` runs it elsewhere: ``ip netns exec NAMESPACE`` (give ``--host`` an address there).
    """
    command = [*host_prefix, sys.executable, "-m", "warehouse.scripts.carrier_stub", "--port", "0", *options]
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
