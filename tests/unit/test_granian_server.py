"""warehouse/granian_server.py: the [server:main] options pserve hands over, read into a Granian server."""

from __future__ import annotations

import pytest

from warehouse.granian_server import server_from_options


def test_the_defaults_are_production_ini_s() -> None:
    server = server_from_options("production.ini", {})
    assert (server.bind_addr, server.bind_port, server.workers, server.blocking_threads, server.backlog) == (
        "0.0.0.0", 6543, 1, 8, 4096)
    assert server.target == "production.ini"  # what each worker process loads its app from
    assert server.workers_kill_timeout == 30


def test_options_are_read_from_strings() -> None:
    server = server_from_options("x.ini", {"listen": "127.0.0.1:7000", "workers": "3", "threads": "4",
                                           "backlog": "512", "backpressure": "64"})
    assert (server.bind_addr, server.bind_port, server.workers, server.blocking_threads, server.backlog,
            server.backpressure) == ("127.0.0.1", 7000, 3, 4, 512, 64)


def test_an_ipv6_listen_address_loses_its_brackets() -> None:
    assert server_from_options("x.ini", {"listen": "[::1]:7000"}).bind_addr == "::1"


@pytest.mark.parametrize(("options", "words"), [
    ({"listen": "7000"}, "listen must be host:port, not '7000'"),
    ({"listen": "localhost:http"}, "listen's port must be a whole number of 1 or more, not 'http'"),
    ({"workers": "0"}, "workers must be a whole number of 1 or more, not '0'"),
    ({"threads": "many"}, "threads must be a whole number of 1 or more, not 'many'"),
    ({"connection_limit": "4000"}, "does not know connection_limit; it knows listen, workers"),
])
def test_a_wrong_option_is_named_in_words(options: dict[str, str], words: str) -> None:
    with pytest.raises(ValueError, match="^\\[server:main\\]") as raised:
        server_from_options("x.ini", options)
    assert words in str(raised.value)
