"""Time as a dependency: everything that waits or measures time takes a `Clock`.

Production code uses `SystemClock`; tests use `tests.fakes.clock.ManualClock`, which only moves
when the test advances it, so timing behaviour is asserted exactly and no test sleeps.
"""

from __future__ import annotations

import asyncio
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
