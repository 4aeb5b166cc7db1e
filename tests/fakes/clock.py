"""A controllable clock for tests: time moves only when the test calls `advance`."""

from __future__ import annotations

import asyncio
import heapq
import itertools


class ManualClock:
    """Implements `core.clock.Clock`; `sleep` waits until `advance` moves time past its deadline."""

    def __init__(self, start: float = 1000.0, wall_start: float = 1_800_000_000.0) -> None:
        self._now = start
        self._wall_offset = wall_start - start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self._now

    def wall(self) -> float:
        return self._now + self._wall_offset

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._seq), fut))
        await fut

    @property
    def pending_sleepers(self) -> int:
        return sum(1 for _, _, f in self._sleepers if not f.done())

    async def settle(self, rounds: int = 100) -> None:
        """Let every task that can run without time passing run."""
        for _ in range(rounds):
            await asyncio.sleep(0)

    async def advance(self, seconds: float) -> None:
        """Move time forward by `seconds`, waking sleepers in deadline order and letting them run.

        Work scheduled while advancing (a sleeper that sleeps again) is woken at its own deadline.
        """
        target = self._now + seconds
        await self.settle()
        while True:
            next_deadline = self._next_deadline()
            if next_deadline is None or next_deadline > target:
                break
            self._now = max(self._now, next_deadline)
            self._wake_due()
            await self.settle()
        self._now = target
        await self.settle()

    def _next_deadline(self) -> float | None:
        while self._sleepers and self._sleepers[0][2].done():
            heapq.heappop(self._sleepers)
        return self._sleepers[0][0] if self._sleepers else None

    def _wake_due(self) -> None:
        while self._sleepers and self._sleepers[0][0] <= self._now:
            _, _, fut = heapq.heappop(self._sleepers)
            if not fut.done():
                fut.set_result(None)


class InstantClock:
    """Implements `core.clock.Clock`; `sleep` returns at once, moves time and records the wait."""

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self._now

    def wall(self) -> float:
        return 1_800_000_000.0 + self._now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self._now += max(0.0, seconds)
        await asyncio.sleep(0)

    def advance(self, seconds: float) -> None:
        """Move time on (e.g. to let a conversation go idle)."""
        self._now += seconds


class ScaledClock:
    """Implements `core.clock.Clock` on real time running `factor` times faster.

    For end-to-end tests through real platform libraries: give the same clock to the bridge and to
    the emulated platform, and a 3-second edit interval passes in 3/factor real seconds while every
    rule (and every rate limit) still holds in clock time.
    """

    def __init__(self, factor: float = 10.0) -> None:
        import time

        self.factor = factor
        self._origin = time.monotonic()
        self._monotonic = time.monotonic
        self._offset = 0.0

    def now(self) -> float:
        return 1000.0 + self._offset + (self._monotonic() - self._origin) * self.factor

    def advance(self, seconds: float) -> None:
        """Jump ahead (e.g. to let a conversation go idle or a rate window pass)."""
        self._offset += seconds

    def wall(self) -> float:
        return 1_800_000_000.0 + self.now()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds) / self.factor)
