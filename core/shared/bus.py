"""One pub/sub connection per process, shared by everything that listens for news from the
other replicas (a released concurrency slot, an order to stop an answer).

A listener's callback runs in the bus task; it must be quick and must not raise. When the
connection breaks, the bus waits until `RedisLink` says Redis is up, subscribes again and calls
every `on_reconnect` callback, since news published meanwhile is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from core.clock import Clock
from core.limits_redis import REDIS_FAILURES, RedisLink

log = logging.getLogger(__name__)

Listener = Callable[[str], None]  # gets the message's data
RECONNECT_WAIT = 1.0  # seconds between attempts when Redis answers pings but not pub/sub


@dataclass(frozen=True, slots=True)
class Membership:
    """What every shared part of one replica uses: its Redis, that Redis's up/down state, its
    pub/sub bus, the clock, the key prefix, the replica's name and its lease (seconds a
    replica that stopped refreshing still counts as alive)."""

    redis: Redis
    link: RedisLink
    bus: Bus
    clock: Clock
    prefix: str
    replica: str
    lease: float


class Bus:
    """Channel listeners on one Redis pub/sub connection, kept up by a task of its own."""

    def __init__(self, redis: Redis, link: RedisLink, clock: Clock) -> None:
        self._redis = redis
        self._link = link
        self._clock = clock
        self._listeners: dict[str, Listener] = {}
        self._on_reconnect: list[Callable[[], None]] = []
        self._task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()

    def listen(self, channel: str, listener: Listener) -> None:
        """Call `listener` with each message published on `channel` (before `start`)."""
        self._listeners[channel] = listener

    def on_reconnect(self, callback: Callable[[], None]) -> None:
        """Call `callback` after the connection was lost and is back (messages may be lost)."""
        self._on_reconnect.append(callback)

    async def publish(self, channel: str, data: str) -> int | None:
        """Publish `data`: how many processes heard it; None when Redis is down."""
        try:
            heard = await self._link.call(lambda: self._redis.publish(channel, data))
        except Exception:  # RedisDown, or a failure the link already reported
            return None
        return int(heard)

    async def start(self) -> None:
        """Subscribe, waiting a moment for the first subscription (not at all if Redis is down)."""
        self._task = asyncio.create_task(self._run(), name="redis-bus")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._subscribed.wait(), timeout=2.0)

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _run(self) -> None:
        first = True
        while True:
            await self._link.wait_up()
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(*self._listeners)
                self._subscribed.set()
                if not first:
                    for callback in self._on_reconnect:
                        callback()
                first = False
                await self._deliver(pubsub)
            except REDIS_FAILURES as exc:
                log.debug("pub/sub connection lost: %r", exc)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            await self._clock.sleep(RECONNECT_WAIT)

    async def _deliver(self, pubsub: PubSub) -> None:
        while True:
            message = await pubsub.get_message(timeout=1.0)
            if message is None or message.get("type") != "message":
                continue
            channel = as_text(message["channel"])
            listener = self._listeners.get(channel)
            if listener is None:
                continue
            try:
                listener(as_text(message["data"]))
            except Exception:  # one bad listener must not stop the others
                log.exception("a pub/sub listener failed on %s", channel)


def as_text(value: object) -> str:
    """A Redis reply (bytes) as text."""
    return value.decode() if isinstance(value, bytes) else str(value)
