"""Throwaway PostgreSQL databases and Redis DB numbers, for the test suite and the benchmarks.

Both run beside anyone else's use of the same servers (another checkout's tests, a benchmark, a
developer's data), so each takes a database of its own and a Redis DB number that was empty, claimed
atomically with a marker key, and flushes only that one when it is done.
"""

from __future__ import annotations

import os
import random
import secrets
import signal
import socket
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psycopg
import redis
from psycopg import sql

# Atomically: if the DB is empty, claim it with a marker key, so that a concurrent user sees it taken.
CLAIM_IF_EMPTY = """
if redis.call('DBSIZE') == 0 then
    return redis.call('SET', KEYS[1], ARGV[1])
end
return false
"""
CLAIM_KEY = "warehouse:scratch:claimed-by"
DB_NUMBERS = range(1, 16)


@contextmanager
def throwaway_database(host: str, port: int, user: str, prefix: str) -> Iterator[str]:
    """The SQLAlchemy URL of a new, empty database ``prefix_<random>``; dropped (connections and all)
    when the block ends."""
    name = f"{prefix}_{secrets.token_hex(6)}"

    def admin() -> psycopg.Connection:
        return psycopg.connect(host=host, port=port, user=user, dbname="postgres", autocommit=True, connect_timeout=3)

    with admin() as connection:
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield f"postgresql+psycopg://{user}@{host}:{port}/{name}"
    finally:
        with admin() as connection:
            connection.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def claim_token(who: str) -> str:
    """A marker value naming the claimant, unique to this process and call."""
    return f"{who}:{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


@contextmanager
def claimed_redis_db(host: str, port: int, token: str, avoid: int | None = None) -> Iterator[str]:
    """The URL of a Redis DB number (1..15, not ``avoid``) that was empty, claimed with ``token``
    (see ``claim_token``) under CLAIM_KEY; flushed when the block ends if CLAIM_KEY still holds
    ``token``. LookupError if none is free."""
    numbers = [number for number in DB_NUMBERS if number != avoid]
    random.shuffle(numbers)  # concurrent claimants try different numbers first
    claimed = None
    for number in numbers:
        with redis.Redis(host=host, port=port, db=number) as client:
            if client.eval(CLAIM_IF_EMPTY, 1, CLAIM_KEY, token):
                claimed = number
                break
    if claimed is None:
        raise LookupError(f"no empty Redis database among {DB_NUMBERS.start}..{DB_NUMBERS.stop - 1}")
    try:
        yield f"redis://{host}:{port}/{claimed}"
    finally:
        with redis.Redis(host=host, port=port, db=claimed) as client:
            # Still ours? Then flush it (a DB someone else took over meanwhile is left alone).
            if client.get(CLAIM_KEY) == token.encode():
                client.flushdb()


def parent_death_signal() -> Callable[[], None] | None:
    """A ``preexec_fn`` that SIGTERMs (a warm shutdown, for a worker) the child if the process that
    started it dies without cleaning up, so no worker outlives a killed test session or benchmark.
    Linux only; None elsewhere.

    libc is loaded here, before the fork: the child (possibly forked from a process with threads, e.g.
    the functional tests' embedded worker) then only makes one system call before exec.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL("libc.so.6", use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1
    return lambda: prctl(pr_set_pdeathsig, signal.SIGTERM)
