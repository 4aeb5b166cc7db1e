"""The concurrency cap across every replica sharing a Redis, with one fair (FIFO) queue.

Redis holds the slots' holders and the queue, each entry with a lease its replica refreshes
(every third of `lease`), so a replica that dies frees its slots and leaves the queue within
`lease` seconds. A released slot is announced on pub/sub, so the head of the queue takes it at
once, whichever replica it waits on; waiters also look again every third of a lease.

While Redis is down, requests wait for the per-process gate instead (the cap then holds per
process, as with `memory://`); a slot held in Redis when it went away expires with its lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from core.clock import wait_for_event
from core.limits import ConcurrencyGate, PositionCallback
from core.limits_redis import RedisDown
from core.shared.bus import Membership

log = logging.getLogger(__name__)

# KEYS: queue (ticket -> arrival), alive (queued ticket -> lease end), holders (ticket -> lease
# end), arrivals (counter). ARGV: now, limit, ticket, lease end.
# Returns {1, 0} when the ticket holds a slot, else {0, its position in the queue (1: next)}.
_ACQUIRE = """
local now = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
for _, gone in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)) do
  redis.call('ZREM', KEYS[1], gone)
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if redis.call('ZSCORE', KEYS[3], ARGV[3]) then
  redis.call('ZADD', KEYS[3], ARGV[4], ARGV[3])
  return {1, 0}
end
if not redis.call('ZSCORE', KEYS[1], ARGV[3]) then
  redis.call('ZADD', KEYS[1], redis.call('INCR', KEYS[4]), ARGV[3])
end
local free = tonumber(ARGV[2]) - redis.call('ZCARD', KEYS[3])
local rank = redis.call('ZRANK', KEYS[1], ARGV[3])
if rank < free then
  redis.call('ZREM', KEYS[1], ARGV[3])
  redis.call('ZREM', KEYS[2], ARGV[3])
  redis.call('ZADD', KEYS[3], ARGV[4], ARGV[3])
  return {1, 0}
end
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[3])
return {0, rank - free + 1}
"""


class SharedGate:
    """`ConcurrencyGate`'s contract across replicas (see module doc). `in_use` and `waiting`
    count this replica's own requests."""

    def __init__(self, member: Membership, limit: int) -> None:
        self._redis = redis = member.redis
        self._link = member.link
        self._clock = member.clock
        self._local = ConcurrencyGate(limit)
        self._replica = member.replica
        self._lease = member.lease
        base = f"{member.prefix}gate:"
        self._queue, self._alive = f"{base}queue", f"{base}alive"
        self._holders, self._arrivals = f"{base}holders", f"{base}arrivals"
        self._channel = f"{base}released"
        self._acquire: Any = redis.register_script(_ACQUIRE)
        self._tickets = itertools.count()
        self._held = 0
        self._queued = 0
        self._released = asyncio.Event()  # replaced after each release it announces
        member.bus.listen(self._channel, self._on_release)
        member.bus.on_reconnect(lambda: self._on_release(""))

    @property
    def limit(self) -> int:
        return self._local.limit

    @property
    def in_use(self) -> int:
        """Slots this replica holds now."""
        return self._held + self._local.in_use

    @property
    def waiting(self) -> int:
        """This replica's requests queued for a slot."""
        return self._queued + self._local.waiting

    def slot(
        self, *, on_position: PositionCallback | None = None
    ) -> AbstractAsyncContextManager[None]:
        """Hold one slot of the fleet's cap for the body of an ``async with`` (see
        `ConcurrencyGate.slot`; positions count every replica's waiters)."""
        return self._slot(on_position)

    @asynccontextmanager
    async def _slot(self, on_position: PositionCallback | None) -> AsyncIterator[None]:
        ticket = f"{self._replica}:{next(self._tickets)}"
        if not await self._wait_for_slot(ticket, on_position):
            async with self._local.slot(on_position=on_position):
                yield
            return
        self._held += 1
        keeper = asyncio.create_task(self._keep(ticket), name="gate-lease")
        try:
            yield
        finally:
            self._held -= 1
            keeper.cancel()
            await asyncio.gather(keeper, return_exceptions=True)
            await self._give_back(ticket)

    async def _wait_for_slot(self, ticket: str, on_position: PositionCallback | None) -> bool:
        """True once `ticket` holds a slot in Redis; False when Redis is down (wait locally)."""
        reported = 0
        queued = False
        try:
            while True:
                released = self._released
                granted, position = await self._link.call(lambda: self._try(ticket))
                if granted:
                    return True
                if not queued:
                    queued = True
                    self._queued += 1
                if on_position is not None and position != reported:
                    reported = position
                    await on_position(position)
                await wait_for_event(self._clock, released, self._lease / 3)
        except RedisDown:
            log.debug("concurrency cap per process while Redis is down")
            return False
        except BaseException:
            with contextlib.suppress(Exception):
                await self._give_back(ticket)
            raise
        finally:
            if queued:
                self._queued -= 1

    async def _try(self, ticket: str) -> tuple[bool, int]:
        now = self._clock.wall()
        granted, position = await self._acquire(
            keys=[self._queue, self._alive, self._holders, self._arrivals],
            args=[repr(now), self._local.limit, ticket, repr(now + self._lease)],
        )
        return bool(granted), int(position)

    async def _keep(self, ticket: str) -> None:
        """Refresh the slot's lease while it is held."""
        while True:
            await self._clock.sleep(self._lease / 3)
            with contextlib.suppress(RedisDown):
                await self._link.call(
                    lambda: self._redis.zadd(
                        self._holders, {ticket: self._clock.wall() + self._lease}, xx=True
                    )
                )

    async def _give_back(self, ticket: str) -> None:
        """Leave the holders (or the queue) and tell every waiter."""

        async def leave() -> None:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.zrem(self._holders, ticket)
                pipe.zrem(self._queue, ticket)
                pipe.zrem(self._alive, ticket)
                pipe.publish(self._channel, ticket)
                await pipe.execute()

        with contextlib.suppress(RedisDown):
            await self._link.call(leave)

    def _on_release(self, _data: str) -> None:
        released, self._released = self._released, asyncio.Event()
        released.set()
