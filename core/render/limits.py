"""Platform write limits as data, and the state that tracks each one on a `Clock`.

A surface declares, for each kind of write (see `core.render.surface.WriteLimits`), the limits that
write draws from: a room's own, a kind's own, a bot-wide one. Two shapes cover what platforms do:

`Bucket`  a token bucket: `burst` writes back to back, then one per `interval` seconds. Refill is
          counted from when a write *completed*: a platform counts from when it received a write,
          which lies between its start and its completion, so counting from completion keeps writes
          far enough apart at the platform however much each call's latency varies.
`Window`  at most `count` writes in any `seconds`, counted from completions too (a rolling window,
          which is never looser than a platform's fixed window of the same size).

Writes differ in urgency (see `core.render.scheduler`). Urgent ones may use every write a limit
has; a routine one (an interim edit, a status line) only its even share: a bucket must be full, so
the burst stays in reserve, and a window must keep back the writes its answers still owe (at most
half of it, at least a fifth) and not be used closer than `seconds / count` after its last write.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Bucket:
    """`burst` writes back to back, then one per `interval` seconds (key: who shares it)."""

    key: str
    burst: int
    interval: float


@dataclass(frozen=True, slots=True)
class Window:
    """At most `count` writes in any `seconds` (key: who shares it)."""

    key: str
    count: int
    seconds: float


Limit = Bucket | Window


@dataclass(frozen=True, slots=True)
class Verdict:
    """What limits shared with other processes say of one write: it may start (`ticket` names
    it there; None when nothing was counted there), or `wait` seconds until `limit` (the one
    holding it back) may allow it."""

    ticket: str | None
    wait: float = 0.0
    limit: Limit | None = None


class LimitState:
    """How much of one limit is used, and when the next write may start."""

    def __init__(self, limit: Limit, now: float) -> None:
        self.limit = limit
        self.last_used = now
        self._blocked_until = 0.0
        self._in_flight = 0
        self._tokens = float(limit.burst) if isinstance(limit, Bucket) else 0.0  # Bucket
        self._updated = now  # Bucket: refill counted from here
        self._done: deque[float] = deque()  # Window: completion times inside the window
        self._taken: deque[float] = deque()  # when the writes in flight started
        self._answered: deque[float] = deque()  # when the platform answered them (`observe`)

    def wait(self, now: float, *, routine: bool = False, reserve: int = 0) -> float:
        """Seconds until a write may start (0: now; inf: not until something changes).

        `routine` writes use only the even share and leave `reserve` writes of a window (at
        least a fifth of it) to urgent ones.
        """
        blocked = max(0.0, self._blocked_until - now)
        limit = self.limit
        if isinstance(limit, Bucket):
            if limit.interval <= 0:
                return blocked
            self._refill(now)
            need = float(max(1, limit.burst)) if routine else 1.0
            if self._tokens >= need - 1e-9:
                return blocked
            if self._in_flight:
                return max(blocked, limit.interval)  # refill resumes when the write completes
            return max(blocked, (need - self._tokens) * limit.interval)
        self._expire(now)
        allowed = limit.count
        if routine:
            # Kept back for urgent writes: the writes the room's answers still owe (their first
            # texts and final writes), at most half the window, at least a fifth of it.
            owed = min(reserve, limit.count // 2)
            allowed -= max(owed, math.ceil(limit.count / 5))
            if allowed <= 0:
                return math.inf
        wait = blocked
        leaving = len(self._done) + self._in_flight - allowed + 1  # must leave the window first
        if leaving > 0:
            if leaving <= len(self._done):
                wait = max(wait, self._done[leaving - 1] + limit.seconds - now)
            else:
                wait = max(wait, limit.seconds)  # writes in flight complete first
        if routine and self._done:
            wait = max(wait, self._done[-1] + limit.seconds / limit.count - now)
        return max(0.0, wait)

    def take(self, now: float) -> None:
        """A write starts (only when `wait` said 0)."""
        if isinstance(self.limit, Bucket):
            self._refill(now)
            self._tokens -= 1.0
        self._in_flight += 1
        self._taken.append(now)
        self.last_used = now

    def untake(self) -> None:
        """The write taken with `take` did not start after all (another replica's writes
        fill the limit): give back what `take` took."""
        if isinstance(self.limit, Bucket):
            self._tokens += 1.0
        self._in_flight = max(0, self._in_flight - 1)
        if self._taken:
            self._taken.pop()

    def hold(self, until: float) -> None:
        """No write before `until` (writes this process does not count fill the limit)."""
        self._blocked_until = max(self._blocked_until, until)

    def release(self, now: float) -> None:
        """The write taken with `take` completed (or failed after reaching the platform).

        It counts from when the platform answered it where that was observed: a library may
        hold a call back after the answer (one sleeps out an exhausted bucket before it
        returns), and that wait is no write."""
        self._in_flight = max(0, self._in_flight - 1)
        taken = self._taken.popleft() if self._taken else now
        while self._answered and self._answered[0] < taken:
            self._answered.popleft()  # an answer to an earlier call
        if self._answered:
            now = min(now, self._answered.popleft())
        if isinstance(self.limit, Window):
            self._done.append(now)
        elif self._in_flight == 0:
            self._updated = max(self._updated, now)  # refill counts from completion
        self.last_used = now

    def penalize(self, now: float, retry_after: float) -> None:
        """The platform said "retry after": no write until then, and nothing saved up."""
        self._blocked_until = max(self._blocked_until, now + retry_after)
        limit = self.limit
        if isinstance(limit, Bucket) and limit.interval > 0:
            self._refill(now)  # one write (and no more) saved up when the wait is over
            self._tokens = min(self._tokens, 1.0 - retry_after / limit.interval)

    def observe(self, now: float, remaining: int, reset_after: float) -> None:
        """The platform reported its own count: `remaining` writes left for `reset_after` s.
        None left holds the limit back until then (e.g. writes we did not count, made by
        another process); otherwise our own count, never looser than the platform's, stands."""
        if remaining <= 0:
            self._blocked_until = max(self._blocked_until, now + reset_after)
        if self._in_flight:
            self._answered.append(now)

    @property
    def idle(self) -> bool:
        return self._in_flight == 0

    def _refill(self, now: float) -> None:
        limit = self.limit
        assert isinstance(limit, Bucket)
        if self._in_flight == 0 and now > self._updated and limit.interval > 0:
            gained = (now - self._updated) / limit.interval
            self._tokens = min(float(limit.burst), self._tokens + gained)
            self._updated = now

    def _expire(self, now: float) -> None:
        assert isinstance(self.limit, Window)
        horizon = now - self.limit.seconds
        while self._done and self._done[0] <= horizon:
            self._done.popleft()
