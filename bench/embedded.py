"""Embedded default: the cost of a chunk in a run of 20,000 chunks against one of 500, and how long a
cancel takes to settle with thousands of chunks still queued, all through ``pserve development.ini``
(SQLite, the in-memory broker and result backend, the worker inside the web process: ``make run``).

The ini is development.ini with only its database file, tokens and port changed. Two warehouses are
seeded with ``warehouse-seed``, of 500 and 20,000 products; each run values one at ``chunk_size`` 1,
so chunks are as cheap as they get and what grows with their number shows. A run's time is its
``finished_at - started_at``; the cost of a chunk, that ÷ its chunks. Runs alternate small and big,
``repeats`` of each. Target: a chunk of the big run costs at most twice one of the small run.

Then a run of the big warehouse is cancelled once 1,000 of its chunks are done (19,000 queued): the
time from the POST of the cancel to the run ``cancelled`` (target ≤ 5 s), and from there to a new
run of the small warehouse succeeding (the queued chunks of the cancelled run are skipped first).
"""

from __future__ import annotations

import argparse
import configparser
import json
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make ``bench`` and the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common, status
from bench.common import BenchError, Environment, Result, log

NAME = "embedded"
SMALL, BIG = 500, 20_000
REPEATS = 3
CANCEL_AFTER_CHUNKS = 1_000
TARGET_RATIO = 2.0
TARGET_CANCEL_SECONDS = 5.0
RUN_TIMEOUT = 900.0
BIN = Path(sys.executable).parent


def development_ini(env: Environment, port: int) -> Path:
    parser = configparser.RawConfigParser()  # raw: the logging format's %(...)s stays as written
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(common.REPO_ROOT / "development.ini")
    parser.set("app:main", "sqlalchemy.url", f"sqlite:///{env.work_dir / 'embedded.sqlite'}")
    parser.set("app:main", "warehouse.tokens", f"operator:{env.operator_token} viewer:{env.viewer_token}")
    parser.set("server:main", "listen", f"{status.HOST}:{port}")
    path = env.work_dir / "embedded.ini"
    with path.open("w") as file:
        parser.write(file)
    return path


class Http:
    def __init__(self, port: int, env: Environment) -> None:
        self.base = f"http://{status.HOST}:{port}"
        self.operator = {"Authorization": f"Bearer {env.operator_token}"}
        self.viewer = {"Authorization": f"Bearer {env.viewer_token}"}

    def call(self, method: str, path: str, headers: dict[str, str], body: Any = None) -> dict[str, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method,
                                         headers={**headers, "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def start(self, code: str) -> int:
        return self.call("POST", f"/api/warehouses/{code}/runs", self.operator, {"operation": "valuation", "chunk_size": 1})["id"]

    def run(self, run_id: int) -> dict[str, Any]:
        return self.call("GET", f"/api/runs/{run_id}", self.viewer)

    def wait(self, run_id: int, until: Any, timeout: float = RUN_TIMEOUT) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while not until(run := self.run(run_id)):
            if time.monotonic() > deadline:
                raise BenchError(f"run {run_id} still {run['status']} after {timeout:.0f} s: {run}")
            time.sleep(0.05)
        return run


def ended(run: dict[str, Any]) -> bool:
    return run["status"] in common.TERMINAL_STATUSES


def ledger_seconds(run: dict[str, Any]) -> float:
    from datetime import datetime

    return (datetime.fromisoformat(run["finished_at"]) - datetime.fromisoformat(run["started_at"])).total_seconds()


@contextmanager
def pserve(env: Environment, ini: Path, port: int) -> Iterator[status.Server]:
    with status.served("pserve development.ini", [str(BIN / "pserve"), str(ini)], port,
                       env.work_dir / "pserve-embedded.log") as server:
        status.wait_until_answering(server, "/api/warehouses/small", env.viewer_token)
        yield server


def run(env: Environment, *, repeats: int = REPEATS, big: int = BIG) -> Result:
    port = status.free_port()
    ini = development_ini(env, port)
    subprocess.run([str(BIN / "initialize_warehouse_db"), str(ini)], check=True, capture_output=True)
    for code, products in (("small", SMALL), ("big", big)):
        subprocess.run([str(BIN / "warehouse-seed"), str(ini), "--warehouse", code, "--products", str(products),
                        "--shipments", "0"], check=True, capture_output=True)
    log(f"{NAME}: seeded {SMALL:,} and {big:,} products in SQLite")
    per_chunk: dict[str, list[float]] = {"small": [], "big": []}
    wrong: list[str] = []
    with pserve(env, ini, port):
        http = Http(port, env)
        http.wait(http.start("small"), ended)  # unmeasured: the first run warms the process up
        for round_number in range(1, repeats + 1):
            for code, chunks in (("small", SMALL), ("big", big)):
                done = http.wait(http.start(code), ended)
                if done["status"] != "succeeded" or done["chunks"]["done"] != chunks:
                    wrong.append(f"run {done['id']} of {code}: {done['status']}, {done['chunks']}")
                per_chunk[code].append(ledger_seconds(done) / chunks * 1000)
            log(f"{NAME}: round {round_number}: {per_chunk['small'][-1]:.2f} ms a chunk of {SMALL:,},"
                f" {per_chunk['big'][-1]:.2f} ms a chunk of {big:,}")

        cancelled_id = http.start("big")
        http.wait(cancelled_id, lambda r: r["chunks"]["done"] >= CANCEL_AFTER_CHUNKS or ended(r))
        asked = time.perf_counter()
        http.call("POST", f"/api/runs/{cancelled_id}/cancel", http.operator, {})
        cancelled = http.wait(cancelled_id, ended, timeout=120)
        settle = time.perf_counter() - asked
        next_run = http.wait(http.start("small"), ended)
        after = time.perf_counter() - asked
    log(f"{NAME}: cancel settled in {settle:.1f} s; the next run ended {after:.1f} s after the cancel")

    result = Result(NAME)
    small, large = statistics.median(per_chunk["small"]), statistics.median(per_chunk["big"])
    result.figure(f"a chunk of a {SMALL:,}-chunk run", f"{small:.2f} ms",
                  f"median of {repeats}; chunk_size 1; the ledger's finished_at - started_at ÷ chunks")
    result.figure(f"a chunk of a {big:,}-chunk run", f"{large:.2f} ms ({large / small:.2f} ×)",
                  f"target ≤ {TARGET_RATIO:g} × a chunk of the small run; all runs {', '.join(f'{v:.2f}' for v in per_chunk['big'])} ms")
    result.figure(f"cancel with {big - CANCEL_AFTER_CHUNKS:,} chunks queued", f"{settle:.1f} s to cancelled",
                  f"target ≤ {TARGET_CANCEL_SECONDS:g} s; a new run of {SMALL:,} chunks then ended {after:.1f} s after the cancel")
    result.check("every run succeeded with every chunk done", not wrong, "; ".join(wrong) or "all")
    result.check("the cancelled run ended cancelled", cancelled["status"] == "cancelled", cancelled["status"])
    result.check("the run after the cancel succeeded", next_run["status"] == "succeeded", next_run["status"])
    result.target(f"a chunk of the big run ≤ {TARGET_RATIO:g} × one of the small run", large <= TARGET_RATIO * small,
                 f"{large / small:.2f} ×")
    result.target(f"cancel settled ≤ {TARGET_CANCEL_SECONDS:g} s", settle <= TARGET_CANCEL_SECONDS, f"{settle:.1f} s")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The embedded-default benchmark alone (make bench runs all of them).")
    parser.add_argument("--repeats", type=int, default=REPEATS, help="runs of each size (default: %(default)s)")
    parser.add_argument("--big", type=int, default=BIG, help="chunks of the big run (default: %(default)s)")
    args = parser.parse_args(argv)
    return common.run_alone(run, repeats=args.repeats, big=args.big)


if __name__ == "__main__":
    sys.exit(main())
