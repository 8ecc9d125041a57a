"""A fleet of worker nodes on hosts of their own: one Linux network namespace per node, PostgreSQL and
Redis of their own on a services host (tests/fleet), reached over the test networks only.

The network and the services host are made once for the package; each test gets an empty database
(migrated), an emptied Redis, an ini pointing at them, a web app built in-process (the test process
reaches the services host over the machine's own link into the networks) and worker nodes started in
the namespaces it names. Everything a test started is stopped when it ends, however it ends.

Without root or iproute2 the tests are skipped, except under CI=true, where they fail.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from celery import Celery
from sqlalchemy import Engine

from tests.fleet.network import DATABASE, Network, Node, network, network_unavailable
from tests.fleet.services import ServicesHost, services_host, services_unavailable, start_logged
from warehouse.carrier.served import serve_stub

NODE_NAMES = ["n1", "n2", "n3"]
REPO_ROOT = Path(__file__).resolve().parents[3]
PROBES = "tests.integration.probe_operations"


@pytest.fixture(scope="package")
def test_network(harness: ModuleType) -> Iterator[tuple[Network, ServicesHost]]:
    reason = network_unavailable() or services_unavailable()
    if reason:
        harness._unavailable(f"the fleet tests need network namespaces: {reason}")
    with network(NODE_NAMES) as net, services_host(net) as host:
        yield net, host


@dataclass
class Fleet:
    """One test's fleet: its database and ini on the services host, its web app, and its nodes."""

    network: Network
    host: ServicesHost
    harness: ModuleType
    ini_file: Path
    settings: dict[str, Any]
    api: Any  # the integration conftest's Api
    control_app: Celery
    engine: Engine
    log_dir: Path
    starter: Any  # the integration conftest's WorkerStarter
    workers: dict[str, Any] = field(default_factory=dict)  # node name -> WorkerProcess
    side_processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def node(self, name: str) -> Node:
        return self.network.nodes[name]

    def start_nodes(self, names: list[str], concurrency: int = 2, extra_args: dict[str, list[str]] | None = None) -> list[Any]:
        """A ``celery worker`` on each named node (its own namespace), and wait until all answer;
        ``extra_args``: more ``celery worker`` options, by node name."""
        started = self.starter(
            names,
            ini_file=self.ini_file,
            concurrency=concurrency,
            host_prefixes={name: self.node(name).exec_prefix() for name in names},
            extra_args=extra_args,
        )
        self.workers.update(zip(names, started))
        return started

    def start_on(self, where: list[str], command: list[str], log_name: str) -> subprocess.Popen[bytes]:
        """Another process of the fleet (beat, the carrier stub) behind the prefix ``where``."""
        pythonpath = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
        process = start_logged(
            [*where, *command],
            self.log_dir / f"{log_name}.log",
            cwd=REPO_ROOT,
            env=dict(os.environ, WAREHOUSE_INI=str(self.ini_file), PYTHONUNBUFFERED="1", PYTHONPATH=pythonpath),
        )
        self.side_processes.append(process)
        return process

    def side_log(self, log_name: str) -> str:
        return (self.log_dir / f"{log_name}.log").read_text(errors="replace")


@pytest.fixture
def carrier_on_services_host(test_network: tuple[Network, ServicesHost]) -> Callable[..., Any]:
    """``with carrier_on_services_host("--latency-ms", "500", ...) as carrier:`` the carrier stub as a
    process on the services host, where every node reaches it (``carrier.url``)."""
    net, _ = test_network

    def start(*options: str) -> Any:
        return serve_stub("--host", net.services_address(DATABASE), *options, host_prefix=net.services_prefix())

    return start


def fleet_settings(**extra: str) -> dict[str, str]:
    return {
        "warehouse.extra_operations": f"{PROBES}:SlowValuation {PROBES}:HoldingValuation",
        **extra,
    }


@pytest.fixture
def make_fleet(
    test_network: tuple[Network, ServicesHost], harness: ModuleType, tmp_path: Path
) -> Iterator[Any]:
    """``make_fleet(**settings)``: a ``Fleet`` whose ini has ``settings`` added; see the module's doc."""
    net, host = test_network
    with ExitStack() as stack:
        made: list[Fleet] = []

        def make(**settings: str) -> Fleet:
            host.flush_redis()
            database_url = stack.enter_context(host.database("warehouse_fleet"))
            ini = harness.write_ini(tmp_path / "fleet.ini", database_url, host.redis_url, fleet_settings(**settings))
            loaded, engine, control_app = harness.open_ini(ini, stack)
            webapp = stack.enter_context(harness._web_app(loaded))
            log_dir = tmp_path / "logs"
            log_dir.mkdir(exist_ok=True)
            starter = harness.WorkerStarter(control_app, ini, log_dir)
            fleet = Fleet(net, host, harness, ini, loaded, harness.Api(webapp), control_app, engine, log_dir, starter)
            stack.callback(_stop_fleet, fleet)
            made.append(fleet)
            return fleet

        yield make


def _stop_fleet(fleet: Fleet) -> None:
    for node in fleet.network.nodes.values():
        node.reconnect()  # a test that failed while a node was cut off
    for worker in fleet.workers.values():
        try:
            os.killpg(worker.process.pid, 18)  # SIGCONT: a frozen node cannot shut down
        except (ProcessLookupError, PermissionError):
            pass
    fleet.starter.stop_all()
    for process in fleet.side_processes:
        if process.poll() is None:
            os.killpg(process.pid, 15)
    for process in fleet.side_processes:
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait(timeout=10)
