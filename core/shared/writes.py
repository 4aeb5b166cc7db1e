"""The platforms' write limits shared by every replica: one ledger per limit key in Redis.

Each replica's scheduler (core.render.scheduler) still decides locally which write goes next and
when its own count allows it; before a write starts, the ledger is asked too, in one atomic script
over every limit the write draws from, so writes made by other replicas in the same room (or on
the same bot-wide limit) count. The ledger follows the same rules as `core.render.limits`:

- `Window`: a sorted set of writes by completion time. A write in flight counts from when it
  started until it completes (or for `FLIGHT` seconds if its replica never says: it died).
- `Bucket`: the time at which the bucket is full again (GCRA); a write takes one interval of it,
  and its time in flight is added when it completes, since refill counts from completion.
- Routine writes use only the even share (a full bucket; a window's reserve kept back; paced).
- A "retry after" from the platform holds the limit for every replica, with one write saved up.

While Redis is down every write is allowed here, and the local count alone stands.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
from typing import Any

from core.limits_redis import RedisDown
from core.render.limits import Bucket, Limit, Verdict
from core.shared.bus import Membership

log = logging.getLogger(__name__)

FLIGHT = 15.0  # seconds an unreleased write counts as in flight (its replica may have died)
POLL = 0.05  # seconds to wait when a write of another replica is in flight on a full window

# KEYS: per limit its ledger and its hold. ARGV: now, routine, reserve, ticket, flight, poll,
# then per limit: kind ('b' bucket, 'w' window), burst|count, interval|seconds.
_TAKE = """
local now, routine, reserve = tonumber(ARGV[1]), ARGV[2] == '1', tonumber(ARGV[3])
local ticket, flight, poll = ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6])
local n = #KEYS / 2
local worst, worst_i = 0, 0
for i = 1, n do
  local key, hold = KEYS[2 * i - 1], KEYS[2 * i]
  local kind, a, b = ARGV[4 + 3 * i], tonumber(ARGV[5 + 3 * i]), tonumber(ARGV[6 + 3 * i])
  local wait = math.max(0, tonumber(redis.call('GET', hold) or '0') - now)
  if kind == 'b' then
    if b > 0 then
      local tat = math.max(now, tonumber(redis.call('HGET', key, 'tat') or '0'))
      local need = 1
      if routine then need = a end
      wait = math.max(wait, tat - now - (a - need) * b)
    end
  else
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now - b)
    local allowed = a
    if routine then
      allowed = a - math.max(math.min(reserve, math.floor(a / 2)), math.ceil(a / 5))
    end
    if allowed <= 0 then
      wait = math.max(wait, b)
    else
      local leaving = redis.call('ZCARD', key) - allowed + 1
      if leaving > 0 then
        local entry = redis.call('ZRANGE', key, leaving - 1, leaving - 1, 'WITHSCORES')
        local done = tonumber(entry[2])
        if done > now then
          wait = math.max(wait, poll)
        else
          wait = math.max(wait, done + b - now)
        end
      end
      if routine then
        local last = redis.call('ZREVRANGEBYSCORE', key, now, '-inf', 'WITHSCORES', 'LIMIT', 0, 1)
        if last[2] then wait = math.max(wait, tonumber(last[2]) + b / a - now) end
      end
    end
  end
  if wait > worst then worst, worst_i = wait, i end
end
if worst > 0 then return {0, tostring(worst), worst_i} end
for i = 1, n do
  local key = KEYS[2 * i - 1]
  local kind, a, b = ARGV[4 + 3 * i], tonumber(ARGV[5 + 3 * i]), tonumber(ARGV[6 + 3 * i])
  if kind == 'b' then
    if b > 0 then
      local tat = math.max(now, tonumber(redis.call('HGET', key, 'tat') or '0'))
      redis.call('HSET', key, 'tat', tostring(tat + b))
      redis.call('PEXPIRE', key, math.ceil((a * b + flight) * 1000))
    end
  else
    redis.call('ZADD', key, now + flight, ticket)
    redis.call('PEXPIRE', key, math.ceil((b + flight) * 1000))
  end
end
return {1, '0', 0}
"""

# KEYS as for _TAKE. ARGV: now, ticket, started, retry_after, then per limit as for _TAKE.
_RELEASE = """
local now, ticket = tonumber(ARGV[1]), ARGV[2]
local started, retry = tonumber(ARGV[3]), tonumber(ARGV[4])
for i = 1, #KEYS / 2 do
  local key, hold = KEYS[2 * i - 1], KEYS[2 * i]
  local kind, a, b = ARGV[2 + 3 * i], tonumber(ARGV[3 + 3 * i]), tonumber(ARGV[4 + 3 * i])
  if kind == 'w' then
    if redis.call('ZSCORE', key, ticket) then redis.call('ZADD', key, now, ticket) end
  elseif b > 0 then
    local tat = tonumber(redis.call('HGET', key, 'tat') or '0')
    if tat > started then tat = tat + (now - started) end
    if retry > 0 then tat = math.max(tat, now + retry + (a - 1) * b) end
    if tat > now then
      redis.call('HSET', key, 'tat', tostring(tat))
      redis.call('PEXPIRE', key, math.ceil((tat - now + a * b) * 1000))
    end
  end
  if retry > 0 then
    local until_ = now + retry
    if until_ > tonumber(redis.call('GET', hold) or '0') then
      redis.call('SET', hold, tostring(until_), 'PX', math.ceil(retry * 1000))
    end
  end
end
return 1
"""


class SharedWrites:
    """The write ledger in Redis that every replica's scheduler consults (see module doc)."""

    def __init__(self, member: Membership, *, flight: float = FLIGHT) -> None:
        self._link = member.link
        self._clock = member.clock
        self._prefix = f"{member.prefix}writes:"
        self._replica = member.replica
        self._flight = flight
        redis = member.redis
        self._tickets = itertools.count()
        self._taken_at: dict[str, float] = {}  # tickets in flight: when the ledger counted them
        self._take: Any = redis.register_script(_TAKE)
        self._release: Any = redis.register_script(_RELEASE)

    async def take(self, limits: tuple[Limit, ...], *, routine: bool, reserve: int) -> Verdict:
        """Count one write on every limit in `limits`, or say how long until they allow it."""
        if not limits:
            return Verdict(None)
        ticket = f"{self._replica}:{next(self._tickets)}"
        now = self._clock.wall()
        args: list[object] = [repr(now), int(routine), reserve, ticket, self._flight, POLL]
        try:
            allowed, wait, index = await self._link.call(
                lambda: self._take(keys=self._keys(limits), args=args + _shapes(limits))
            )
        except RedisDown:
            return Verdict(None)
        if allowed:
            self._taken_at[ticket] = now
            return Verdict(ticket)
        return Verdict(None, max(0.0, float(wait)), limits[int(index) - 1])

    async def release(
        self,
        ticket: str,
        limits: tuple[Limit, ...],
        *,
        retry_after: float = 0.0,
    ) -> None:
        """The write counted under `ticket` completed; a `retry_after` the platform answered
        holds its limits for every replica."""
        started = self._taken_at.pop(ticket, self._clock.wall())
        args: list[object] = [repr(self._clock.wall()), ticket, repr(started), repr(retry_after)]
        # While Redis is down the write counts there until FLIGHT expires.
        with contextlib.suppress(RedisDown):
            await self._link.call(
                lambda: self._release(keys=self._keys(limits), args=args + _shapes(limits))
            )

    def _keys(self, limits: tuple[Limit, ...]) -> list[str]:
        keys: list[str] = []
        for limit in limits:
            keys += [f"{self._prefix}{limit.key}", f"{self._prefix}{limit.key}:hold"]
        return keys


def _shapes(limits: tuple[Limit, ...]) -> list[object]:
    shapes: list[object] = []
    for limit in limits:
        if isinstance(limit, Bucket):
            shapes += ["b", limit.burst, repr(float(limit.interval))]
        else:
            shapes += ["w", limit.count, repr(float(limit.seconds))]
    return shapes
