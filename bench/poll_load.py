"""The pollers benchmark's load generator: CLIENTS keep-alive HTTP/1.1 clients in one process, each
on a connection of its own, each sending GET every 2 s at a fixed rate (a late answer is not made up for).

``python bench/poll_load.py DIR TOKEN CLIENTS`` polls the URL in DIR/url (re-read every 0.1 s),
writes DIR/ready once every client has had an answer, and on DIR/stop writes DIR/samples.json:
``[[epoch sent, milliseconds, outcome], ...]``, the outcome being the status code, "timeout" (no
answer in 10 s) or the exception's name. A connection the server closes is an error, and the
client opens another for its next poll.

It speaks just enough HTTP itself (a request it writes whole, an answer read by its Content-Length)
because the generator shares the 2 cores with the run it measures: with aiohttp, a session per client,
it cost 0.24 cores at 500 polls a second, a slowdown of the run that was the generator's and not the
server's. This costs about a quarter of that (docs/benchmarks.md, "Pollers").
"""

from __future__ import annotations

import asyncio
import heapq
import json
import resource
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

INTERVAL = 2.0  # each client's poll period, and the span its first polls are staggered over
REQUEST_TIMEOUT = 10.0
# Polls due are sent, and answers timed out, on a tick rather than a timer each: in a VM every timer
# armed is a trip to the hypervisor, which was half the generator's CPU. A poll is sent up to a tick late.
TICK = 0.01
TIMEOUT_CHECK = 0.5


class Poller(asyncio.Protocol):
    """One client: a keep-alive connection polled at a fixed rate, driven by the shared tick (no task,
    coroutine or timer per poll: they were most of the generator's CPU)."""

    def __init__(self, shared: Shared, first_at: float) -> None:
        self.shared = shared
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.next_at = first_at
        self.sent = self.began = 0.0
        self.waiting = self.connecting = False
        self.polls = 0

    # -- the schedule --
    def poll(self) -> None:
        if self.shared.stopping:
            return
        self.sent, self.began = time.time(), time.perf_counter()
        self.waiting = True
        if self.transport is None:
            self.connecting = True
            connect = self.shared.loop.create_connection(lambda: self, *self.shared.address)
            self.shared.loop.create_task(connect).add_done_callback(self.connected)
        else:
            self.transport.write(self.shared.request)

    def connected(self, attempt: asyncio.Future) -> None:
        self.connecting = False
        if attempt.cancelled() or attempt.exception() is not None:
            self.finish(type(attempt.exception()).__name__ if not attempt.cancelled() else "cancelled")
        elif self.waiting:
            assert self.transport is not None
            self.transport.write(self.shared.request)

    def finish(self, outcome: str) -> None:
        if not self.waiting:
            return
        self.waiting = False
        if outcome == "timeout" and self.transport is not None:
            self.transport.abort()  # its answer may still come: never read it as the next one's
        self.shared.samples.append((self.sent, round((time.perf_counter() - self.began) * 1000, 2), outcome))
        self.polls += 1
        if self.polls == 1:
            self.shared.answered += 1  # this client is in (whatever its first answer was)
        self.next_at = max(self.next_at + INTERVAL, self.shared.loop.time())  # fixed rate; no making up
        self.shared.schedule(self)

    # -- the connection --
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.buffer.clear()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.waiting and not self.connecting:
            self.finish(type(exc).__name__ if exc else "ServerClosed")

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0 or not self.waiting:
            return
        head = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
        length = next((int(line.split(":", 1)[1]) for line in head[1:] if line.lower().startswith("content-length:")), 0)
        if len(self.buffer) >= end + 4 + length:
            del self.buffer[: end + 4 + length]
            self.finish(head[0].split(" ", 2)[1])


class Shared:
    """What the clients share: the target, the samples, and the tick that sends polls when due."""

    def __init__(self, loop: asyncio.AbstractEventLoop, address: tuple[str, int], request: bytes) -> None:
        self.loop, self.address, self.request = loop, address, request
        self.samples: list[tuple[float, float, str]] = []
        self.answered = 0
        self.stopping = False
        self.pollers: list[Poller] = []
        self.due: list[tuple[float, int, Poller]] = []
        self.next_timeout_check = 0.0

    def schedule(self, poller: Poller) -> None:
        heapq.heappush(self.due, (poller.next_at, id(poller), poller))

    def tick(self) -> None:
        now = self.loop.time()
        while self.due and self.due[0][0] <= now:
            heapq.heappop(self.due)[2].poll()
        if now >= self.next_timeout_check:
            self.next_timeout_check = now + TIMEOUT_CHECK
            late = time.perf_counter() - REQUEST_TIMEOUT
            for poller in self.pollers:
                if poller.waiting and poller.began < late:
                    poller.finish("timeout")
        self.loop.call_later(TICK, self.tick)  # on after a stop too: answers still due may time out


def request_bytes(url: str, token: str) -> bytes:
    parts = urlsplit(url)
    return (f"GET {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nAuthorization: Bearer {token}\r\n"
            "Accept: application/json\r\n\r\n").encode()


async def load(directory: Path, token: str, clients: int) -> None:
    loop = asyncio.get_running_loop()
    url = (directory / "url").read_text()
    parts = urlsplit(url)
    shared = Shared(loop, (parts.hostname or "127.0.0.1", parts.port or 80), request_bytes(url, token))
    pollers = shared.pollers = [Poller(shared, loop.time() + INTERVAL * number / clients) for number in range(clients)]
    for poller in pollers:
        shared.schedule(poller)
    shared.tick()
    while not (directory / "stop").exists():
        await asyncio.sleep(0.1)
        shared.request = request_bytes((directory / "url").read_text(), token)
        if shared.answered == clients:
            (directory / "ready").touch()
    shared.stopping = True
    deadline = loop.time() + REQUEST_TIMEOUT + 1
    while any(poller.waiting for poller in pollers) and loop.time() < deadline:
        await asyncio.sleep(0.05)
    for poller in pollers:
        if poller.transport is not None:
            poller.transport.close()
    (directory / "samples.json").write_text(json.dumps(shared.samples))


def main(argv: list[str]) -> int:
    directory, token, clients = Path(argv[0]), argv[1], int(argv[2])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = clients + 256  # a socket per client
    if soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed if hard == resource.RLIM_INFINITY else min(needed, hard), hard))
    asyncio.run(load(directory, token, clients))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
