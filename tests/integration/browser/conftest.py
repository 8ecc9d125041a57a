"""A stage for the browser tests: `pserve` and a `celery worker` on PostgreSQL and Redis, watched by
headless Chromium (Debian's, driven by Playwright; it never downloads a browser of its own).

The stage has a database, a queue and an ini of its own (like the fault tests' lanes), so that its
test operations (slow_valuation, picky_valuation) reach only its own worker.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
import redis

from tasks.app import runs_queue_name
from tests.fleet.services import start_logged
from tests.integration.browser.helpers import Stage
from warehouse import scratch

REPO_ROOT = Path(__file__).resolve().parents[3]
PSERVE = str(Path(sys.executable).with_name("pserve"))
PROBES = "tests.integration.probe_operations"
CHROMIUM = "/usr/bin/chromium"
# What this machine's Chromium needs headless as root, and nothing that reaches for the network.
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]
START_SECONDS = 60.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_until_serving(base_url: str, process: Any, log: Path) -> None:
    deadline = time.monotonic() + START_SECONDS
    while True:
        try:
            if httpx.get(f"{base_url}/api/health", timeout=2).status_code in (200, 503):
                return
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"pserve did not answer: {log.read_text()[-3000:]}")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def stage(harness: ModuleType, settings: dict[str, Any], redis_url: str, postgresql_lock: Any,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stage]:
    directory = tmp_path_factory.mktemp("browser")
    queue = f"q_browser_{secrets.token_hex(3)}"
    port = free_port()
    with ExitStack() as stack:
        database_url = stack.enter_context(
            scratch.throwaway_database(harness.PG_HOST, harness.PG_PORT, harness.PG_USER, "warehouse_browser"))
        ini = harness.write_ini(directory / "browser.ini", database_url, redis_url, {
            "celery.task_default_queue": queue,
            "warehouse.extra_operations": f"{PROBES}:SlowValuation {PROBES}:PickyValuation",
            "warehouse.test.chunk_delay_seconds": "0.15",
        })
        ini.write_text(ini.read_text().replace("listen = 127.0.0.1:6543", f"listen = 127.0.0.1:{port}"))
        _settings, engine, control_app = harness.open_ini(ini, stack)
        starter = harness.WorkerStarter(control_app, ini, directory)
        stack.callback(starter.stop_all)
        starter(["b1"], ini_file=ini, queues=[queue], concurrency=2)
        log = directory / "pserve.log"
        # The web process registers the same test operations, so tests/ must be importable there.
        environment = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])))
        server = start_logged([PSERVE, str(ini)], log, cwd=REPO_ROOT, env=environment)
        stack.callback(_stop, server)
        base_url = f"http://127.0.0.1:{port}"
        _wait_until_serving(base_url, server, log)
        operator = stack.enter_context(httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {harness.OPERATOR_TOKEN}"}, timeout=30))
        viewer = stack.enter_context(httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {harness.VIEWER_TOKEN}"}, timeout=30))
        stack.callback(_delete_queues, redis_url, queue)
        yield Stage(base_url, operator, viewer, engine, log)


def _stop(server: Any) -> None:
    server.terminate()
    try:
        server.wait(timeout=20)
    except Exception:  # noqa: BLE001 - whatever it is doing, it must go
        server.kill()
        server.wait(timeout=10)


def _delete_queues(redis_url: str, queue: str) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        client.delete(queue, runs_queue_name(queue))
    finally:
        client.close()


@pytest.fixture(scope="session")
def browser(harness: ModuleType) -> Iterator[Any]:
    """Headless Chromium; fails with CI=true (skips otherwise) if it is not installed (`make test` installs it)."""
    if shutil.which(CHROMIUM) is None:
        harness._unavailable(f"the browser tests need Debian's chromium at {CHROMIUM} (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture
def context(browser: Any, stage: Stage) -> Iterator[Any]:
    """A fresh browser profile (no cookies) on a laptop's screen, in a time zone other than UTC."""
    context = browser.new_context(base_url=stage.base_url, viewport={"width": 1280, "height": 900},
                                  timezone_id="Europe/Berlin", locale="en-GB")
    context.set_default_timeout(20_000)
    yield context
    context.close()


@pytest.fixture
def page(context: Any) -> Iterator[Any]:
    """A tab; what its scripts wrote to the console and threw is printed if the test fails."""
    page = context.new_page()
    said: list[str] = []
    page.on("console", lambda message: said.append(f"console.{message.type}: {message.text}"))
    page.on("pageerror", lambda error: said.append(f"uncaught: {error}"))
    yield page
    for line in said:
        print(line)
