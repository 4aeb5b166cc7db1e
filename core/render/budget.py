"""Write budgets: how often a bot may write to one chat, shared by every answer in that chat.

A budget is a token bucket on a `Clock`: `burst` writes back to back, then one per `interval`,
counted from when the previous write *completed* (`done`): a platform counts from when it received
a write, which lies between its start and its completion, so counting from completion keeps
writes at least `interval` apart at the platform however much each call's latency varies.
Waiters are served first come, first served, so answers streaming in one chat take turns. When the
platform still says "retry after N", `penalize` blocks the whole chat for N seconds. Budgets of
different chats are independent: one chat's wait never slows another.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque

from core.clock import Clock


class RateBudget:
    """The write budget of one chat."""

    def __init__(self, clock: Clock, interval: float, burst: int = 1) -> None:
        self._clock = clock
        self.interval = interval
        self.burst = max(1, burst)
        self._tokens = float(self.burst)
        self._updated = clock.now()
        self._blocked_until = 0.0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self.last_used = clock.now()

    def _refill(self, now: float) -> None:
        if self.interval <= 0:
            self._tokens = float(self.burst)
        else:
            elapsed = max(0.0, now - self._updated)
            self._tokens = min(float(self.burst), self._tokens + elapsed / self.interval)
        self._updated = now

    def _wait_time(self) -> float:
        now = self._clock.now()
        self._refill(now)
        wait = max(0.0, self._blocked_until - now)
        if self._tokens < 1.0:
            wait = max(wait, (1.0 - self._tokens) * self.interval)
        return wait

    async def acquire(self) -> None:
        """Wait for this caller's turn and take one write."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            if len(self._waiters) > 1:
                await fut  # the head of the queue wakes us when it is done
            while (wait := self._wait_time()) > 0:
                await self._clock.sleep(wait)
            self._tokens -= 1.0
            self.last_used = self._clock.now()
        finally:
            self._hand_over(fut)

    def _hand_over(self, fut: asyncio.Future[None]) -> None:
        if self._waiters and self._waiters[0] is fut:
            self._waiters.popleft()
            if self._waiters:
                nxt = self._waiters[0]
                if not nxt.done():
                    nxt.set_result(None)
        else:
            # Cancelled while queued behind someone else.
            with contextlib.suppress(ValueError):
                self._waiters.remove(fut)

    def done(self) -> None:
        """A write taken with `acquire` completed: refill counts from now."""
        self._updated = max(self._updated, self._clock.now())

    def penalize(self, retry_after: float) -> None:
        """The platform refused a write: no write in this chat for `retry_after` seconds."""
        now = self._clock.now()
        self._blocked_until = max(self._blocked_until, now + retry_after)
        self._refill(now)
        self._tokens = 0.0

    @property
    def idle(self) -> bool:
        return not self._waiters


class BudgetRegistry:
    """All chats' budgets of one process (one registry per platform connection)."""

    def __init__(self, clock: Clock, *, max_idle: float = 600.0) -> None:
        self._clock = clock
        self._budgets: dict[str, RateBudget] = {}
        self._max_idle = max_idle

    def get(self, key: str, interval: float, burst: int = 1) -> RateBudget:
        budget = self._budgets.get(key)
        if budget is None:
            if len(self._budgets) > 1024:
                self._evict()
            budget = self._budgets[key] = RateBudget(self._clock, interval, burst)
        return budget

    def _evict(self) -> None:
        horizon = self._clock.now() - self._max_idle
        for key in [k for k, b in self._budgets.items() if b.idle and b.last_used < horizon]:
            del self._budgets[key]
