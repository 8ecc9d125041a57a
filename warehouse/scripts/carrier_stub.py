"""``warehouse-carrier-stub --port P``: serve the stand-in carrier API (see ``warehouse.carrier.stub``).

``make run`` starts it for development; tests and benchmarks start it to count what the label client
does. ``--port 0`` picks a free port; the line printed on start-up says which.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from dataclasses import fields
from typing import Any, NoReturn

import waitress

from warehouse.carrier.served import READY_PREFIX
from warehouse.carrier.stub import InvalidField, StubConfig, make_app

# Over-cap requests are answered at once, but each still needs a thread (and a connection slot) to be
# answered: size waitress well above the cap so that the stub, not waitress, is what refuses them.
MIN_THREADS = 64
MIN_CONNECTIONS = 1024


def default_threads(max_in_flight: int) -> int:
    return max(MIN_THREADS, 2 * max_in_flight + 8)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="warehouse-carrier-stub", description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--port", type=int, required=True, help="port to listen on (0: any free port)")
    add("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    defaults = StubConfig()
    add("--latency-ms", type=int, default=defaults.latency_ms, help="time each admitted call takes")
    add("--max-in-flight", type=int, default=defaults.max_in_flight, help="calls at once; more get 429 (0: no cap)")
    add("--fail-rate", type=float, default=defaults.fail_rate, help="fraction of calls answered 503")
    add("--rate-limited-rate", type=float, default=defaults.rate_limited_rate, help="fraction of calls answered 429")
    add("--slow-rate", type=float, default=defaults.slow_rate, help="fraction of calls that take --slow-ms")
    add("--slow-ms", type=int, default=defaults.slow_ms, help="time a slow call takes")
    add("--retry-after", type=int, default=defaults.retry_after, help="Retry-After seconds sent with 429s")
    add("--seed", type=int, default=defaults.seed, help="seed for the random faults, for repeatable runs")
    add("--threads", type=int, default=None, help="waitress threads (default: max(64, 2*cap+8))")
    args = parser.parse_args(argv)
    if args.threads is not None and args.threads < 1:
        parser.error("--threads: must be at least 1")
    # Each option's dest is the name of the StubConfig field it sets.
    try:
        args.config = StubConfig(**{setting.name: getattr(args, setting.name) for setting in fields(StubConfig)})
    except InvalidField as error:
        parser.error(f"--{error.field.replace('_', '-')}: {error.reason}")
    return args


def server_options(threads: int) -> dict[str, Any]:
    connections = max(MIN_CONNECTIONS, 4 * threads)
    return {
        "threads": threads,
        "connection_limit": connections,
        "backlog": connections,
        # select() cannot watch more than 1024 sockets; poll() has no such limit.
        "asyncore_use_poll": True,
        "ident": "warehouse-carrier-stub",
    }


def exit_on_sigterm(signum: int, frame: Any) -> NoReturn:
    raise SystemExit(0)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    threads = args.threads or default_threads(args.config.max_in_flight)
    server = waitress.create_server(make_app(args.config), host=args.host, port=args.port, **server_options(threads))
    # As PID 1 in a container, a process without a SIGTERM handler ignores `docker stop` until it is killed.
    signal.signal(signal.SIGTERM, exit_on_sigterm)
    # The socket is bound by now, so whoever waits for this line can connect as soon as it appears.
    host = getattr(server, "effective_host", args.host)
    port = getattr(server, "effective_port", args.port)
    print(f"{READY_PREFIX}http://{host}:{port}", flush=True)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
