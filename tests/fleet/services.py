"""The services host of a test network: a PostgreSQL cluster and a Redis server of its own, started
in the services namespace and reached over the test network only.

They are not the machine's services: a cluster made with ``initdb`` in a temporary directory, and a
Redis that keeps nothing on disk, both stopped and removed when the block ends. So a test may cut
nodes off from them, or empty them, without disturbing anyone else's use of the machine's own.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import redis

from warehouse import scratch

from .network import BROKER, DATABASE, Network

POSTGRES_BIN = Path("/usr/lib/postgresql/15/bin")
POSTGRES_PORT = 5432
REDIS_PORT = 6379
START_TIMEOUT = 30.0


def start_logged(command: list[str], log_path: Path, **popen: Any) -> subprocess.Popen[bytes]:
    """``command`` in a session of its own (so its whole group can be signalled), its output in
    ``log_path``, and SIGTERMed if this process dies without cleaning up."""
    with log_path.open("wb") as log:
        return subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=scratch.parent_death_signal(), **popen,
        )


def services_unavailable() -> str | None:
    if not (POSTGRES_BIN / "initdb").exists():
        return f"PostgreSQL's server binaries are not in {POSTGRES_BIN}"
    if shutil.which("redis-server") is None:
        return "redis-server is not installed"
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return "there is no postgres user to run a PostgreSQL cluster as"
    return None


@dataclass
class ServicesHost:
    network: Network
    workdir: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def postgres_host(self) -> str:
        return self.network.services_address(DATABASE)

    @property
    def redis_url(self) -> str:
        return f"redis://{self.network.services_address(BROKER)}:{REDIS_PORT}/0"

    def admin(self) -> psycopg.Connection:
        return psycopg.connect(
            host=self.postgres_host, port=POSTGRES_PORT, user="postgres", dbname="postgres", autocommit=True, connect_timeout=3
        )

    @contextmanager
    def database(self, prefix: str) -> Iterator[str]:
        """A new database on this host's cluster; its SQLAlchemy URL. Dropped when the block ends."""
        with scratch.throwaway_database(self.postgres_host, POSTGRES_PORT, "postgres", prefix) as url:
            yield url

    def flush_redis(self) -> None:
        with redis.Redis.from_url(self.redis_url, socket_timeout=5) as client:
            client.flushall()

    def start(self, command: list[str], log_name: str) -> subprocess.Popen[bytes]:
        """Run ``command`` on the services host; stopped with the host."""
        process = start_logged([*self.network.services_prefix(), *command], self.workdir / f"{log_name}.log")
        self.processes.append(process)
        return process

    def log(self, log_name: str) -> str:
        return (self.workdir / f"{log_name}.log").read_text(errors="replace")


def _wait(what: str, probe, process: subprocess.Popen[bytes], log: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            probe()
            return
        except Exception as error:  # noqa: BLE001 - not up yet
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not start ({error}):\n{log}") from None
            time.sleep(0.2)


@contextmanager
def services_host(net: Network) -> Iterator[ServicesHost]:
    # Not under pytest's tmp_path: the postgres user must be able to reach its data directory.
    workdir = Path(tempfile.mkdtemp(prefix="warehouse-fleet-"))
    os.chmod(workdir, 0o755)
    host = ServicesHost(net, workdir)
    with ExitStack() as cleanup:
        cleanup.callback(shutil.rmtree, workdir, ignore_errors=True)
        cleanup.callback(_stop_all, host)
        data = workdir / "pgdata"
        data.mkdir()
        shutil.chown(data, "postgres", "postgres")
        subprocess.run(
            ["runuser", "-u", "postgres", "--", str(POSTGRES_BIN / "initdb"), "-D", str(data), "-U", "postgres",
             "--auth=trust", "-E", "UTF8", "--no-sync"],
            check=True, capture_output=True, timeout=120,
        )
        # Anyone on the test networks may connect (initdb's trust covers local sockets only).
        with (data / "pg_hba.conf").open("a") as hba:
            for subnet in net.subnets.values():
                hba.write(f"host all all {subnet} trust\n")
        postgres = host.start(
            ["runuser", "-u", "postgres", "--", str(POSTGRES_BIN / "postgres"), "-D", str(data),
             "-c", f"listen_addresses={host.postgres_host}", "-c", f"port={POSTGRES_PORT}",
             "-c", f"unix_socket_directories={data}", "-c", "max_connections=300",
             # A throwaway cluster: durability buys nothing here, and costs the tests time.
             "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"],
            "postgresql",
        )
        _wait("PostgreSQL on the services host", lambda: host.admin().close(), postgres, host.log("postgresql"))
        redis_server = host.start(
            ["redis-server", "--bind", net.services_address(BROKER), "--port", str(REDIS_PORT), "--save", "",
             "--appendonly", "no", "--protected-mode", "no"],
            "redis",
        )

        def ping() -> None:
            with redis.Redis.from_url(host.redis_url, socket_timeout=2, socket_connect_timeout=2) as client:
                client.ping()

        _wait("Redis on the services host", ping, redis_server, host.log("redis"))
        yield host


def _stop_all(host: ServicesHost) -> None:
    for process in reversed(host.processes):
        if process.poll() is None:
            # PostgreSQL: SIGINT is its fast shutdown; Redis and the rest stop on it as on SIGTERM.
            os.killpg(process.pid, 2)
    for process in host.processes:
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait(timeout=10)

