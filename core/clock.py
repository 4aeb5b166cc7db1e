"""Time as a dependency: everything that waits or measures time takes a `Clock`.

Production code uses `SystemClock`; tests use `tests.fakes.clock.ManualClock`, which only moves
when the test advances it, so timing behaviour is asserted exactly and no test sleeps.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Protocol


class Clock(Protocol):
    """A monotonic clock that can also wait."""

    def now(self) -> float:
        """Seconds on a monotonic scale (only differences are meaningful)."""
        ...

    def wall(self) -> float:
        """Seconds since the epoch, for timestamps that are stored."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait `seconds` (returns at once for zero or less)."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


async def wait_for_event(clock: Clock, event: asyncio.Event, seconds: float) -> bool:
    """Wait until `event` is set or `seconds` pass on `clock` (inf: no limit); True if set."""
    if event.is_set():
        return True
    waiters: set[asyncio.Future[object]] = {asyncio.ensure_future(event.wait())}
    if math.isfinite(seconds):
        waiters.add(asyncio.ensure_future(clock.sleep(seconds)))
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
    return event.is_set()
