"""Each delivery handled once: a platform that redelivers (or sends to several processes behind
a load balancer) has its duplicates recognised by a key the adapter derives from the event.

`MemoryFirstSeen` remembers the last `capacity` keys of this process (a bounded set, oldest
forgotten first). `RedisFirstSeen` claims a key with SET NX and an expiry, so every process using
that Redis agrees on which one saw it first. `FailoverFirstSeen` (built by core.limits_redis)
asks memory first, then Redis while it is up; while Redis is down each process deduplicates on
its own, like the other limits (a duplicate sent to another process meanwhile is handled twice).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from redis.asyncio import Redis

MEMORY_CAPACITY = 10_000  # far more than a platform redelivers within its retry window
SEEN_TTL = 24 * 3600.0  # seconds; platforms give up redelivering well within a day


class FirstSeen(Protocol):
    """Whether a delivery's key is new (True exactly once per key, across its sharers)."""

    async def first(self, key: str) -> bool: ...


class MemoryFirstSeen:
    """The last `capacity` keys seen by this process."""

    def __init__(self, capacity: int = MEMORY_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity!r}")
        self._capacity = capacity
        self._keys: OrderedDict[str, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._keys)

    async def first(self, key: str) -> bool:
        if key in self._keys:
            return False
        self._keys[key] = None
        if len(self._keys) > self._capacity:
            self._keys.popitem(last=False)
        return True


class RedisFirstSeen:
    """Keys claimed in Redis: ``SET {prefix}seen:{key} 1 NX PX ttl``."""

    def __init__(self, redis: Redis, *, prefix: str = "g4f-bridge:", ttl: float = SEEN_TTL) -> None:
        if not math.isfinite(ttl) or ttl <= 0:
            raise ValueError(f"ttl must be a positive number of seconds, got {ttl!r}")
        self._redis = redis
        self._prefix = prefix
        self._ttl_ms = max(1, math.ceil(ttl * 1000))

    async def first(self, key: str) -> bool:
        claimed = await self._redis.set(f"{self._prefix}seen:{key}", b"1", nx=True, px=self._ttl_ms)
        return bool(claimed)
