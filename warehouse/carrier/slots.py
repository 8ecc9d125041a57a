"""A counting semaphore on Redis's own blocking primitives, with leases that give a dead holder's slots back.

The ``limit`` slots are tokens in a Redis list, ``free``. Taking one is a single ``BLMOVE`` from
``free`` to this process's list ``held:<holder>``: atomic, one round trip when a token is free, and
Redis hands tokens to the clients blocked on the list in the order they asked. Giving it back is one
script (``RELEASE``) that moves that very token back, and only if it is still in this process's list,
so a token can never be given back twice. That is two round trips a call, where py-redis-semaphore
took three (more when no slot was free) and started and joined a heartbeat thread per slot
(``bench/limiter.py`` measures both).

The lease is per process, not per slot: one heartbeat thread keeps ``alive:<holder>`` alive and
registers the holder in ``holders``. (A holder is one ``TokenSlots`` in one process, named
host:pid:random; a worker process has one per carrier, as ``buyer_for`` keeps one gate per pid.)
A holder whose key has expired (killed with SIGKILL, frozen past its lease) has every token of its
list moved back to ``free`` by ``REAP``, which anyone runs when a wait for a token times out, and
every heartbeat runs too. A holder that comes back from a freeze finds
its list empty, so its late releases move nothing.

The list is made by ``ENSURE`` when a process first takes a slot and whenever a wait times out: if the
``limit`` key is gone (Redis restarted or was flushed: nothing else would bring tokens back) it makes
``limit`` tokens afresh; if the limit changed, it adds tokens, or takes free ones away and records a
debt that releases pay off, so there are never more than ``limit`` tokens in all.

The scripts name the holders' keys from a prefix rather than through ``KEYS``: fine on one Redis
server (the broker, or ``warehouse.carrier_limiter_url``), not on Redis Cluster.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager

import redis

logger = logging.getLogger(__name__)

# A wait for a token gives up after this long to look for dead holders (and a flushed list), then
# waits again. Below the Redis client's socket timeout, so a wait is never taken for a dead socket.
WAIT_SECONDS = 1.0

# Makes the tokens, or fixes their number. KEYS: limit, free, holders, debt, seq; ARGV: limit, prefix.
ENSURE = """
local wanted = tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1]))
if current == wanted then return 0 end
if not current then
  -- Tokens held before the loss are forgotten (their releases will move nothing); the holders
  -- stay registered, so that the reaper still knows them.
  for _, holder in ipairs(redis.call('SMEMBERS', KEYS[3])) do
    redis.call('DEL', ARGV[2] .. ':held:' .. holder)
  end
  redis.call('DEL', KEYS[2], KEYS[4], KEYS[5])
  for _ = 1, wanted do redis.call('RPUSH', KEYS[2], redis.call('INCR', KEYS[5])) end
elseif wanted > current then
  local added = wanted - current
  local debt = tonumber(redis.call('GET', KEYS[4])) or 0
  local forgiven = math.min(debt, added)
  if forgiven > 0 then redis.call('DECRBY', KEYS[4], forgiven) end
  for _ = 1, added - forgiven do redis.call('RPUSH', KEYS[2], redis.call('INCR', KEYS[5])) end
else
  local removed = current - wanted
  local taken = 0
  while taken < removed and redis.call('LPOP', KEYS[2]) do taken = taken + 1 end
  if removed > taken then redis.call('INCRBY', KEYS[4], removed - taken) end
end
redis.call('SET', KEYS[1], wanted)
return 1
"""

# Gives one token back, if this holder still holds it. KEYS: held, free, debt; ARGV: token.
RELEASE = """
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then return 0 end
if (tonumber(redis.call('GET', KEYS[3])) or 0) > 0 then
  redis.call('DECR', KEYS[3])
  return 2
end
redis.call('LPUSH', KEYS[2], ARGV[1])
return 1
"""

# Moves the tokens of every holder whose lease has expired back to free. KEYS: holders, free, debt;
# ARGV: prefix. Returns how many tokens came back.
REAP = """
local back = 0
for _, holder in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if redis.call('EXISTS', ARGV[1] .. ':alive:' .. holder) == 0 then
    local held = ARGV[1] .. ':held:' .. holder
    for _, token in ipairs(redis.call('LRANGE', held, 0, -1)) do
      if (tonumber(redis.call('GET', KEYS[3])) or 0) > 0 then
        redis.call('DECR', KEYS[3])
      else
        redis.call('RPUSH', KEYS[2], token)
        back = back + 1
      end
    end
    redis.call('DEL', held)
    redis.call('SREM', KEYS[1], holder)
  end
end
return back
"""


# Every TokenSlots of this process, so that a forked child gets fresh locks: a lock that another
# thread of the parent held at the fork would otherwise stay locked in the child for good.
_everyone: weakref.WeakSet[TokenSlots] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for slots in list(_everyone):
        slots._lock, slots._start_lock = threading.Lock(), threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)


class TokenSlots:
    """``limit`` slots shared by every process that uses the same Redis and ``name``."""

    def __init__(self, client: redis.Redis, name: str, limit: int, lease_seconds: float, namespace: str) -> None:
        self.client = client
        self.limit = limit
        self.lease_ms = max(1, int(lease_seconds * 1000))
        self.prefix = f"{namespace}:{name}"
        self._keys = {key: f"{self.prefix}:{key}" for key in ("limit", "free", "holders", "debt", "seq")}
        self._ensure = client.register_script(ENSURE)
        self._release = client.register_script(RELEASE)
        self._reap = client.register_script(REAP)
        self._lock = threading.Lock()
        self._pid = 0
        self._holder = ""
        self._held: set[bytes] = set()  # tokens this process took and has not given back
        self._taken: dict[bytes, int] = {}  # how many times this process has taken each token
        # In our Redis list but not known to be ours at the last heartbeat: token -> times taken then.
        self._suspects: dict[bytes, int] = {}
        self._start_lock = threading.Lock()
        _everyone.add(self)

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one slot while the block runs. Raises redis.RedisError if Redis cannot be asked."""
        token = self.acquire()
        try:
            yield
        finally:
            self.release(token)

    def acquire(self) -> bytes:
        holder = self._holder_for_this_process()
        held = f"{self.prefix}:held:{holder}"
        while True:
            token = self.client.blmove(self._keys["free"], held, WAIT_SECONDS, "LEFT", "RIGHT")
            if token is not None:
                with self._lock:
                    self._held.add(token)
                    self._taken[token] = self._taken.get(token, 0) + 1
                return token
            # Every slot is taken, or the tokens are gone: make sure of the list, reclaim what dead
            # holders kept, and wait again.
            self._ensure_tokens()
            self._reap_dead()

    def release(self, token: bytes) -> None:
        with self._lock:
            self._held.discard(token)
        self._release(keys=[f"{self.prefix}:held:{self._holder}", self._keys["free"], self._keys["debt"]], args=[token])

    def free(self) -> int:
        """Slots free right now (diagnostics)."""
        return int(self.client.llen(self._keys["free"]))

    def tokens(self) -> int:
        """Tokens in all, free and held, less the debt a lowered limit left: never above ``limit``."""
        held = sum(self.client.llen(key) for key in self.client.scan_iter(match=f"{self.prefix}:held:*", count=1000))
        return self.free() + held - int(self.client.get(self._keys["debt"]) or 0)

    def _holder_for_this_process(self) -> str:
        if self._pid == os.getpid():
            return self._holder
        with self._start_lock:  # the first callers of a process wait for one of them to register it
            if self._pid == os.getpid():
                return self._holder
            # First use in this process (a forked child never uses its parent's holder or thread).
            holder = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
            with self._lock:
                self._holder = holder
                self._held, self._taken, self._suspects = set(), {}, {}
            # Alive and registered before its first token, so no reaper takes it for a dead holder
            # and no token can sit in an unregistered list. Only once that worked does the process
            # count as started: if Redis is down, the next call tries again.
            self._renew_lease()
            self._ensure_tokens()
            threading.Thread(target=self._heartbeat, name="carrier-slots-lease", daemon=True).start()
            self._pid = os.getpid()
            return holder

    def _ensure_tokens(self) -> None:
        keys = self._keys
        self._ensure(keys=[keys["limit"], keys["free"], keys["holders"], keys["debt"], keys["seq"]], args=[self.limit, self.prefix])

    def _reap_dead(self) -> int:
        return int(self._reap(keys=[self._keys["holders"], self._keys["free"], self._keys["debt"]], args=[self.prefix]))

    def _renew_lease(self) -> list[bytes]:
        """Renew this holder's lease; the tokens Redis says it holds."""
        with self.client.pipeline(transaction=True) as pipeline:
            pipeline.set(f"{self.prefix}:alive:{self._holder}", 1, px=self.lease_ms)
            pipeline.sadd(self._keys["holders"], self._holder)
            pipeline.lrange(f"{self.prefix}:held:{self._holder}", 0, -1)
            return pipeline.execute()[2]

    def _heartbeat(self) -> None:
        # A daemon for the life of the process: its gate lives as long (buyer_for keeps one per pid).
        while True:
            time.sleep(self.lease_ms / 3000)
            try:
                in_redis = set(self._renew_lease())
                self._give_back_lost(in_redis)
                self._reap_dead()
            except redis.RedisError as error:
                # The lease runs out if this goes on; the next beat tries again.
                logger.warning("could not renew this process's carrier slots' lease: %s", error)

    def _give_back_lost(self, in_redis: set[bytes]) -> None:
        """A token in our list that this process does not know it holds was moved to us by a BLMOVE
        whose reply was lost (the connection broke after Redis ran it): nobody would ever give it
        back while this process lives. One that is unknown at two heartbeats in a row, and was not
        taken in between, is given back. A token whose BLMOVE reply is merely on its way when one
        heartbeat looks is counted as taken before the next."""
        with self._lock:
            unknown = in_redis - self._held
            lost = [token for token in unknown if self._suspects.get(token) == self._taken.get(token, 0)]
            self._suspects = {token: self._taken.get(token, 0) for token in unknown if token not in lost}
        for token in lost:
            logger.warning("giving back a carrier slot whose taking was never answered")
            self._release(keys=[f"{self.prefix}:held:{self._holder}", self._keys["free"], self._keys["debt"]], args=[token])


def held_slots(client: redis.Redis, namespace: str) -> int:
    """How many tokens are held, over every semaphore in ``client``'s database (diagnostics: a SCAN)."""
    return sum(client.llen(key) for key in client.scan_iter(match=f"{namespace}:*:held:*", count=1000))
