"""Access control and limits: who may use the bridge, how often, and how many requests at once.

Rate limits and locks are defined as protocols, so a Redis implementation can replace the
in-memory ones here when several processes share the limits. Rate limits are the `limits`
library's moving window, on its memory or Redis storage. The concurrency gate is per process.
"""

from __future__ import annotations

import asyncio
import contextvars
import heapq
import math
import re
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Protocol

import limits.aio.storage.memory
from limits import RateLimitItem, RateLimitItemPerSecond
from limits.aio.storage import MemoryStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter

from core.clock import Clock

# --- Rates --------------------------------------------------------------------------------

_UNIT_SECONDS: dict[str, float] = {
    "s": 1.0,
    "sec": 1.0,
    "secs": 1.0,
    "second": 1.0,
    "seconds": 1.0,
    "m": 60.0,
    "min": 60.0,
    "mins": 60.0,
    "minute": 60.0,
    "minutes": 60.0,
    "h": 3600.0,
    "hr": 3600.0,
    "hour": 3600.0,
    "hours": 3600.0,
    "d": 86400.0,
    "day": 86400.0,
    "days": 86400.0,
}
_NAMED_PERIODS: dict[float, str] = {1.0: "second", 60.0: "minute", 3600.0: "hour", 86400.0: "day"}
_PERIOD_RE = re.compile(r"(?P<amount>\d+(?:\.\d+)?)?\s*(?P<unit>[a-z]+)")
_RATE_HINT = "expected COUNT/PERIOD such as 10/minute, 100/hour or 3/30s"


@dataclass(frozen=True, slots=True)
class Rate:
    """At most `count` hits in any window of `period` seconds."""

    count: int
    period: float

    def __post_init__(self) -> None:
        if isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 1:
            raise ValueError(f"rate count must be a positive integer, got {self.count!r}")
        period = float(self.period)
        if not math.isfinite(period) or period <= 0:
            raise ValueError(f"rate period must be a positive number of seconds, got {period!r}")
        object.__setattr__(self, "period", period)

    @classmethod
    def parse(cls, text: str) -> Rate:
        """Parse ``"10/minute"``, ``"5/second"``, ``"100/hour"``, ``"20/day"`` or ``"3/30s"``.

        Units: s/sec/second, m/min/minute, h/hr/hour, d/day (plurals too), optionally preceded by
        an amount (``30s``, ``5 minutes``, ``1.5h``). Raises ValueError on anything else.
        """
        count_text, slash, period_text = text.strip().partition("/")
        count_text = count_text.strip()
        if not slash or not count_text.isdigit() or not count_text.isascii():
            raise ValueError(f"invalid rate {text!r}: {_RATE_HINT}")
        return cls(int(count_text), _parse_period(text, period_text))

    def __str__(self) -> str:
        name = _NAMED_PERIODS.get(self.period)
        if name is not None:
            return f"{self.count}/{name}"
        return f"{self.count}/{_format_seconds(self.period)}s"


def _parse_period(text: str, period_text: str) -> float:
    match = _PERIOD_RE.fullmatch(period_text.strip().lower())
    unit = _UNIT_SECONDS.get(match["unit"]) if match else None
    if match is None or unit is None:
        raise ValueError(f"invalid rate {text!r}: {_RATE_HINT}")
    amount = float(match["amount"]) if match["amount"] else 1.0
    if amount <= 0:
        raise ValueError(f"invalid rate {text!r}: the period must be longer than zero")
    return amount * unit


def _format_seconds(seconds: float) -> str:
    return str(int(seconds)) if seconds.is_integer() else repr(seconds)


@dataclass(frozen=True, slots=True)
class RateDecision:
    """The outcome of a rate check.

    remaining: hits still allowed in the current window (after this hit, when it was counted).
    retry_after: seconds until the next hit would be allowed (0 when allowed).
    """

    allowed: bool
    remaining: int
    retry_after: float


class RateLimiter(Protocol):
    """Sliding-window rate limits per key; hits are counted per (key, rate) pair."""

    async def hit(self, key: str, rate: Rate) -> RateDecision:
        """Check the limit and count the hit, but only when it is allowed."""
        ...

    async def peek(self, key: str, rate: Rate) -> RateDecision:
        """Check the limit without counting anything."""
        ...


# The `limits` storages read the time with `time.time()` in their own modules. So that a limiter
# follows the `Clock` it was given (tests drive time, and every process sharing a Redis uses wall
# time), each storage module's `time` is replaced by `_LIBRARY_TIME`, whose `time()` returns the
# clock bound for the current call (a contextvar: tasks a call starts, such as the memory
# storage's expiry pass, inherit it) and the real time when none is bound.
_TIME_SOURCE: contextvars.ContextVar[Callable[[], float] | None] = contextvars.ContextVar(
    "limits_time_source", default=None
)


class _LibraryTime:
    """Stands in for the `time` module inside a `limits` storage module."""

    @staticmethod
    def time() -> float:
        source = _TIME_SOURCE.get()
        return time.time() if source is None else source()

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


_LIBRARY_TIME = _LibraryTime()


def follow_clock(module: ModuleType) -> None:
    """Make a `limits` storage module read the time from the clock bound by `LimitsRateLimiter`."""
    current = getattr(module, "time", None)
    if current is not time and current is not _LIBRARY_TIME:
        raise RuntimeError(f"{module.__name__} does not read the time from the time module")
    setattr(module, "time", _LIBRARY_TIME)  # noqa: B010


follow_clock(limits.aio.storage.memory)


def rate_item(rate: Rate, namespace: str = "rate") -> RateLimitItem:
    """`rate` as a `limits` item. Its windows are whole seconds: a fractional period is rounded
    up (``2/0.5s`` limits like ``2/1s``)."""
    return RateLimitItemPerSecond(rate.count, max(1, math.ceil(rate.period)), namespace=namespace)


class LimitsRateLimiter:
    """`RateLimiter` on a `limits` storage: its moving window (an exact log of hit times).

    With 3/minute, hits at t=0, 1, 2 are allowed, a hit at t=3 is refused with retry_after=57
    and a hit just after t=60 is allowed again (a hit counts for `period` seconds, including the
    instant it expires). `time_source` is the clock the storage reads (see `follow_clock`).
    """

    def __init__(self, storage: Storage, time_source: Callable[[], float]) -> None:
        self._storage = storage
        self._strategy = MovingWindowRateLimiter(storage)
        self._time_source = time_source

    async def hit(self, key: str, rate: Rate) -> RateDecision:
        """Check the limit and count the hit when it is allowed."""
        item = rate_item(rate)
        token = _TIME_SOURCE.set(self._time_source)
        try:
            allowed = await self._strategy.hit(item, key)
            return await self._decision(item, key, allowed=allowed)
        finally:
            _TIME_SOURCE.reset(token)

    async def peek(self, key: str, rate: Rate) -> RateDecision:
        """Check the limit without counting anything."""
        item = rate_item(rate)
        token = _TIME_SOURCE.set(self._time_source)
        try:
            return await self._decision(item, key, allowed=None)
        finally:
            _TIME_SOURCE.reset(token)

    async def _decision(
        self, item: RateLimitItem, key: str, *, allowed: bool | None
    ) -> RateDecision:
        stats = await self._strategy.get_window_stats(item, key)
        remaining = max(0, stats.remaining)
        if allowed is None:
            allowed = remaining > 0
        if allowed:
            return RateDecision(allowed=True, remaining=remaining, retry_after=0.0)
        # Refused although the window shows room: the instant a hit expires (`limits` still
        # counts it then, and no longer a moment later).
        retry_after = 0.0 if stats.remaining > 0 else stats.reset_time - self._time_source()
        return RateDecision(allowed=False, remaining=0, retry_after=max(0.0, retry_after))


class MemoryRateLimiter(LimitsRateLimiter):
    """`RateLimiter` in process memory (`limits`' memory storage) on the clock's monotonic time.

    The storage drops the windows whose every hit has expired in a pass it starts after each
    counted hit, so memory holds only the hits of the last period.
    """

    def __init__(self, clock: Clock) -> None:
        self._memory = MemoryStorage()
        super().__init__(self._memory, clock.now)

    @property
    def tracked_keys(self) -> int:
        """How many (key, rate) windows are held in memory."""
        return len(self._memory.events)

    async def expired(self) -> None:
        """Wait for the expiry pass started by the last counted hit (if it is still running)."""
        timer = self._memory.timer
        if timer is not None:
            await timer


# --- Locks --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Lease:
    """A held lock: `token` proves ownership; `expires_at` is on the clock's monotonic scale."""

    key: str
    token: str
    expires_at: float


class LockManager(Protocol):
    """Named locks that expire on their own, so a crashed holder cannot block a key forever."""

    async def try_acquire(self, key: str, ttl: float) -> Lease | None:
        """Take the lock for `ttl` seconds; None when another lease holds it and has not expired."""
        ...

    async def release(self, lease: Lease) -> None:
        """Free the lock, but only if `lease` still holds it (a stale lease does nothing)."""
        ...

    async def held(self, key: str) -> bool:
        """Whether an unexpired lease holds `key` now."""
        ...


class MemoryLockManager:
    """`LockManager` in process memory; expired leases are dropped as time passes."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._leases: dict[str, Lease] = {}
        self._expiries: list[tuple[float, str]] = []

    @property
    def tracked_keys(self) -> int:
        """How many leases are held in memory (expired ones go on the next call)."""
        return len(self._leases)

    async def try_acquire(self, key: str, ttl: float) -> Lease | None:
        """Take the lock for `ttl` seconds, or return None while an unexpired lease holds it."""
        if not math.isfinite(ttl) or ttl <= 0:
            raise ValueError(f"lock ttl must be a positive number of seconds, got {ttl!r}")
        now = self._clock.now()
        self._evict(now)
        if key in self._leases:
            return None
        lease = Lease(key=key, token=secrets.token_hex(16), expires_at=now + ttl)
        self._leases[key] = lease
        heapq.heappush(self._expiries, (lease.expires_at, key))
        return lease

    async def release(self, lease: Lease) -> None:
        """Free the lock when `lease` is the current holder; otherwise do nothing."""
        current = self._leases.get(lease.key)
        if current is not None and current.token == lease.token:
            del self._leases[lease.key]

    async def held(self, key: str) -> bool:
        """Whether an unexpired lease holds `key` now."""
        self._evict(self._clock.now())
        return key in self._leases

    def _evict(self, now: float) -> None:
        while self._expiries and self._expiries[0][0] <= now:
            _, key = heapq.heappop(self._expiries)
            current = self._leases.get(key)
            if current is not None and current.expires_at <= now:
                del self._leases[key]


class LimitsHealth(Protocol):
    """Whether the shared limits backend is in use; `degraded` while per-process ones stand in."""

    @property
    def degraded(self) -> bool: ...


# --- Concurrency --------------------------------------------------------------------------

PositionCallback = Callable[[int], Awaitable[None]]


@dataclass(eq=False, slots=True)
class _Waiter:
    """One task queued for a slot; `position` 1 means next in line."""

    position: int
    granted: bool = False
    changed: asyncio.Event = field(default_factory=asyncio.Event)


class Gate(Protocol):
    """A cap on concurrent upstream requests with a fair queue (`ConcurrencyGate` in one
    process, `core.shared.gate.SharedGate` across replicas)."""

    @property
    def limit(self) -> int: ...

    @property
    def in_use(self) -> int: ...

    @property
    def waiting(self) -> int: ...

    def slot(
        self, *, on_position: PositionCallback | None = None
    ) -> AbstractAsyncContextManager[None]: ...


class ConcurrencyGate:
    """A cap on concurrent upstream requests with a fair (FIFO) queue.

    A released slot is handed straight to the head of the queue, so a newcomer never overtakes
    a waiter. Cancelling a waiter (queued, or granted but not yet resumed) never leaks a slot.
    """

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"concurrency limit must be at least 1, got {limit}")
        self._limit = limit
        self._in_use = 0
        self._queue: deque[_Waiter] = deque()

    @property
    def limit(self) -> int:
        """The most slots held at once."""
        return self._limit

    @property
    def in_use(self) -> int:
        """Slots currently held (including ones granted to a waiter that has not resumed yet)."""
        return self._in_use

    @property
    def waiting(self) -> int:
        """Tasks queued for a slot."""
        return len(self._queue)

    def slot(
        self, *, on_position: PositionCallback | None = None
    ) -> AbstractAsyncContextManager[None]:
        """Hold one slot for the body of an ``async with``.

        Enters at once when a slot is free (`on_position` is not called). Otherwise waits in FIFO
        order, awaiting ``on_position(n)`` when queued and whenever its position changed since the
        last report (1 = next; changes during a slow callback are coalesced into the latest).
        """
        return self._slot(on_position)

    @asynccontextmanager
    async def _slot(self, on_position: PositionCallback | None) -> AsyncIterator[None]:
        await self._acquire(on_position)
        try:
            yield
        finally:
            self._release()

    async def _acquire(self, on_position: PositionCallback | None) -> None:
        if self._in_use < self._limit and not self._queue:
            self._in_use += 1
            return
        waiter = _Waiter(position=len(self._queue) + 1)
        self._queue.append(waiter)
        try:
            await self._wait_for_grant(waiter, on_position)
        except BaseException:
            self._abandon(waiter)
            raise

    @staticmethod
    async def _wait_for_grant(waiter: _Waiter, on_position: PositionCallback | None) -> None:
        reported = 0
        while not waiter.granted:
            waiter.changed.clear()
            if on_position is not None and waiter.position != reported:
                reported = waiter.position
                await on_position(reported)
            else:
                await waiter.changed.wait()

    def _abandon(self, waiter: _Waiter) -> None:
        """Undo a wait that ended in an exception: pass on a granted slot or leave the queue."""
        if waiter.granted:
            self._release()
        else:
            self._queue.remove(waiter)
            self._renumber()

    def _release(self) -> None:
        if not self._queue:
            self._in_use -= 1
            return
        head = self._queue.popleft()
        head.granted = True
        head.changed.set()
        self._renumber()

    def _renumber(self) -> None:
        for position, waiter in enumerate(self._queue, start=1):
            if waiter.position != position:
                waiter.position = position
                waiter.changed.set()


# --- Access -------------------------------------------------------------------------------


def _normalize_ids(entries: Iterable[str]) -> frozenset[str]:
    """Strip entries, drop blanks and lower-case the platform of ``platform:id`` entries."""
    result: set[str] = set()
    for entry in entries:
        platform, colon, ident = (part.strip() for part in entry.partition(":"))
        if not colon:
            platform, ident = "", platform
        if ident:
            result.add(f"{platform.lower()}:{ident}" if platform else ident)
    return frozenset(result)


def _matches(entries: frozenset[str], platform: str, ident: str) -> bool:
    return ident in entries or f"{platform.lower()}:{ident}" in entries


@dataclass(frozen=True)
class AccessPolicy:
    """Who may talk to the bridge, and where. Every list empty: everyone, everywhere.

    Entries are a bare id (``"12345"``, that id on any platform) or ``"platform:id"``.
    The lists restrict two things, each on its own:

    - people: when `allowed_users` is non-empty, only the users in it are answered, everywhere;
    - places: when `allowed_spaces` or `allowed_chats` is non-empty, only listed places are
      answered. A chat in a space is listed when its space or the chat itself is; any other
      group chat when the chat is. A private chat (DM) is a place too: it is listed when its chat
      id is in `allowed_chats`, or when the user is named in `allowed_users` (naming a person lets
      them talk to the bot in private).

    Admins are answered everywhere, whatever the lists say. The README's "Access" table spells out
    every combination; `test_limits.py` checks each row of it.
    """

    allowed_users: frozenset[str] = frozenset()
    allowed_spaces: frozenset[str] = frozenset()
    allowed_chats: frozenset[str] = frozenset()
    admins: frozenset[str] = frozenset()

    @classmethod
    def from_lists(
        cls,
        users: Iterable[str] = (),
        spaces: Iterable[str] = (),
        chats: Iterable[str] = (),
        admins: Iterable[str] = (),
    ) -> AccessPolicy:
        """Build a policy from configured id lists (blank entries are ignored)."""
        return cls(
            allowed_users=_normalize_ids(users),
            allowed_spaces=_normalize_ids(spaces),
            allowed_chats=_normalize_ids(chats),
            admins=_normalize_ids(admins),
        )

    @property
    def restricts_places(self) -> bool:
        """Whether only listed places are answered."""
        return bool(self.allowed_spaces or self.allowed_chats)

    def is_admin(self, *, platform: str, user_id: str) -> bool:
        """Whether the user is listed as an admin."""
        return _matches(self.admins, platform, user_id)

    def is_allowed(
        self,
        *,
        platform: str,
        user_id: str,
        chat_id: str,
        space_id: str | None,
        is_private: bool,
    ) -> bool:
        """Whether a message from this user in this chat may be answered."""
        if self.is_admin(platform=platform, user_id=user_id):
            return True
        if self.allowed_users and not _matches(self.allowed_users, platform, user_id):
            return False
        if not self.restricts_places:
            return True
        if _matches(self.allowed_chats, platform, chat_id):
            return True
        if is_private:
            return bool(self.allowed_users)  # the user is listed (checked above)
        return space_id is not None and _matches(self.allowed_spaces, platform, space_id)
