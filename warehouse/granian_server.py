"""``pserve production.ini`` serving through Granian: ``[server:main] use = egg:warehouse#granian``.

Why not waitress in production: waitress's event loop walks every open connection each time it
wakes, so 1,000 keep-alive pollers cost it most of a core at 500 requests a second (0.95 cores,
against 0.36 for Granian and 0.6 for gunicorn's threads on the same load; docs/benchmarks.md,
"Pollers"). Granian keeps connections and parses HTTP in Rust and hands each request to a Python
thread, so an idle connection costs nothing and a request little. development.ini keeps waitress,
which needs nothing compiled and reloads with ``pserve --reload``.

Granian's worker processes load the app themselves from the same ini (``load_app``): the app pserve
has already loaded is not handed over, but it has checked the configuration before anything
listens. The options, as strings from the ini:

- ``listen``: ``host:port`` (default ``0.0.0.0:6543``), as waitress spells it.
- ``workers``: web processes (default 1). Each keeps its own run-status cache and database pool.
- ``threads``: Python threads per process that run requests (default 8): enough to wait on the
  database, few enough that they do not fight over the interpreter.
- ``backlog``: connections the kernel queues before they are accepted (default 4096).
- ``backpressure``: requests one process accepts at once before the rest wait (default: backlog / workers).
- ``workers_kill_timeout``: seconds a stopping process gets to finish its requests (default 30).
"""

from __future__ import annotations

import logging
from typing import Any

from granian import Granian
from granian.constants import Interfaces
from pyramid.paster import get_app, setup_logging

DEFAULTS = {
    "listen": "0.0.0.0:6543",
    "workers": "1",
    "threads": "8",
    "backlog": "4096",
    "backpressure": "",
    "workers_kill_timeout": "30",
}


def load_app(ini_path: str) -> Any:
    """The WSGI app of ``ini_path``'s ``[app:main]``, in a Granian worker process."""
    if not logging.getLogger().handlers:
        # A worker started by "spawn" rather than fork has not inherited pserve's logging.
        setup_logging(ini_path)
    return get_app(ini_path, "main")


def _whole_number(name: str, value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise ValueError(f"[server:main] {name} must be a whole number of 1 or more, not {value!r}")
    return number


def server_from_options(ini_path: str, options: dict[str, str]) -> Granian:
    unknown = sorted(set(options) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"[server:main] does not know {', '.join(unknown)}; it knows {', '.join(DEFAULTS)}")
    chosen = {**DEFAULTS, **options}
    host, sep, port = chosen["listen"].rpartition(":")
    if not sep or not host:
        raise ValueError(f"[server:main] listen must be host:port, not {chosen['listen']!r}")
    return Granian(
        ini_path,
        interface=Interfaces.WSGI,
        address=host.strip("[]"),
        port=_whole_number("listen's port", port),
        workers=_whole_number("workers", chosen["workers"]),
        blocking_threads=_whole_number("threads", chosen["threads"]),
        backlog=_whole_number("backlog", chosen["backlog"]),
        backpressure=_whole_number("backpressure", chosen["backpressure"]) if chosen["backpressure"] else None,
        workers_kill_timeout=_whole_number("workers_kill_timeout", chosen["workers_kill_timeout"]),
        websockets=False,  # a WSGI app has none; saves Granian saying so at start
    )


def serve(wsgi_app: Any, global_conf: dict[str, Any], **options: str) -> None:
    """The paste ``server_runner``: serve the ini pserve was given until SIGTERM or SIGINT."""
    server = server_from_options(global_conf["__file__"], options)
    server.serve(target_loader=load_app)
