"""``pserve production.ini`` serves through Granian: the real ini (only ``listen`` moved to a free port)
on this session's PostgreSQL and Redis through its environment overrides, as a deployment runs it."""

from __future__ import annotations

import configparser
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session

from tests.fleet.services import start_logged
from tests.integration.conftest import OPERATOR_TOKEN, VIEWER_TOKEN
from warehouse.models import Run, Warehouse

REPO_ROOT = Path(__file__).resolve().parents[2]
PSERVE = str(Path(sys.executable).with_name("pserve"))
START_SECONDS = 60.0
STOP_SECONDS = 35.0  # the ini's workers_kill_timeout (30 s) and a margin


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Served:
    def __init__(self, process: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.process, self.port, self.log = process, port, log

    def request(self, method: str, path: str, token: str | None = VIEWER_TOKEN, body: bytes | None = None,
                headers: dict[str, str] | None = None, connection: http.client.HTTPConnection | None = None
                ) -> tuple[int, dict[str, str], bytes]:
        own = connection is None
        connection = connection or http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            sent = {**({"Authorization": f"Bearer {token}"} if token else {}), **(headers or {})}
            connection.request(method, path, body=body, headers=sent)
            response = connection.getresponse()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        finally:
            if own:
                connection.close()

    def stop(self) -> int:
        os.killpg(self.process.pid, signal.SIGTERM)
        return self.process.wait(timeout=STOP_SECONDS)


def production_ini_listening_on(directory: Path, port: int) -> Path:
    parser = configparser.RawConfigParser()  # raw: the logging format's %(...)s stays as written
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(REPO_ROOT / "production.ini")
    assert parser.get("server:main", "use") == "egg:warehouse#granian"
    parser.set("server:main", "listen", f"127.0.0.1:{port}")
    path = directory / "production-served.ini"
    with path.open("w") as file:
        parser.write(file)
    return path


def start_pserve(directory: Path, database_url: str, redis_url: str) -> Served:
    port = free_port()
    ini = production_ini_listening_on(directory, port)
    environment = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": redis_url,
                   "WAREHOUSE_TOKENS": f"operator:{OPERATOR_TOKEN} viewer:{VIEWER_TOKEN}"}
    log = directory / f"pserve-{port}.log"
    served = Served(start_logged([PSERVE, str(ini)], log, cwd=REPO_ROOT, env=environment), port, log)
    deadline = time.monotonic() + START_SECONDS
    while True:
        try:
            if served.request("GET", "/api/health", token=None)[0] in (200, 503):
                return served
        except OSError:
            pass
        if served.process.poll() is not None or time.monotonic() > deadline:
            served.process.kill()
            raise AssertionError(f"pserve production.ini did not answer: {log.read_text()[-3000:]}")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, settings: dict[str, Any], redis_url: str) -> Iterator[Served]:
    server = start_pserve(tmp_path_factory.mktemp("served"), settings["sqlalchemy.url"], redis_url)
    yield server
    if server.process.poll() is None:
        server.stop()


@pytest.fixture(scope="module")
def ended_run(engine: Any) -> int:
    """A run that has ended, in the session's database: nothing acts on it."""
    with Session(engine) as session, session.begin():
        warehouse = Warehouse(code=f"served-{os.getpid()}", name="Served")
        session.add(warehouse)
        session.flush()
        run = Run(warehouse_id=warehouse.id, operation="valuation", status="succeeded", chunk_size=500)
        session.add(run)
        session.flush()
        return run.id


def test_the_api_answers_through_granian(served: Served, ended_run: int) -> None:
    status, headers, body = served.request("GET", f"/api/runs/{ended_run}")
    assert (status, headers["content-type"]) == (200, "application/json")
    assert json.loads(body)["id"] == ended_run
    assert "granian" in headers.get("server", "")
    assert served.request("GET", f"/api/runs/{ended_run}", token=None)[0] == 401
    status, _, body = served.request("GET", "/api/runs/2147483647")
    assert (status, json.loads(body)["error"]["details"]["field"]) == (404, "id")


def test_a_kept_answer_repeats_byte_for_byte_on_one_keep_alive_connection(served: Served, ended_run: int) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", served.port, timeout=30)
    try:
        answers = [served.request("GET", f"/api/runs/{ended_run}", connection=connection) for _ in range(5)]
        assert served.request("GET", f"/api/runs/{ended_run}", token="wrong", connection=connection)[0] == 401
    finally:
        connection.close()
    assert {status for status, _, _ in answers} == {200}
    assert len({body for _, _, body in answers}) == 1
    assert len({(h["content-type"], h["content-length"]) for _, h, _ in answers}) == 1


def test_a_body_is_read_whole_and_an_oversized_chunked_one_is_refused(served: Served) -> None:
    code = f"served-up-{os.getpid()}"
    created = served.request("POST", "/api/warehouses", token=OPERATOR_TOKEN, headers={"Content-Type": "application/json"},
                             body=json.dumps({"code": code, "name": "Uploads"}).encode())
    assert created[0] == 201, created
    rows = [{"sku": f"s{n}", "qty_on_hand": n, "unit_cost": 1.25} for n in range(20_000)]
    status, _, body = served.request("POST", f"/api/warehouses/{code}/products", token=OPERATOR_TOKEN,
                                     headers={"Content-Type": "application/json"}, body=json.dumps(rows).encode())
    assert (status, json.loads(body)["received"]) == (200, 20_000)

    def chunks() -> Iterator[bytes]:  # 80 MiB, more than the default limit of 64 MiB, with no Content-Length
        yield b"["
        for _ in range(80):
            yield b" " * (1024 * 1024)
        yield b"]"

    connection = http.client.HTTPConnection("127.0.0.1", served.port, timeout=60)
    try:
        connection.request("POST", f"/api/warehouses/{code}/products", body=chunks(), encode_chunked=True,
                           headers={"Authorization": f"Bearer {OPERATOR_TOKEN}", "Content-Type": "application/json",
                                    "Transfer-Encoding": "chunked"})
        response = connection.getresponse()
        assert (response.status, json.loads(response.read())["error"]["code"]) == (413, "body_too_large")
    finally:
        connection.close()


def test_sigterm_stops_it_gracefully(tmp_path: Path, settings: dict[str, Any], redis_url: str) -> None:
    server = start_pserve(tmp_path, settings["sqlalchemy.url"], redis_url)
    began = time.monotonic()
    assert server.stop() == 0, server.log.read_text()[-3000:]
    assert time.monotonic() - began < STOP_SECONDS
    with pytest.raises(OSError):
        server.request("GET", "/api/health", token=None)
