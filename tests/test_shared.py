"""What replicas share through the real Redis (core.shared): the platforms' write limits, the
concurrency cap with its queue, and the running answers with Stop passed between replicas.

Each "replica" here is a full set of the shared parts on its own Redis connection, as a second
process would have; the process-level test with two real bridges is tests/test_replicas.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from functools import partial
from typing import Protocol

import pytest

from bots.telegram.surface import chat_limits
from core.bridge import Bridge
from core.bridge.base import CRASH_NOTE, JUST_STARTED
from core.clock import Clock, SystemClock
from core.conversations import Origin
from core.limits_redis import RedisLink
from core.render.renderer import INDICATOR, Outcome, RenderOptions, RenderResult, StreamRenderer
from core.render.scheduler import WriteScheduler
from core.render.surface import WriteLimits
from core.results import Answered, StopResult
from core.shared.fleet import Fleet, open_fleet
from tests.conftest import MakeSettings, RedisDb, leave_streaming
from tests.fakes.clock import ScaledClock
from tests.fakes.g4f_server import FakeG4F
from tests.fakes.surface import ChatServer, RecordingSurface, RollingLimit, ScriptedStream, words

TELEGRAM_GROUP_RULES = (RollingLimit(20, 60.0),)  # and the chat's bucket: 3, then 1 a second


class JoinFleet(Protocol):
    def __call__(
        self, clock: Clock, *, max_concurrency: int = 8, lease: float = 15.0
    ) -> Awaitable[Fleet]: ...


@pytest.fixture
async def fleets(redis_db: RedisDb) -> AsyncIterator[JoinFleet]:
    """Open replicas' shared parts on the test's Redis prefix; all closed at the end."""
    async with AsyncExitStack() as stack:

        async def join(clock: Clock, *, max_concurrency: int = 8, lease: float = 15.0) -> Fleet:
            redis = type(redis_db.client).from_url(redis_db.url)
            stack.push_async_callback(redis.aclose)
            link = RedisLink(redis, clock)
            stack.push_async_callback(link.aclose)
            fleet = await open_fleet(
                redis, link, clock, max_concurrency=max_concurrency, lease=lease,
                prefix=redis_db.prefix,
            )  # fmt: skip
            stack.push_async_callback(fleet.aclose)
            return fleet

        yield join


async def until(check: Callable[[], bool], what: str, seconds: float = 10.0) -> None:
    async with asyncio.timeout(seconds):
        while not check():
            await asyncio.sleep(0.01)
    assert check(), what


# --- write limits ---------------------------------------------------------------------------
@pytest.mark.parametrize("shared", [True, False], ids=["shared", "per-process"])
async def test_two_replicas_answering_in_one_group_keep_to_its_limits(
    fleets: JoinFleet, shared: bool
) -> None:
    """Four answers from each of two replicas in one Telegram group: with the shared ledger
    the platform never answers 429 and every answer is complete; each replica counting only
    its own writes (the control) overruns the group's limits."""
    clock = ScaledClock(factor=10)
    server = ChatServer(clock=clock, interval=1.0, burst=3, rolling=TELEGRAM_GROUP_RULES)
    limits = chat_limits(-100, private=False).send
    writes = WriteLimits(send=limits, edit=limits)
    renderers: list[StreamRenderer] = []
    texts: list[str] = []
    for replica in range(2):
        ledger = (await fleets(clock)).writes if shared else None
        scheduler = WriteScheduler(clock, shared=ledger)
        for n in range(4):
            text = " ".join(f"r{replica}a{n}w{i}" for i in range(12))
            texts.append(text)
            surface = RecordingSurface(server, chat="group", writes=writes, max_length=4000)
            renderers.append(
                StreamRenderer(
                    ScriptedStream(clock, words(text, every=0.4)),
                    surface,
                    scheduler=scheduler,
                    clock=clock,
                    options=RenderOptions(),
                )
            )
    results: list[RenderResult] = await asyncio.wait_for(
        asyncio.gather(*(r.run() for r in renderers)), 60
    )
    assert [r.outcome for r in results] == [Outcome.DONE] * len(renderers)
    for result, text in zip(results, texts, strict=True):
        assert server.shown(result.messages)[0] == text, "every answer ends complete"
    if shared:
        assert server.rate_limited == 0
    else:
        assert server.rate_limited > 0, "the control should overrun the limits"


# --- the concurrency cap --------------------------------------------------------------------
async def test_the_cap_holds_across_replicas_in_asking_order(
    fleets: JoinFleet,
) -> None:
    """A cap of 2 shared by two replicas: six requests, alternating between them, never hold
    more than two slots, are served in the order they asked, and see their queue positions."""
    clock = SystemClock()
    a: Fleet = await fleets(clock, max_concurrency=2)
    b: Fleet = await fleets(clock, max_concurrency=2)
    holding: set[int] = set()
    most = 0
    served: list[int] = []
    positions: dict[int, list[int]] = {}
    release = {n: asyncio.Event() for n in range(6)}

    async def request(n: int) -> None:
        nonlocal most

        async def on_position(position: int) -> None:
            positions.setdefault(n, []).append(position)

        async with (a if n % 2 == 0 else b).gate.slot(on_position=on_position):
            served.append(n)
            holding.add(n)
            most = max(most, len(holding))
            await release[n].wait()
            holding.discard(n)

    tasks = []
    for n in range(6):
        tasks.append(asyncio.create_task(request(n)))
        await until(partial(lambda m: m in served or m in positions, n), f"{n} served or queued")
    assert served == [0, 1] and positions == {2: [1], 3: [2], 4: [3], 5: [4]}
    assert a.gate.in_use == 1 and b.gate.in_use == 1 and a.gate.waiting == 2
    for n in range(6):
        release[n].set()
        await until(partial(lambda m: m not in holding and (m >= 4 or m + 2 in served), n), "next")
    await asyncio.wait_for(asyncio.gather(*tasks), 10)
    assert served == list(range(6)) and most == 2
    seen = positions[5]  # positions count down as slots free up (changes may coalesce)
    assert seen[0] == 4 and seen[-1] == 1 and seen == sorted(set(seen), reverse=True)


async def test_a_cancelled_waiter_and_a_dead_holder_give_their_places_back(
    fleets: JoinFleet, redis_db: RedisDb
) -> None:
    clock = SystemClock()
    a: Fleet = await fleets(clock, max_concurrency=1, lease=1.0)
    b: Fleet = await fleets(clock, max_concurrency=1, lease=1.0)
    # A replica that took the only slot and died: its lease is never refreshed.
    holders = f"{redis_db.prefix}gate:holders"
    await redis_db.client.zadd(holders, {"dead:1": clock.wall() + 1.0})
    queued = asyncio.Event()

    async def on_position(_position: int) -> None:
        queued.set()

    async def hold() -> None:
        async with a.gate.slot(on_position=on_position):
            await asyncio.sleep(3600)

    waiter = asyncio.create_task(hold())
    await asyncio.wait_for(queued.wait(), 5)
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    assert a.gate.waiting == 0
    assert await redis_db.client.zcard(f"{redis_db.prefix}gate:queue") == 0

    got = asyncio.Event()

    async def take() -> None:
        async with b.gate.slot():
            got.set()

    taker = asyncio.create_task(take())
    await asyncio.wait_for(got.wait(), 5)  # the dead holder's lease ran out after 1 s
    await taker
    assert await redis_db.client.zcard(holders) == 0


# --- running answers ------------------------------------------------------------------------
async def test_stop_is_passed_to_the_replica_that_streams_and_leases_expire(
    fleets: JoinFleet,
) -> None:
    clock = SystemClock()
    a: Fleet = await fleets(clock, lease=1.0)
    b: Fleet = await fleets(clock, lease=1.0)
    stopped: list[str] = []
    a.answers.on_stop(stopped.append)
    a.answers.add("message:tg:1:7", "u1")
    owner = None
    async with asyncio.timeout(5):
        while owner is None:
            owner = await b.answers.owner("message:tg:1:7")
    assert owner.replica == a.replica and owner.user_id == "u1"
    assert await b.answers.stop(owner, "message:tg:1:7")
    await until(lambda: stopped == ["message:tg:1:7"], "the order reached the streaming replica")
    await asyncio.sleep(1.2)
    assert await b.answers.alive(["message:tg:1:7"]), "a live replica refreshes its answers"
    a.answers.remove("message:tg:1:7")
    async with asyncio.timeout(5):
        while await b.answers.alive(["message:tg:1:7"]):
            await asyncio.sleep(0.02)
    a.answers.add("message:tg:1:8", "u1")
    async with asyncio.timeout(5):
        while not await b.answers.alive(["message:tg:1:8"]):
            await asyncio.sleep(0.02)
    await a.answers.aclose()  # its keeper stops, as in a replica that died ...
    await a.bus.aclose()
    # ... though aclose also forgets them at once; a dead one's keys expire with the lease.
    assert not await b.answers.alive(["message:tg:1:8"])


async def test_stop_pressed_on_another_bridge_stops_the_answer(
    make_settings: MakeSettings, g4f: FakeG4F, redis_db: RedisDb, tmp_path: object
) -> None:
    """Two bridges sharing Redis and a store: Stop pressed on the one that does not stream the
    answer stops it on the one that does; a stranger's press is refused."""
    clock = ScaledClock(factor=1)
    settings = make_settings(bridge_limits_url=redis_db.url, bridge_limits_prefix=redis_db.prefix)
    streaming = await Bridge.open(settings, clock=clock)
    other = await Bridge.open(settings, clock=clock)
    try:
        g4f.trickle_interval = 0.05
        g4f.answers["long"] = " ".join(f"w{i}" for i in range(400))
        chat = ChatServer(clock=clock, interval=0.1, burst=5)
        asker = Origin("telegram", "dm-1", "u1", is_private=True)
        answer = asyncio.create_task(
            streaming.ask(asker, "long", RecordingSurface(chat, chat="dm-1", max_length=4000),
                          model="trickle")
        )  # fmt: skip
        await until(lambda: bool(chat.messages), "the answer shows text")
        message_id = next(iter(chat.messages))
        stranger = Origin("telegram", "dm-1", "u2", is_private=True)
        async with asyncio.timeout(5):
            while (result := await other.stop(stranger, message_id)) is StopResult.FINISHED:
                await asyncio.sleep(0.02)  # until its registration reached Redis
        assert result is StopResult.NOT_YOURS
        assert await other.stop(asker, message_id) is StopResult.STOPPED
        finished = await asyncio.wait_for(answer, 10)
        assert isinstance(finished, Answered) and finished.outcome is Outcome.STOPPED
        assert 0 < len(finished.text) < len(g4f.answers["long"])
        assert INDICATOR not in chat.messages[message_id]
        async with asyncio.timeout(5):  # once the ended answer's registration is gone
            while await other.stop(asker, message_id) is not StopResult.FINISHED:
                await asyncio.sleep(0.02)
    finally:
        await other.close()
        await streaming.close()


# --- a replica that died mid-answer ---------------------------------------------------------
async def test_answers_no_live_replica_holds_are_ended_by_the_sweep_or_a_stop_press(
    make_settings: MakeSettings, redis_db: RedisDb, fleets: JoinFleet
) -> None:
    """Three recorded answers, as a replica that streams and one that died would leave them:
    the one a live replica holds stays; one abandoned for longer than the lease is ended by
    the sweep; one abandoned a moment ago is ended at once when Stop is pressed on it. Each
    ended one keeps its text and says it was interrupted, with Regenerate."""
    settings = make_settings(
        bridge_limits_url=redis_db.url,
        bridge_limits_prefix=redis_db.prefix,
        bridge_replica_lease=1.0,
    )
    bridge = await Bridge.open(settings)
    live = await fleets(SystemClock(), lease=1.0)
    try:
        chat = ChatServer(clock=bridge.clock, interval=0.001, burst=10)
        surface = RecordingSurface(chat, chat="room", max_length=4000)
        now = bridge.clock.wall()
        refs = {}
        for name, age in (("held", 5.0), ("abandoned", 5.0), ("pressed", JUST_STARTED + 0.5)):
            refs[name] = await leave_streaming(bridge, surface, name, now - age)
        live.answers.add(f"message:test:room:{refs['held'].id}", "u1")
        asker = Origin("test", "room", "u1")
        async with asyncio.timeout(5):
            while not await live.answers.alive([f"message:test:room:{refs['held'].id}"]):
                await asyncio.sleep(0.01)
        assert await bridge.end_interrupted("test", lambda _chat_id: surface) == 0  # swept later
        assert await bridge.stop(asker, refs["pressed"].id) is StopResult.STOPPED
        assert chat.messages[refs["pressed"].id] == f"pressed text\n\n{CRASH_NOTE}"
        assert chat.buttons[refs["pressed"].id] == ("regenerate",)
        async with asyncio.timeout(10):
            while not chat.messages[refs["abandoned"].id].endswith(CRASH_NOTE):
                await asyncio.sleep(0.01)
        assert chat.messages[refs["abandoned"].id] == f"abandoned text\n\n{CRASH_NOTE}"
        await asyncio.sleep(1.0)  # a few sweeps more (every lease / 3)
        assert chat.messages[refs["held"].id] == "held text" + INDICATOR
        left = await bridge.store.streaming_answers("test")
        assert [a.messages[0][0] for a in left] == [refs["held"].id]
    finally:
        await bridge.close()
