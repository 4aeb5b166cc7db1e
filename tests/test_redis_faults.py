"""Redis going away and coming back, against a private redis-server killed by its pid.

While Redis is down the bridge keeps answering on per-process limits and locks, says so once in
the log and in /status, and uses Redis again by itself once it answers. The machine's Redis on
6379 is never touched: every test starts its own server on a free port.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from redis.asyncio import Redis

from core.bridge import Bridge
from core.conversations import Origin
from core.limits import MemoryLockManager, MemoryRateLimiter, Rate
from core.limits_redis import (
    FailoverLockManager,
    FailoverRateLimiter,
    RedisLink,
    RedisLockManager,
    RedisRateLimiter,
)
from core.render.renderer import Outcome
from core.results import Answered, ModelChosen, Status
from core.texts import LIMITS_DEGRADED_LINE, status_text
from tests.conftest import MakeSettings
from tests.fakes.clock import ManualClock, ScaledClock
from tests.fakes.g4f_server import FakeG4F
from tests.fakes.redis_server import RedisServer, free_port
from tests.fakes.surface import ChatServer, RecordingSurface

LOGGER = "core.limits_redis"
ASKER = Origin("test", "dm-1", "u1", is_private=True)
OTHER = Origin("test", "dm-2", "u2", is_private=True)
RATE = Rate.parse("3/minute")


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[RedisServer]:
    redis = RedisServer(tmp_path / "redis")
    await redis.start()
    yield redis
    await redis.stop()


@pytest.fixture
async def direct(server: RedisServer) -> AsyncIterator[Redis]:
    """A plain client of the private server, to see what the bridge stored there."""
    client = server.client()
    yield client
    await client.aclose()


async def until(predicate: Callable[[], bool], what: str) -> None:
    """Wait for I/O the test cannot drive (a probe's ping, a stream's next frame)."""

    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(0.01)

    try:
        await asyncio.wait_for(poll(), 10.0)
    except TimeoutError:
        pytest.fail(f"timed out waiting until {what}")


def records(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == level]


def link_of(bridge: Bridge) -> RedisLink:
    assert isinstance(bridge.limits_health, RedisLink)
    return bridge.limits_health


async def stored_keys(server: RedisServer, pattern: str = "g4f-bridge:*") -> list[bytes]:
    """The keys on the private server now (a new connection: the server may have restarted)."""
    client = server.client()
    try:
        return [k async for k in client.scan_iter(match=pattern)]
    finally:
        await client.aclose()


def rate_pattern(user: str) -> str:
    return f"g4f-bridge:rate/*:{user}/*"


# --- the whole bridge ---------------------------------------------------------------------


async def test_redis_killed_mid_answer_the_answer_finishes_and_commands_reply(
    server: RedisServer,
    make_settings: MakeSettings,
    g4f: FakeG4F,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    clock = ScaledClock(factor=20)
    bridge = await Bridge.open(
        make_settings(bridge_limits_url=server.url, bridge_user_rate="20/minute"), clock=clock
    )
    try:
        chat = ChatServer(clock=clock, interval=1.0)
        g4f.trickle_interval = 0.05
        g4f.answers["long"] = " ".join(f"w{i}" for i in range(30))
        answer = asyncio.create_task(
            bridge.ask(
                ASKER, "long", RecordingSurface(chat, chat="dm-1", max_length=2000), model="trickle"
            )
        )
        await until(lambda: bool(chat.writes), "the answer shows its first text")
        assert await stored_keys(server, rate_pattern("u1")), (
            "the first question was counted in Redis"
        )
        await server.kill()

        status = await bridge.status(OTHER)
        chosen = await bridge.set_model(OTHER, "gpt-4o-mini")
        other = await bridge.ask(
            OTHER, "hello", RecordingSurface(chat, chat="dm-2", max_length=2000)
        )
        finished = await asyncio.wait_for(answer, 30)

        assert isinstance(finished, Answered) and finished.outcome is Outcome.DONE
        assert finished.text == g4f.answers["long"]
        assert chat.messages[finished.messages[0].id].startswith(g4f.answers["long"])
        assert isinstance(status, Status) and status.limits_degraded
        assert LIMITS_DEGRADED_LINE in status_text(status)
        assert chosen == ModelChosen("gpt-4o-mini", "user")
        assert isinstance(other, Answered) and other.outcome is Outcome.DONE
        assert bridge.limits_degraded
        assert len(records(caplog, logging.WARNING)) == 1

        await server.start()
        await asyncio.wait_for(link_of(bridge).wait_up(), 10)
        assert not bridge.limits_degraded
        again = await bridge.ask(
            OTHER, "after", RecordingSurface(chat, chat="dm-2", max_length=2000)
        )
        assert isinstance(again, Answered) and again.outcome is Outcome.DONE
        assert await stored_keys(server, rate_pattern("u2")), (
            "after the restart the question is counted in Redis"
        )
        status = await bridge.status(OTHER)
        assert isinstance(status, Status) and not status.limits_degraded
        assert LIMITS_DEGRADED_LINE not in status_text(status)
        assert len(records(caplog, logging.WARNING)) == 1
        assert len(records(caplog, logging.INFO)) == 1
    finally:
        await bridge.close()


async def test_bridge_started_with_redis_unreachable_answers_then_uses_redis_when_it_starts(
    tmp_path: Path,
    make_settings: MakeSettings,
    g4f: FakeG4F,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    server = RedisServer(tmp_path / "redis", port=free_port())  # not started yet
    clock = ScaledClock(factor=20)
    bridge = await Bridge.open(
        make_settings(bridge_limits_url=server.url, bridge_user_rate="20/minute"), clock=clock
    )
    try:
        assert bridge.limits_degraded
        [warning] = records(caplog, logging.WARNING)
        assert f"127.0.0.1:{server.port}/0" in warning
        chat = ChatServer(clock=clock, interval=1.0)
        first = await bridge.ask(ASKER, "hi", RecordingSurface(chat, chat="dm-1", max_length=2000))
        assert isinstance(first, Answered) and first.outcome is Outcome.DONE
        status = await bridge.status(ASKER)
        assert isinstance(status, Status) and status.limits_degraded

        await server.start()
        direct = server.client()
        try:
            await asyncio.wait_for(link_of(bridge).wait_up(), 10)
            second = await bridge.ask(
                ASKER, "again", RecordingSurface(chat, chat="dm-1", max_length=2000)
            )
            assert isinstance(second, Answered) and second.outcome is Outcome.DONE
            assert await stored_keys(server, rate_pattern("u1"))
        finally:
            await direct.aclose()
        assert not bridge.limits_degraded
        assert len(records(caplog, logging.WARNING)) == 1
        assert len(records(caplog, logging.INFO)) == 1
    finally:
        await bridge.close()
        await server.stop()


# --- the failover parts on a manual clock -------------------------------------------------


Parts = tuple[RedisLink, FailoverRateLimiter, FailoverLockManager, ManualClock]


@pytest.fixture
async def parts(server: RedisServer) -> AsyncIterator[Parts]:
    clock = ManualClock()
    redis = Redis.from_url(server.url, socket_timeout=2.0, socket_connect_timeout=2.0)
    link = RedisLink(redis, clock, first_probe=1.0, max_probe=8.0)
    limiter = FailoverRateLimiter(RedisRateLimiter(redis, clock), MemoryRateLimiter(clock), link)
    locks = FailoverLockManager(
        RedisLockManager(redis, clock), MemoryLockManager(clock), link, clock
    )
    await link.start()
    yield link, limiter, locks, clock
    await link.aclose()
    await redis.aclose()


async def advance_until_up(link: RedisLink, clock: ManualClock, seconds: float) -> None:
    await clock.advance(seconds)
    await asyncio.wait_for(link.wait_up(), 10)


async def test_probes_with_backoff_and_no_call_touches_redis_while_down(
    parts: Parts, server: RedisServer
) -> None:
    link, limiter, _, clock = parts
    assert (await limiter.hit("u", RATE)).remaining == 2
    await server.kill()
    assert (await limiter.hit("u", RATE)).remaining == 2  # memory: a fresh window
    assert link.degraded and link.outages == 1

    await server.start()
    for _ in range(5):
        await limiter.hit("u", RATE)
    assert link.degraded, "no probe before the first backoff step"
    assert not await stored_keys(server), "the calls went to memory, not to Redis"
    await server.kill()

    await clock.advance(1.0)  # probe 1: still down
    await until(lambda: link.probes == 1, "the first probe failed")
    await server.start()
    await clock.advance(1.9)  # the next probe is 2 s after the first
    assert link.degraded and link.probes == 1
    await advance_until_up(link, clock, 0.2)
    assert link.probes == 2
    assert (await limiter.hit("u", RATE)).remaining == 2
    assert await stored_keys(server), "after recovery the hit went to Redis"


async def test_memory_leases_from_the_outage_stay_in_memory_after_recovery(
    parts: Parts, server: RedisServer
) -> None:
    link, _, locks, clock = parts
    await server.kill()
    during = await locks.try_acquire("k", ttl=60)
    assert during is not None and link.degraded
    assert await locks.try_acquire("k", ttl=60) is None

    await server.start()
    await advance_until_up(link, clock, 1.0)
    assert await locks.held("k")
    assert await locks.try_acquire("k", ttl=60) is None, "the outage lease still holds it"
    assert not await stored_keys(server), "it was not moved to Redis"
    await locks.release(during)
    after = await locks.try_acquire("k", ttl=60)
    assert after is not None and await stored_keys(server) == [b"g4f-bridge:lock:k"]
    await locks.release(after)
    assert not await stored_keys(server)


async def test_a_hung_redis_times_out_and_a_lease_it_kept_is_released_when_it_answers(
    parts: Parts, server: RedisServer, direct: Redis
) -> None:
    link, _, locks, clock = parts
    lease = await locks.try_acquire("k", ttl=600)
    assert lease is not None and await direct.exists("g4f-bridge:lock:k")
    server.freeze()
    try:
        await asyncio.wait_for(locks.release(lease), 10)  # the socket timeout, not forever
        assert link.degraded and locks.unreleased == 1
        assert await locks.try_acquire("k", ttl=600) is not None  # memory: this process is free
    finally:
        server.thaw()
    await advance_until_up(link, clock, 1.0)
    assert locks.unreleased == 0
    assert not await direct.exists("g4f-bridge:lock:k"), "released once Redis answered"
