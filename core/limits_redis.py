"""Rate limits, in-flight locks and seen deliveries in Redis, shared by every bridge process
using that Redis.

Same contracts as `MemoryRateLimiter` and `MemoryLockManager` (core.limits). Rate limits are
the `limits` library's Redis moving window; a lock release is one Lua script. Counting a hit
and releasing a lock are atomic across processes. Times come from the `Clock`'s wall time (all
instances share it), so tests can drive it.

Redis going away never fails a request. `RedisLink` watches one Redis: the first failed call
marks it down (one WARNING in the log) and starts a probe that pings it with backoff (1 s,
doubling up to 30 s, on the injected clock; calls made meanwhile never touch Redis), and the
first answered ping marks it up again (one INFO). While it is down, `FailoverRateLimiter` and
`FailoverLockManager` use the per-process memory ones; `RedisLink.degraded` tells /status and
readiness. A bridge started with Redis unreachable starts degraded and recovers the same way.

Rules across an outage:
- Rate limits: hits counted in memory during the outage stay in memory; after recovery only
  Redis counts (its windows are whatever Redis kept). Each process allows the full rate while
  Redis is down, so a user talking to N processes may get N times the rate for that while.
- Locks: every lease is taken in this process's memory first, and in Redis too while Redis is
  up. A lease taken during the outage lives in memory only and keeps doing so until it is
  released or expires, even after Redis is back (nothing is moved to Redis); new leases go to
  Redis again. Because the memory lease is always taken, one process never hands out a key twice,
  whatever Redis does; across processes, exclusion holds only for leases taken while Redis was up.
  A Redis lease whose release failed is released again when Redis is back (token-checked, so a
  lease taken by someone else since is untouched), or simply expires with its TTL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import limits.aio.storage.redis.redispy
from limits.aio.storage import RedisStorage
from redis.asyncio import Redis
from redis.exceptions import RedisError

from core.clock import Clock
from core.deliveries import FirstSeen, MemoryFirstSeen, RedisFirstSeen
from core.limits import (
    Lease,
    LimitsRateLimiter,
    LockManager,
    MemoryLockManager,
    MemoryRateLimiter,
    Rate,
    RateDecision,
    RateLimiter,
    follow_clock,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

SOCKET_TIMEOUT = 2.0  # seconds; a hung Redis counts as down instead of freezing an answer
FIRST_PROBE = 1.0
MAX_PROBE = 30.0
# Everything a Redis call raises when Redis is unreachable, hung, restarting or refusing work.
REDIS_FAILURES: tuple[type[BaseException], ...] = (RedisError, OSError)

follow_clock(limits.aio.storage.redis.redispy)

# KEYS[1] = lock; ARGV[1] = token
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RedisRateLimiter(LimitsRateLimiter):
    """`RateLimiter` in Redis: `limits`' Redis storage (its moving-window scripts) on this
    client's connections, on the clock's wall time (which every process shares).

    Keys are ``{prefix}rate/{key}/{count}/{seconds}/second``: processes using the same prefix on
    one Redis share each key's limit.
    """

    def __init__(self, redis: Redis, clock: Clock, *, prefix: str = "g4f-bridge:") -> None:
        shared: dict[str, Any] = {"connection_pool": redis.connection_pool}
        storage = RedisStorage(
            "redis://", implementation="redispy", key_prefix=prefix.removesuffix(":"), **shared
        )
        super().__init__(storage, clock.wall)


class RedisLockManager:
    """`LockManager` in Redis: SET NX with an expiry; only the holder's token releases."""

    def __init__(self, redis: Redis, clock: Clock, *, prefix: str = "g4f-bridge:") -> None:
        self._redis = redis
        self._clock = clock
        self._prefix = prefix
        self._release: Any = redis.register_script(_RELEASE)

    async def try_acquire(self, key: str, ttl: float) -> Lease | None:
        if not math.isfinite(ttl) or ttl <= 0:
            raise ValueError(f"lock ttl must be a positive number of seconds, got {ttl!r}")
        token = secrets.token_hex(16)
        taken = await self._redis.set(
            f"{self._prefix}lock:{key}", token, nx=True, px=max(1, math.ceil(ttl * 1000))
        )
        if not taken:
            return None
        return Lease(key=key, token=token, expires_at=self._clock.now() + ttl)

    async def release(self, lease: Lease) -> None:
        await self._release(keys=[f"{self._prefix}lock:{lease.key}"], args=[lease.token])

    async def held(self, key: str) -> bool:
        return bool(await self._redis.exists(f"{self._prefix}lock:{key}"))


# --- Degrade and recover ------------------------------------------------------------------


class RedisDown(Exception):
    """Redis is marked down (or a call just failed): use the per-process fallback."""


def describe(redis: Redis) -> str:
    """Where a client points, without credentials: ``host:port/db`` or the socket path."""
    kwargs = redis.connection_pool.connection_kwargs
    if kwargs.get("path"):
        return f"unix:{kwargs['path']}"
    return f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}/{kwargs.get('db', 0)}"


class RedisLink:
    """The up/down state of one Redis, with one probe task (backoff) while it is down.

    `call` runs an operation on Redis and raises `RedisDown` instead of any Redis failure; while
    down it raises at once without touching Redis. Implements `core.limits.LimitsHealth`.
    """

    def __init__(
        self,
        redis: Redis,
        clock: Clock,
        *,
        first_probe: float = FIRST_PROBE,
        max_probe: float = MAX_PROBE,
    ) -> None:
        self._redis = redis
        self._clock = clock
        self._first_probe = first_probe
        self._max_probe = max_probe
        self._origin = describe(redis)
        self._degraded = False
        self._up = asyncio.Event()
        self._up.set()
        self._probe: asyncio.Task[None] | None = None
        self._on_recover: list[Callable[[], Awaitable[None]]] = []
        self.outages = 0  # how many times Redis went down since start
        self.probes = 0  # pings made while down (answered or not)

    @property
    def degraded(self) -> bool:
        """True while Redis is marked down and per-process limits and locks stand in."""
        return self._degraded

    def on_recover(self, callback: Callable[[], Awaitable[None]]) -> None:
        """Run `callback` each time Redis is back (before `wait_up` returns)."""
        self._on_recover.append(callback)

    async def start(self) -> None:
        """Ping once, so a Redis unreachable at start is known (and logged) at once."""
        try:
            await self._redis.ping()
        except REDIS_FAILURES as exc:
            self._went_down(exc)

    async def call(self, operation: Callable[[], Awaitable[T]]) -> T:
        """The operation's result; `RedisDown` when Redis is down or the call failed."""
        if self._degraded:
            raise RedisDown
        try:
            return await operation()
        except REDIS_FAILURES as exc:
            self._went_down(exc)
            raise RedisDown from exc

    async def wait_up(self) -> None:
        """Return once Redis is up (at once when it is)."""
        await self._up.wait()

    async def aclose(self) -> None:
        """Stop probing."""
        probe, self._probe = self._probe, None
        if probe is not None:
            probe.cancel()
            await asyncio.gather(probe, return_exceptions=True)

    def _went_down(self, exc: BaseException) -> None:
        if self._degraded:
            return
        self._degraded = True
        self.outages += 1
        self._up.clear()
        log.warning(
            "Redis at %s is unreachable (%s: %s); rate limits and in-flight locks are "
            "per process until it is back",
            self._origin,
            type(exc).__name__,
            exc,
        )
        self._probe = asyncio.create_task(self._probe_until_up(), name="redis-probe")

    async def _probe_until_up(self) -> None:
        wait = self._first_probe
        while True:
            await self._clock.sleep(wait)
            try:
                await self._redis.ping()
            except REDIS_FAILURES as exc:
                self.probes += 1
                log.debug("Redis at %s still unreachable: %r", self._origin, exc)
                wait = min(wait * 2, self._max_probe)
                continue
            self.probes += 1
            break
        # Connections made before the outage lead nowhere now: drop the idle ones.
        with contextlib.suppress(*REDIS_FAILURES):
            await self._redis.connection_pool.disconnect(inuse_connections=False)
        self._degraded = False
        self._probe = None
        log.info("Redis at %s is back; rate limits and locks are shared again", self._origin)
        for callback in self._on_recover:
            await callback()
        self._up.set()


class FailoverRateLimiter:
    """`RateLimiter` on Redis while it is up, on a per-process `MemoryRateLimiter` otherwise."""

    def __init__(self, shared: RateLimiter, local: RateLimiter, link: RedisLink) -> None:
        self._shared = shared
        self._local = local
        self._link = link

    async def hit(self, key: str, rate: Rate) -> RateDecision:
        try:
            return await self._link.call(lambda: self._shared.hit(key, rate))
        except RedisDown:
            return await self._local.hit(key, rate)

    async def peek(self, key: str, rate: Rate) -> RateDecision:
        try:
            return await self._link.call(lambda: self._shared.peek(key, rate))
        except RedisDown:
            return await self._local.peek(key, rate)


class FailoverLockManager:
    """`LockManager` taking every lease in memory, and in Redis too while Redis is up.

    See the module docstring for what happens to leases across an outage.
    """

    def __init__(
        self, shared: LockManager, local: LockManager, link: RedisLink, clock: Clock
    ) -> None:
        self._shared = shared
        self._local = local
        self._link = link
        self._clock = clock
        self._local_of: dict[str, Lease] = {}  # a Redis lease's token -> its memory twin
        self._unreleased: dict[str, Lease] = {}  # Redis leases whose release failed, by token
        link.on_recover(self._release_leftovers)

    @property
    def unreleased(self) -> int:
        """Redis leases waiting to be released once Redis is back."""
        return len(self._unreleased)

    async def try_acquire(self, key: str, ttl: float) -> Lease | None:
        local = await self._local.try_acquire(key, ttl)
        if local is None:
            return None
        try:
            shared = await self._link.call(lambda: self._shared.try_acquire(key, ttl))
        except RedisDown:
            return local  # a memory lease: it stays in memory until released
        if shared is None:
            await self._local.release(local)
            return None
        self._local_of[shared.token] = local
        return shared

    async def release(self, lease: Lease) -> None:
        local = self._local_of.pop(lease.token, None)
        if local is None:  # a lease taken while Redis was down (or an unknown one: no-op)
            await self._local.release(lease)
            return
        await self._local.release(local)
        try:
            await self._link.call(lambda: self._shared.release(lease))
        except RedisDown:
            self._unreleased[lease.token] = lease

    async def held(self, key: str) -> bool:
        if await self._local.held(key):
            return True
        try:
            return await self._link.call(lambda: self._shared.held(key))
        except RedisDown:
            return False

    async def _release_leftovers(self) -> None:
        now = self._clock.now()
        for token, lease in list(self._unreleased.items()):
            del self._unreleased[token]
            if lease.expires_at > now:
                try:
                    await self._shared.release(lease)
                except REDIS_FAILURES as exc:  # it expires with its TTL anyway
                    log.debug("could not release a leftover lease: %r", exc)


class FailoverFirstSeen:
    """`FirstSeen` in this process's memory, and in Redis too while Redis is up: a key this
    process saw is never new again; a key another process claimed in Redis is not new here."""

    def __init__(self, shared: FirstSeen, local: FirstSeen, link: RedisLink) -> None:
        self._shared = shared
        self._local = local
        self._link = link

    async def first(self, key: str) -> bool:
        if not await self._local.first(key):
            return False
        try:
            return await self._link.call(lambda: self._shared.first(key))
        except RedisDown:
            return True


@dataclass(frozen=True, slots=True)
class RedisLimits:
    """The limits backend built from a Redis URL, with its health and its closer."""

    limiter: FailoverRateLimiter
    locks: FailoverLockManager
    deliveries: FailoverFirstSeen
    link: RedisLink
    redis: Redis

    async def aclose(self) -> None:
        await self.link.aclose()
        await self.redis.aclose()


async def open_redis_limits(
    url: str,
    clock: Clock,
    *,
    prefix: str = "g4f-bridge:",
    first_probe: float = FIRST_PROBE,
    max_probe: float = MAX_PROBE,
) -> RedisLimits:
    """Rate limits and locks on the Redis at `url`, falling back to memory while it is down.

    Never fails because Redis is unreachable: it then starts degraded (one WARNING logged).
    """
    redis = Redis.from_url(
        url, socket_timeout=SOCKET_TIMEOUT, socket_connect_timeout=SOCKET_TIMEOUT
    )
    link = RedisLink(redis, clock, first_probe=first_probe, max_probe=max_probe)
    limiter = FailoverRateLimiter(
        RedisRateLimiter(redis, clock, prefix=prefix), MemoryRateLimiter(clock), link
    )
    locks = FailoverLockManager(
        RedisLockManager(redis, clock, prefix=prefix), MemoryLockManager(clock), link, clock
    )
    deliveries = FailoverFirstSeen(RedisFirstSeen(redis, prefix=prefix), MemoryFirstSeen(), link)
    await link.start()
    return RedisLimits(limiter=limiter, locks=locks, deliveries=deliveries, link=link, redis=redis)
