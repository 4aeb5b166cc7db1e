"""Rate limits and in-flight locks in Redis, shared by every bridge process using that Redis.

Same contracts as `MemoryRateLimiter` and `MemoryLockManager` (core.limits). Each operation is
one Lua script, so it is atomic across processes. Times come from the `Clock`'s wall time (all
instances share it), passed to the script so tests can drive it.
"""

from __future__ import annotations

import math
import secrets
from typing import Any

from redis.asyncio import Redis

from core.clock import Clock
from core.limits import Lease, Rate, RateDecision

# KEYS[1] = window (sorted set of hit times); ARGV = now, period, count, count_it, member
_HIT = """
local now, period, count = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - period)
local used = redis.call('ZCARD', KEYS[1])
if used < count then
  if ARGV[4] == '1' then
    redis.call('ZADD', KEYS[1], now, ARGV[5])
    redis.call('PEXPIRE', KEYS[1], math.ceil(period * 1000))
    used = used + 1
  end
  return {1, count - used, '0'}
end
local oldest = redis.call('ZRANGE', KEYS[1], used - count, used - count, 'WITHSCORES')
return {0, 0, tostring(tonumber(oldest[2]) + period - now)}
"""

# KEYS[1] = lock; ARGV[1] = token
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RedisRateLimiter:
    """`RateLimiter` in Redis: an exact sliding-window log per (key, rate)."""

    def __init__(self, redis: Redis, clock: Clock, *, prefix: str = "g4f-bridge:") -> None:
        self._redis = redis
        self._clock = clock
        self._prefix = prefix
        self._script: Any = redis.register_script(_HIT)

    async def hit(self, key: str, rate: Rate) -> RateDecision:
        return await self._run(key, rate, count_it=True)

    async def peek(self, key: str, rate: Rate) -> RateDecision:
        return await self._run(key, rate, count_it=False)

    async def _run(self, key: str, rate: Rate, *, count_it: bool) -> RateDecision:
        window = f"{self._prefix}rate:{rate}:{key}"
        now = self._clock.wall()
        member = f"{now:.6f}:{secrets.token_hex(4)}"
        allowed, remaining, retry_after = await self._script(
            keys=[window], args=[repr(now), repr(rate.period), rate.count, int(count_it), member]
        )
        return RateDecision(bool(allowed), int(remaining), max(0.0, float(retry_after)))


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
