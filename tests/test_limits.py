"""Rates, rate limiting, leases, the concurrency gate and the access policy (exact timings)."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import pytest

from core.limits import (
    AccessPolicy,
    ConcurrencyGate,
    Lease,
    LockManager,
    MemoryLockManager,
    MemoryRateLimiter,
    Rate,
    RateDecision,
    RateLimiter,
    rate_item,
)
from tests.fakes.clock import ManualClock

# --- Rate ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "count", "period"),
    [
        ("10/minute", 10, 60.0),
        ("5/second", 5, 1.0),
        ("100/hour", 100, 3600.0),
        ("20/day", 20, 86400.0),
        ("3/30s", 3, 30.0),
        ("2/5 minutes", 2, 300.0),
        (" 7 / h ", 7, 3600.0),
        ("1/1.5h", 1, 5400.0),
        ("4/MIN", 4, 60.0),
        ("6/2d", 6, 172800.0),
    ],
)
def test_rate_parse(text: str, count: int, period: float) -> None:
    assert Rate.parse(text) == Rate(count, period)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "10",
        "ten/minute",
        "10/",
        "/minute",
        "10/fortnight",
        "0/minute",
        "-1/minute",
        "1.5/minute",
        "10/0s",
        "10/minute/extra",
        "10/-5s",
        "١٠/minute",
    ],
)
def test_rate_parse_rejects(text: str) -> None:
    with pytest.raises(ValueError, match=r"rate|period|count"):
        Rate.parse(text)


@pytest.mark.parametrize(
    ("rate", "text"),
    [
        (Rate(10, 60), "10/minute"),
        (Rate(5, 1), "5/second"),
        (Rate(100, 3600), "100/hour"),
        (Rate(20, 86400), "20/day"),
        (Rate(3, 30), "3/30s"),
        (Rate(2, 0.5), "2/0.5s"),
        (Rate(2, 300), "2/300s"),
    ],
)
def test_rate_str_round_trips(rate: Rate, text: str) -> None:
    assert str(rate) == text
    assert Rate.parse(text) == rate


@pytest.mark.parametrize(("count", "period"), [(0, 60.0), (1, 0.0), (1, -1.0), (1, float("inf"))])
def test_rate_rejects_bad_fields(count: int, period: float) -> None:
    with pytest.raises(ValueError):
        Rate(count, period)


@pytest.mark.parametrize(
    ("rate", "seconds"), [(Rate(3, 60), 60), (Rate(2, 0.5), 1), (Rate(1, 90.2), 91)]
)
def test_the_limiter_counts_whole_seconds(rate: Rate, seconds: int) -> None:
    item = rate_item(rate)
    assert (item.amount, item.get_expiry()) == (rate.count, seconds)


async def test_a_fractional_period_is_rounded_up(
    clock: ManualClock, limiter: MemoryRateLimiter
) -> None:
    rate = Rate.parse("1/0.5s")
    assert (await limiter.hit("u", rate)).allowed
    await clock.advance(0.75)
    assert await limiter.hit("u", rate) == RateDecision(False, 0, 0.25)


# --- MemoryRateLimiter --------------------------------------------------------------------

PER_MINUTE_3 = Rate(3, 60)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(start=0.0)


@pytest.fixture
def limiter(clock: ManualClock) -> MemoryRateLimiter:
    return MemoryRateLimiter(clock)


async def hit_at(
    clock: ManualClock, limiter: RateLimiter, at: float, key: str = "u"
) -> RateDecision:
    await clock.advance(at - clock.now())
    return await limiter.hit(key, PER_MINUTE_3)


async def test_sliding_window_exact(clock: ManualClock, limiter: MemoryRateLimiter) -> None:
    assert await hit_at(clock, limiter, 0) == RateDecision(True, 2, 0.0)
    assert await hit_at(clock, limiter, 1) == RateDecision(True, 1, 0.0)
    assert await hit_at(clock, limiter, 2) == RateDecision(True, 0, 0.0)
    assert await hit_at(clock, limiter, 3) == RateDecision(False, 0, 57.0)
    assert await hit_at(clock, limiter, 59.5) == RateDecision(False, 0, 0.5)
    # The instant the first hit expires it still counts (`limits`), and the window is free then.
    assert await hit_at(clock, limiter, 60) == RateDecision(False, 0, 0.0)
    assert await hit_at(clock, limiter, 60.5) == RateDecision(True, 0, 0.0)
    assert await hit_at(clock, limiter, 60.5) == RateDecision(False, 0, 0.5)
    assert await hit_at(clock, limiter, 61.5) == RateDecision(True, 0, 0.0)
    assert await hit_at(clock, limiter, 61.75) == RateDecision(False, 0, 0.25)


async def test_refused_hits_are_not_counted(clock: ManualClock, limiter: MemoryRateLimiter) -> None:
    for t in (0, 1, 2):
        assert (await hit_at(clock, limiter, t)).allowed
    for t in (10, 20, 30, 40, 50):
        assert not (await hit_at(clock, limiter, t)).allowed
    assert await hit_at(clock, limiter, 60.5) == RateDecision(True, 0, 0.0)
    assert await hit_at(clock, limiter, 62.5) == RateDecision(True, 1, 0.0)  # hits 60.5, 62.5


async def test_peek_does_not_count(clock: ManualClock, limiter: MemoryRateLimiter) -> None:
    assert await limiter.peek("u", PER_MINUTE_3) == RateDecision(True, 3, 0.0)
    assert await limiter.peek("u", PER_MINUTE_3) == RateDecision(True, 3, 0.0)
    assert await hit_at(clock, limiter, 0) == RateDecision(True, 2, 0.0)
    assert await limiter.peek("u", PER_MINUTE_3) == RateDecision(True, 2, 0.0)
    await hit_at(clock, limiter, 5)
    await hit_at(clock, limiter, 10)
    await clock.advance(5)
    assert await limiter.peek("u", PER_MINUTE_3) == RateDecision(False, 0, 45.0)
    assert await limiter.peek("u", PER_MINUTE_3) == RateDecision(False, 0, 45.0)
    await clock.advance(45.5)
    assert await limiter.peek("u", PER_MINUTE_3) == RateDecision(True, 1, 0.0)
    assert limiter.tracked_keys == 1
    assert await limiter.peek("nobody", PER_MINUTE_3) == RateDecision(True, 3, 0.0)
    assert limiter.tracked_keys == 1


async def test_keys_and_rates_are_independent(
    clock: ManualClock, limiter: MemoryRateLimiter
) -> None:
    for t in (0, 1, 2):
        await hit_at(clock, limiter, t, key="a")
    assert not (await limiter.hit("a", PER_MINUTE_3)).allowed
    assert await limiter.hit("b", PER_MINUTE_3) == RateDecision(True, 2, 0.0)
    assert await limiter.hit("a", Rate(1, 1)) == RateDecision(True, 0, 0.0)
    assert await limiter.hit("a", Rate(1, 1)) == RateDecision(False, 0, 1.0)


async def test_idle_keys_are_evicted(clock: ManualClock, limiter: MemoryRateLimiter) -> None:
    """The storage drops expired windows in a pass after each counted hit."""
    for i in range(100):
        await limiter.hit(f"user{i}", PER_MINUTE_3)
    await clock.advance(30)
    await limiter.hit("late", PER_MINUTE_3)
    await limiter.expired()
    assert limiter.tracked_keys == 101
    await clock.advance(30)
    await limiter.peek("anything", PER_MINUTE_3)
    await limiter.hit("later", PER_MINUTE_3)
    await limiter.expired()
    assert limiter.tracked_keys == 2  # "late" and "later"
    await clock.advance(60)
    await limiter.hit("last", PER_MINUTE_3)
    await limiter.expired()
    assert limiter.tracked_keys == 1


async def test_a_busy_key_is_kept_until_its_last_hit_expires(
    clock: ManualClock, limiter: MemoryRateLimiter
) -> None:
    await limiter.hit("u", PER_MINUTE_3)
    await clock.advance(50)
    await limiter.hit("u", PER_MINUTE_3)
    await clock.advance(10)
    await limiter.hit("v", PER_MINUTE_3)
    await limiter.expired()
    assert await limiter.peek("u", PER_MINUTE_3) == RateDecision(True, 2, 0.0)
    assert limiter.tracked_keys == 2
    await clock.advance(50)
    await limiter.hit("v", PER_MINUTE_3)
    await limiter.expired()
    assert await limiter.peek("u", PER_MINUTE_3) == RateDecision(True, 3, 0.0)
    assert limiter.tracked_keys == 1  # "v"


# --- MemoryLockManager --------------------------------------------------------------------


async def test_lease_blocks_until_it_expires(clock: ManualClock) -> None:
    locks: LockManager = MemoryLockManager(clock)
    lease = await locks.try_acquire("chat:1", ttl=10)
    assert lease is not None
    assert (lease.key, lease.expires_at) == ("chat:1", 10.0)
    assert await locks.try_acquire("chat:1", ttl=10) is None
    assert await locks.try_acquire("chat:2", ttl=10) is not None
    await clock.advance(9.5)
    assert await locks.try_acquire("chat:1", ttl=10) is None
    await clock.advance(0.5)
    second = await locks.try_acquire("chat:1", ttl=5)
    assert second is not None
    assert second.token != lease.token
    assert second.expires_at == 15.0


async def test_held_follows_acquire_release_and_expiry(clock: ManualClock) -> None:
    locks: LockManager = MemoryLockManager(clock)
    assert not await locks.held("k")
    lease = await locks.try_acquire("k", ttl=10)
    assert lease is not None and await locks.held("k")
    await locks.release(lease)
    assert not await locks.held("k")
    assert await locks.try_acquire("k", ttl=10) is not None
    await clock.advance(10)
    assert not await locks.held("k")


async def test_only_the_holder_releases(clock: ManualClock) -> None:
    locks = MemoryLockManager(clock)
    old = await locks.try_acquire("k", ttl=1)
    assert old is not None
    await clock.advance(1)
    current = await locks.try_acquire("k", ttl=10)
    assert current is not None

    await locks.release(old)  # expired lease: ignored
    await locks.release(Lease("k", "forged", current.expires_at))
    assert await locks.try_acquire("k", ttl=10) is None

    await locks.release(current)
    assert await locks.try_acquire("k", ttl=10) is not None
    await locks.release(Lease("never-held", "x", 0.0))


async def test_expired_leases_are_evicted(clock: ManualClock) -> None:
    locks = MemoryLockManager(clock)
    for i in range(50):
        await locks.try_acquire(f"k{i}", ttl=5)
    assert locks.tracked_keys == 50
    await clock.advance(5)
    await locks.try_acquire("other", ttl=5)
    assert locks.tracked_keys == 1


@pytest.mark.parametrize("ttl", [0.0, -1.0, float("nan")])
async def test_lease_ttl_must_be_positive(clock: ManualClock, ttl: float) -> None:
    with pytest.raises(ValueError, match="ttl"):
        await MemoryLockManager(clock).try_acquire("k", ttl=ttl)


# --- ConcurrencyGate ----------------------------------------------------------------------


class GateUser:
    """A task that takes a slot, records when it entered and holds the slot until released."""

    def __init__(self, gate: ConcurrencyGate, name: str, entered: list[str]) -> None:
        self.name = name
        self.positions: list[int] = []
        self.done = asyncio.Event()
        self._gate = gate
        self._entered = entered
        self.task = asyncio.create_task(self._run())

    async def _report(self, position: int) -> None:
        self.positions.append(position)

    async def _run(self) -> None:
        async with self._gate.slot(on_position=self._report):
            self._entered.append(self.name)
            await self.done.wait()


async def start_users(
    clock: ManualClock, gate: ConcurrencyGate, names: str, entered: list[str]
) -> dict[str, GateUser]:
    users: dict[str, GateUser] = {}
    for name in names:
        users[name] = GateUser(gate, name, entered)
        await clock.settle()
    return users


async def finish(clock: ManualClock, user: GateUser) -> None:
    user.done.set()
    await clock.settle()
    assert user.task.done()


async def test_gate_enters_at_once_when_free(clock: ManualClock) -> None:
    gate = ConcurrencyGate(2)
    calls: list[int] = []

    async def report(position: int) -> None:
        calls.append(position)

    async with gate.slot(on_position=report):
        assert (gate.in_use, gate.waiting) == (1, 0)
        async with gate.slot(on_position=report):
            assert (gate.in_use, gate.waiting) == (2, 0)
    assert calls == []
    assert (gate.in_use, gate.waiting) == (0, 0)


async def test_gate_queues_fifo_and_reports_positions(clock: ManualClock) -> None:
    gate = ConcurrencyGate(2)
    entered: list[str] = []
    u = await start_users(clock, gate, "abcde", entered)

    assert entered == ["a", "b"]
    assert (gate.in_use, gate.waiting) == (2, 3)
    assert [u[n].positions for n in "abcde"] == [[], [], [1], [2], [3]]

    await finish(clock, u["a"])
    assert entered == ["a", "b", "c"]
    assert [u[n].positions for n in "cde"] == [[1], [2, 1], [3, 2]]
    assert (gate.in_use, gate.waiting) == (2, 2)

    await finish(clock, u["c"])
    assert entered == ["a", "b", "c", "d"]
    assert u["e"].positions == [3, 2, 1]

    await finish(clock, u["b"])
    assert entered == ["a", "b", "c", "d", "e"]
    assert (gate.in_use, gate.waiting) == (2, 0)

    await finish(clock, u["d"])
    await finish(clock, u["e"])
    assert (gate.in_use, gate.waiting) == (0, 0)
    assert [u[n].positions for n in "abcde"] == [[], [], [1], [2, 1], [3, 2, 1]]


async def test_a_leaving_holder_cannot_overtake_the_queue(clock: ManualClock) -> None:
    gate = ConcurrencyGate(1)
    entered: list[str] = []
    go = asyncio.Event()

    async def twice() -> None:
        for _ in range(2):
            async with gate.slot():
                entered.append("a")
                await go.wait()

    a = asyncio.create_task(twice())
    await clock.settle()
    b = await start_users(clock, gate, "b", entered)
    go.set()
    await clock.settle()
    assert entered == ["a", "b"]
    assert gate.waiting == 1
    await finish(clock, b["b"])
    assert entered == ["a", "b", "a"]
    await a
    assert (gate.in_use, gate.waiting) == (0, 0)


async def test_cancelling_a_queued_waiter_updates_the_others(clock: ManualClock) -> None:
    gate = ConcurrencyGate(1)
    entered: list[str] = []
    u = await start_users(clock, gate, "hxyz", entered)
    assert [u[n].positions for n in "xyz"] == [[1], [2], [3]]

    u["y"].task.cancel()
    await clock.settle()
    assert u["y"].task.cancelled()
    assert (gate.in_use, gate.waiting) == (1, 2)
    assert [u[n].positions for n in "xz"] == [[1], [3, 2]]

    await finish(clock, u["h"])
    assert entered == ["h", "x"]
    assert u["z"].positions == [3, 2, 1]
    await finish(clock, u["x"])
    await finish(clock, u["z"])
    assert entered == ["h", "x", "z"]
    assert (gate.in_use, gate.waiting) == (0, 0)


async def test_cancelling_right_after_the_grant_passes_the_slot_on(clock: ManualClock) -> None:
    gate = ConcurrencyGate(1)
    entered: list[str] = []
    holder = gate.slot()
    await holder.__aenter__()
    u = await start_users(clock, gate, "xy", entered)

    await holder.__aexit__(None, None, None)  # grants x ...
    u["x"].task.cancel()  # ... which is cancelled before it resumes
    assert (gate.in_use, gate.waiting) == (1, 1)
    await clock.settle()

    assert u["x"].task.cancelled()
    assert entered == ["y"]
    assert (gate.in_use, gate.waiting) == (1, 0)
    await finish(clock, u["y"])
    assert (gate.in_use, gate.waiting) == (0, 0)


async def test_cancelling_the_last_granted_waiter_frees_the_slot(clock: ManualClock) -> None:
    gate = ConcurrencyGate(1)
    entered: list[str] = []
    holder = gate.slot()
    await holder.__aenter__()
    u = await start_users(clock, gate, "x", entered)
    await holder.__aexit__(None, None, None)
    u["x"].task.cancel()
    await clock.settle()
    assert entered == []
    assert (gate.in_use, gate.waiting) == (0, 0)


async def test_cancelling_inside_the_slot_releases_it(clock: ManualClock) -> None:
    gate = ConcurrencyGate(1)
    entered: list[str] = []
    u = await start_users(clock, gate, "ab", entered)
    u["a"].task.cancel()
    await clock.settle()
    assert entered == ["a", "b"]
    assert (gate.in_use, gate.waiting) == (1, 0)
    await finish(clock, u["b"])
    assert gate.in_use == 0


async def test_a_failing_position_callback_leaves_no_trace(clock: ManualClock) -> None:
    gate = ConcurrencyGate(1)
    entered: list[str] = []
    u = await start_users(clock, gate, "a", entered)

    async def broken(position: int) -> None:
        raise RuntimeError(f"cannot show position {position}")

    async def use() -> None:
        async with gate.slot(on_position=broken):
            pytest.fail("must not enter")

    task = asyncio.create_task(use())
    await clock.settle()
    with pytest.raises(RuntimeError, match="position 1"):
        await task
    assert (gate.in_use, gate.waiting) == (1, 0)
    await finish(clock, u["a"])
    assert gate.in_use == 0


async def test_a_slow_position_callback_does_not_lose_the_grant(clock: ManualClock) -> None:
    gate = ConcurrencyGate(1)
    entered: list[str] = []
    holder = gate.slot()
    await holder.__aenter__()
    positions: list[int] = []

    async def slow(position: int) -> None:
        positions.append(position)
        await clock.sleep(5)

    async def use() -> None:
        async with gate.slot(on_position=slow):
            entered.append("slow")

    task = asyncio.create_task(use())
    await clock.settle()
    await holder.__aexit__(None, None, None)
    await clock.settle()
    assert entered == []
    await clock.advance(5)
    await task
    assert entered == ["slow"]
    assert positions == [1]
    assert (gate.in_use, gate.waiting) == (0, 0)


def test_gate_limit_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        ConcurrencyGate(0)


# --- AccessPolicy -------------------------------------------------------------------------


def allowed(
    policy: AccessPolicy,
    user: str,
    *,
    platform: str = "alpha",
    chat: str = "c1",
    guild: str | None = None,
    private: bool = False,
) -> bool:
    return policy.is_allowed(
        platform=platform, user_id=user, chat_id=chat, space_id=guild, is_private=private
    )


def test_empty_policy_is_open() -> None:
    policy = AccessPolicy.from_lists()
    assert allowed(policy, "1")
    assert allowed(policy, "1", guild="g9", chat="c9")
    assert allowed(policy, "1", private=True, platform="beta")
    assert not policy.is_admin(platform="alpha", user_id="1")


def test_user_list_bare_and_prefixed_ids() -> None:
    policy = AccessPolicy.from_lists(users=["7", "alpha:8"])
    assert allowed(policy, "7", platform="alpha")
    assert allowed(policy, "7", platform="beta")
    assert allowed(policy, "8", platform="alpha")
    assert allowed(policy, "8", platform="ALPHA")
    assert not allowed(policy, "8", platform="beta")
    assert not allowed(policy, "9")
    assert not allowed(policy, "9", private=True)
    assert allowed(policy, "7", private=True)


@pytest.mark.parametrize(
    ("guild", "chat", "private", "expected"),
    [
        ("g1", "c1", False, True),  # listed guild
        ("alpha-only", "c1", False, True),  # prefixed entry on its platform
        ("g2", "c1", False, False),  # unlisted guild
        (None, "c1", False, False),  # a group outside any guild is no listed place
        (None, "dm", True, False),  # nor is a DM: places are restricted, DMs too
    ],
)
def test_guild_rule(guild: str | None, chat: str, private: bool, expected: bool) -> None:
    policy = AccessPolicy.from_lists(spaces=["g1", "alpha:alpha-only"])
    assert allowed(policy, "1", guild=guild, chat=chat, private=private) is expected
    if guild == "alpha-only":
        assert not allowed(policy, "1", platform="beta", guild=guild)


@pytest.mark.parametrize(
    ("platform", "chat", "private", "expected"),
    [
        ("alpha", "-100", False, True),
        ("beta", "-100", False, False),  # prefixed: only on its platform
        ("beta", "-300", False, True),  # bare: any platform
        ("alpha", "-200", False, False),
        ("alpha", "555", True, False),  # a DM is a chat: unlisted, refused (it was answered)
        ("alpha", "-300", True, True),  # a listed DM
    ],
)
def test_chat_rule(platform: str, chat: str, private: bool, expected: bool) -> None:
    policy = AccessPolicy.from_lists(chats=["alpha:-100", "-300"])
    assert allowed(policy, "1", platform=platform, chat=chat, private=private) is expected


def test_people_and_places_must_both_pass() -> None:
    policy = AccessPolicy.from_lists(users=["7"], spaces=["g1"], chats=["c1"])
    assert allowed(policy, "7", guild="g1", chat="c1")
    assert not allowed(policy, "8", guild="g1", chat="c1")
    assert not allowed(policy, "7", guild="g2", chat="c2")
    assert allowed(policy, "7", guild="g1", chat="c2")  # its guild is listed
    assert allowed(policy, "7", guild="g2", chat="c1")  # the channel itself is listed
    assert allowed(policy, "7", chat="dm7", private=True)  # a listed user may DM
    assert not allowed(policy, "8", chat="dm8", private=True)
    assert not allowed(policy, "8", chat="c1", private=True)  # the user list applies to DMs


# The README's "Access" table, checked cell by cell: each row sets some of the three lists, each
# column is a kind of place, each cell says who is answered there.
README = Path(__file__).resolve().parent.parent / "README.md"
ACCESS_HEADER = "| `ALLOWED_USER_IDS` | `ALLOWED_GUILD_IDS` | `ALLOWED_CHAT_IDS` |"


def access_table() -> list[list[str]]:
    lines = README.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(ACCESS_HEADER))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def cell_allows(cell: str, *, user_listed: bool, chat_listed: bool, guild_listed: bool) -> bool:
    """What a cell of the table says about one user in one place."""
    if cell == "admins only":
        return False
    who, _, origin = cell.partition(" in ")
    places = {
        "": True,
        "listed chats": chat_listed,
        "listed channels": chat_listed,
        "listed guilds": guild_listed,
        "listed guilds or channels": guild_listed or chat_listed,
    }
    assert who in ("everyone", "listed users") and origin in places, cell
    return (who == "everyone" or user_listed) and places[origin]


def test_the_access_table_covers_every_combination_once() -> None:
    rows = access_table()
    assert all(len(row) == 6 for row in rows)
    assert sorted(tuple(row[:3]) for row in rows) == sorted(
        itertools.product(("–", "set"), repeat=3)
    )


@pytest.mark.parametrize("row", access_table(), ids=lambda row: "/".join(row[:3]))
def test_access_follows_the_readme_table(row: list[str]) -> None:
    users, guilds, chats, dm, group, in_guild = row

    def listed(flag: str, entry: str) -> list[str]:
        return [entry] if flag == "set" else []

    policy = AccessPolicy.from_lists(
        users=listed(users, "u-in"),
        spaces=listed(guilds, "g-in"),
        chats=listed(chats, "c-in"),
        admins=["boss"],
    )
    for user, chat, guild in itertools.product(
        ("u-in", "u-out"), ("c-in", "c-out"), ("g-in", "g-out")
    ):
        facts = {"user_listed": user == "u-in", "chat_listed": chat == "c-in"}
        places: list[tuple[str, bool, str | None, bool]] = [
            ("DM", True, None, cell_allows(dm, **facts, guild_listed=False)),
            ("group", False, None, cell_allows(group, **facts, guild_listed=False)),
            ("guild", False, guild, cell_allows(in_guild, **facts, guild_listed=guild == "g-in")),
        ]
        for kind, private, guild_id, expected in places:
            got = allowed(policy, user, chat=chat, guild=guild_id, private=private)
            assert got is expected, (kind, user, chat, guild_id)
            assert allowed(policy, "boss", chat=chat, guild=guild_id, private=private)


def test_admins_are_always_allowed() -> None:
    policy = AccessPolicy.from_lists(
        users=["7"], spaces=["g1"], chats=["c1"], admins=["99", "beta:42"]
    )
    assert policy.is_admin(platform="alpha", user_id="99")
    assert policy.is_admin(platform="beta", user_id="42")
    assert not policy.is_admin(platform="alpha", user_id="42")
    assert not policy.is_admin(platform="alpha", user_id="7")
    assert allowed(policy, "99", guild="g2", chat="c2")
    assert allowed(policy, "42", platform="beta", guild="g2", chat="c2")
    assert not allowed(policy, "42", platform="alpha", guild="g2", chat="c2")


def test_from_lists_normalizes_entries() -> None:
    policy = AccessPolicy.from_lists(users=[" Alpha:7 ", "", "  ", "alpha:", " 8 ", ":9"])
    assert policy.allowed_users == frozenset({"alpha:7", "8", "9"})
    assert allowed(policy, "7", platform="alpha")
    assert allowed(policy, "9", platform="beta")
