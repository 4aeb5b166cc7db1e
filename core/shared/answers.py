"""Which replica streams which answer, and orders to it (Stop) from the others.

A running answer is registered under each key it is found by (the asker's in-flight key, each
message it shows), with its replica and its asker, as Redis keys with a lease the replica
refreshes every third of `lease`. A replica asked to stop an answer it does not stream looks up
the owner and publishes the order on the owner's channel; a key whose lease ran out belongs to a
replica that died, so its half-written message may be ended by whoever finds it.

Registration is written in the background (at once when a key is added), so `add` and `remove`
never wait for Redis. While Redis is down, lookups answer "unknown" (`RedisDown`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from core.clock import wait_for_event
from core.limits_redis import REDIS_FAILURES
from core.shared.bus import Membership, as_text

log = logging.getLogger(__name__)

SEPARATOR = "\x1f"

# KEYS[1] = registration; ARGV[1] = the value it must still have
_FORGET = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class Delivery(Enum):
    """What became of an order to another replica."""

    HEARD = "heard"
    GONE = "gone"  # nobody listens on its channel: the replica died
    UNKNOWN = "unknown"  # Redis is down


@dataclass(frozen=True, slots=True)
class Owner:
    """The replica streaming an answer, and who asked for it."""

    replica: str
    user_id: str


class AnswerRegistry:
    """The running answers of every replica sharing one Redis (see module doc)."""

    def __init__(self, member: Membership) -> None:
        self._redis = redis = member.redis
        self._link = member.link
        self._bus = bus = member.bus
        self._clock = member.clock
        self._prefix = f"{member.prefix}answer:"
        self._control = f"{member.prefix}control:"
        self.replica = replica = member.replica
        self._lease = member.lease
        self._mine: dict[str, str] = {}  # key -> its registered value
        self._new: set[str] = set()
        self._gone: dict[str, str] = {}
        self._news = asyncio.Event()
        self._forget: Any = redis.register_script(_FORGET)
        self._on_stop: Callable[[str], None] = lambda _key: None
        self._keeper: asyncio.Task[None] | None = None
        bus.listen(self._control + replica, self._order)

    def on_stop(self, callback: Callable[[str], None]) -> None:
        """Call `callback(key)` when another replica asks this one to stop an answer."""
        self._on_stop = callback

    def add(self, key: str, user_id: str) -> None:
        """This replica streams the answer found by `key`, asked by `user_id`."""
        self._mine[key] = f"{self.replica}{SEPARATOR}{user_id}"
        self._gone.pop(key, None)
        self._new.add(key)
        self._news.set()

    def remove(self, key: str) -> None:
        """The answer found by `key` ended here."""
        value = self._mine.pop(key, None)
        self._new.discard(key)
        if value is not None:
            self._gone[key] = value
            self._news.set()

    async def owner(self, key: str) -> Owner | None:
        """Who streams the answer found by `key` (None: nobody alive); `RedisDown` if unknown."""
        value = await self._link.call(lambda: self._redis.get(self._prefix + key))
        if value is None:
            return None
        replica, _, user_id = as_text(value).partition(SEPARATOR)
        return Owner(replica, user_id)

    async def alive(self, keys: list[str], *, dead: str | None = None) -> bool:
        """Whether any of `keys` belongs to an answer a live replica streams (not counting the
        replica `dead`, known to be gone); `RedisDown` if unknown."""
        if not keys:
            return False
        values = await self._link.call(lambda: self._redis.mget([self._prefix + k for k in keys]))
        owners = [as_text(v).partition(SEPARATOR)[0] for v in values if v is not None]
        return any(owner != dead for owner in owners)

    async def stop(self, owner: Owner, key: str) -> Delivery:
        """Ask `owner` to stop the answer found by `key`. Nobody listening on its channel means
        the replica is gone (a live one always listens), though its leases still run."""
        order = json.dumps({"stop": key})
        heard = await self._bus.publish(self._control + owner.replica, order)
        if heard is None:
            return Delivery.UNKNOWN
        return Delivery.HEARD if heard else Delivery.GONE

    async def start(self) -> None:
        self._keeper = asyncio.create_task(self._keep(), name="answer-registry")

    async def aclose(self) -> None:
        keeper, self._keeper = self._keeper, None
        if keeper is not None:
            keeper.cancel()
            await asyncio.gather(keeper, return_exceptions=True)
        for key, value in list(self._mine.items()):
            self._gone[key] = value
        self._mine.clear()
        with contextlib.suppress(Exception):
            await self._flush(refresh=False)

    def _order(self, data: str) -> None:
        try:
            key = json.loads(data)["stop"]
        except (ValueError, KeyError, TypeError):
            log.warning("ignored a malformed order from another replica")
            return
        if isinstance(key, str):
            self._on_stop(key)

    async def _keep(self) -> None:
        """Write new registrations at once, drop ended ones, refresh the rest now and then."""
        refreshed = self._clock.now()
        while True:
            await wait_for_event(self._clock, self._news, self._lease / 3)
            self._news.clear()
            refresh = self._clock.now() - refreshed >= self._lease / 3
            try:
                await self._flush(refresh=refresh)
            except REDIS_FAILURES as exc:  # they expire on their own; retried on the next turn
                log.debug("could not update the running answers: %r", exc)
                await self._clock.sleep(1.0)
                continue
            if refresh:
                refreshed = self._clock.now()

    async def _flush(self, *, refresh: bool) -> None:
        if self._link.degraded:
            return
        ttl = max(1, round(self._lease * 1000))
        new, self._new = self._new, set()
        gone, self._gone = self._gone, {}
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for key in self._mine if refresh else new:
                    if key in self._mine:
                        pipe.set(self._prefix + key, self._mine[key], px=ttl)
                await pipe.execute()
            for key, value in gone.items():
                await self._forget(keys=[self._prefix + key], args=[value])
        except BaseException:
            self._new |= new & self._mine.keys()
            for key, value in gone.items():
                self._gone.setdefault(key, value)
            raise
