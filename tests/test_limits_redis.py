"""Rate limits and locks in the real Redis on 127.0.0.1:6379 (skipped when it is absent,
required when G4F_BRIDGE_REQUIRE_SERVICES=1, as in CI)."""

from __future__ import annotations

import asyncio
import secrets

import pytest

from core.bridge import Bridge
from core.clock import SystemClock
from core.conversations import Origin
from core.limits import Rate, RateDecision
from core.limits_redis import RedisLockManager, RedisRateLimiter
from core.results import Answered, Refusal, RefusalReason
from tests.conftest import MakeSettings, RedisDb
from tests.fakes.clock import ManualClock
from tests.fakes.g4f_server import FakeG4F
from tests.fakes.surface import ChatServer, RecordingSurface


async def test_sliding_window_exact(redis_db: RedisDb) -> None:
    clock = ManualClock()
    limiter = RedisRateLimiter(redis_db.client, clock, prefix=redis_db.prefix)
    rate = Rate.parse("3/minute")
    decisions = []
    for _ in range(3):
        decisions.append(await limiter.hit("u1", rate))
        await clock.advance(1)
    assert [(d.allowed, d.remaining) for d in decisions] == [(True, 2), (True, 1), (True, 0)]
    refused = await limiter.hit("u1", rate)
    assert not refused.allowed and refused.retry_after == pytest.approx(57.0)
    assert (await limiter.hit("u2", rate)).allowed
    await clock.advance(57)  # the first hit expires now: `limits` still counts it this instant
    assert await limiter.peek("u1", rate) == RateDecision(False, 0, 0.0)
    await clock.advance(0.5)
    assert (await limiter.peek("u1", rate)).remaining == 1
    assert (await limiter.hit("u1", rate)).allowed
    assert not (await limiter.hit("u1", rate)).allowed


async def test_two_instances_share_the_limit(redis_db: RedisDb) -> None:
    clock = ManualClock()
    a = RedisRateLimiter(redis_db.client, clock, prefix=redis_db.prefix)
    b = RedisRateLimiter(redis_db.client, clock, prefix=redis_db.prefix)
    rate = Rate.parse("2/minute")
    assert (await a.hit("u", rate)).allowed
    assert (await b.hit("u", rate)).allowed
    assert not (await a.hit("u", rate)).allowed


async def test_locks_only_holder_releases_and_they_expire(redis_db: RedisDb) -> None:
    clock = ManualClock()
    locks = RedisLockManager(redis_db.client, clock, prefix=redis_db.prefix)
    lease = await locks.try_acquire("chat:u1", ttl=30)
    assert lease is not None
    assert await locks.try_acquire("chat:u1", ttl=30) is None
    other = RedisLockManager(redis_db.client, clock, prefix=redis_db.prefix)
    await other.release(type(lease)(lease.key, "not-the-token", lease.expires_at))
    assert await locks.try_acquire("chat:u1", ttl=30) is None
    await locks.release(lease)
    short = await locks.try_acquire("chat:u1", ttl=0.05)
    assert short is not None
    for _ in range(100):  # Redis expires keys on its own clock
        if await locks.try_acquire("chat:u1", ttl=30) is not None:
            break
        await asyncio.sleep(0.01)
    else:
        pytest.fail("the lease did not expire")


async def test_two_bridges_share_user_limits_through_redis(
    redis_db: RedisDb, make_settings: MakeSettings, g4f: FakeG4F
) -> None:
    user = f"user-{secrets.token_hex(4)}"
    origin = Origin("test", "dm", user, is_private=True)
    settings = make_settings(
        bridge_limits_url=redis_db.url,
        bridge_limits_prefix=redis_db.prefix,
        bridge_user_rate="1/minute",
    )
    first, second = await Bridge.open(settings), await Bridge.open(settings)
    try:
        chat = ChatServer(clock=SystemClock(), interval=0.05)
        answered = await first.ask(origin, "hi", RecordingSurface(chat, chat="dm"))
        refused = await second.ask(origin, "hi", RecordingSurface(chat, chat="dm"))
    finally:
        await first.close()
        await second.close()
    assert isinstance(answered, Answered)
    assert isinstance(refused, Refusal) and refused.reason is RefusalReason.RATE_LIMITED


async def test_held_tells_whether_a_lock_is_taken(redis_db: RedisDb) -> None:
    locks = RedisLockManager(redis_db.client, ManualClock(), prefix=redis_db.prefix)
    assert not await locks.held("k")
    lease = await locks.try_acquire("k", ttl=30)
    assert lease is not None and await locks.held("k")
    await locks.release(lease)
    assert not await locks.held("k")
