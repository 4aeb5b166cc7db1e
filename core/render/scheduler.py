"""The write scheduler: which answer's write goes next in a room, and when.

A room is where answers share a platform's write limits (one chat or channel). Each answer (a
`Writer`, see core.render.renderer) tells its room what it would write next and how urgent that is;
the room starts the most urgent write its limits allow now (one at a time per answer; answers'
writes on different limits run side by side):

1. `FIRST_TEXT`: the first text of an answer that shows nothing yet (or a command's reply), in
   asking order;
2. `FINAL`: the final write of an answer that has ended (complete text, error line, buttons), the
   one that ended first first;
3. `INTERIM`: the next text of a streaming answer, the one shown longest ago first;
4. `STATUS`: a placeholder or queue position while an answer shows nothing else.

A write that waits for a limit keeps that limit for itself: no less urgent write takes it first.
Routine writes (interim, status) use only a limit's even share and leave the rest (the burst, a
window's reserve; see core.render.limits) to urgent writes, so a Stop, an error
or the end of an answer is on screen within one free write, and nobody starves: every answer's
interim edit eventually becomes the one shown longest ago.

Limits are shared by key across rooms (a bot-wide limit), and each is counted from write
completions (core.render.limits). When the platform says "retry after", every limit the refused
write drew from waits that long.

Replicas answering in the same rooms share the limits too (`SharedLimits`, core.shared.writes):
a write the local count allows also asks the shared ledger before it starts; when other
replicas' writes fill a limit, the write goes back to its member and the limit waits here.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import itertools
import logging
import math
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Protocol, TypeVar, cast

from core.clock import Clock, wait_for_event
from core.render.limits import Limit, LimitState, Verdict
from core.render.surface import SurfaceError, SurfaceRateLimited, SurfaceUnavailable

log = logging.getLogger(__name__)
T = TypeVar("T")


class Urgency(IntEnum):
    FIRST_TEXT = 0
    FINAL = 1
    INTERIM = 2
    STATUS = 3

    @property
    def routine(self) -> bool:
        return self >= Urgency.INTERIM


@dataclass(slots=True)
class Write:
    """One platform call a writer wants to make."""

    urgency: Urgency
    limits: tuple[Limit, ...]
    call: Callable[[], Coroutine[Any, Any, object]]
    not_before: float = 0.0  # the writer's own wait (coalescing, a retry's backoff)
    order: float = 0.0  # within one urgency, lower goes first
    context: contextvars.Context | None = None  # the writer's (e.g. its answer id in logs)


class Writer(Protocol):
    """What a room asks of each of its members."""

    @property
    def owed(self) -> int:
        """Writes it will certainly still make (a first text, a final write)."""
        ...

    def next_write(self, now: float) -> Write | None:
        """The one call that brings its messages closest to what they should show, or None."""
        ...

    def written(self, write: Write, error: SurfaceError | None) -> None:
        """`write` was made: it succeeded (None) or failed with `error`."""
        ...


class SharedLimits(Protocol):
    """Write limits counted across processes (None in `WriteScheduler`: this process only)."""

    async def take(self, limits: tuple[Limit, ...], *, routine: bool, reserve: int) -> Verdict:
        """Count one write on every limit, or say how long until they allow it."""
        ...

    async def release(
        self, ticket: str, limits: tuple[Limit, ...], *, retry_after: float = 0.0
    ) -> None:
        """The write counted under `ticket` completed (refused: with the platform's wait)."""
        ...


class WriteScheduler:
    """The rooms and limits of one platform connection (or of the whole process)."""

    def __init__(
        self, clock: Clock, *, max_idle: float = 600.0, shared: SharedLimits | None = None
    ) -> None:
        self.clock = clock
        self.shared = shared
        self._limits: dict[str, LimitState] = {}
        self._rooms: dict[str, Room] = {}
        self._max_idle = max_idle

    def room(self, key: str) -> Room:
        room = self._rooms.get(key)
        if room is None:
            room = self._rooms[key] = Room(self, key)
        return room

    def state(self, limit: Limit) -> LimitState:
        state = self._limits.get(limit.key)
        if state is None or state.limit != limit:
            if state is None and len(self._limits) > 4096:
                self._evict()
            state = self._limits[limit.key] = LimitState(limit, self.clock.now())
        return state

    def observe(self, key: str, remaining: int, reset_after: float) -> None:
        """The platform reported how many writes `key` has left (e.g. rate-limit headers)."""
        state = self._limits.get(key)
        if state is not None:
            state.observe(self.clock.now(), remaining, reset_after)

    async def write_once(
        self,
        room: str,
        limits: tuple[Limit, ...],
        call: Callable[[], Awaitable[T]],
        *,
        attempts: int = 3,
    ) -> T | None:
        """Make one write of an adapter's own (a notice, a menu) as urgent as a first text,
        retried after a rate limit or a transient failure; None when it could not be made."""
        one = _OneWrite(call, limits, attempts, asking_order())
        members = self.room(room)
        members.join(one)
        try:
            await one.done.wait()
        finally:
            members.leave(one)
        return cast("T | None", one.result)

    def _forget(self, room: Room) -> None:
        if self._rooms.get(room.key) is room and not room.busy:
            del self._rooms[room.key]

    def _evict(self) -> None:
        horizon = self.clock.now() - self._max_idle
        for key in [k for k, s in self._limits.items() if s.idle and s.last_used < horizon]:
            del self._limits[key]


class Room:
    """The writers sharing one room; one task serves them while there are any."""

    def __init__(self, scheduler: WriteScheduler, key: str) -> None:
        self._scheduler = scheduler
        self._clock = scheduler.clock
        self.key = key
        self._members: list[Writer] = []
        self._writing: dict[Writer, Write] = {}  # one write at a time per member
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def busy(self) -> bool:
        return bool(self._members or self._writing)

    def join(self, writer: Writer) -> None:
        self._members.append(writer)
        self.wake()
        if self._task is None or self._task.done():
            # A context of its own: the room serves many answers, it belongs to none.
            loop = asyncio.get_running_loop()
            self._task = loop.create_task(self._serve(), context=contextvars.Context())

    def leave(self, writer: Writer) -> None:
        with contextlib.suppress(ValueError):
            self._members.remove(writer)
        self.wake()

    def wake(self) -> None:
        """A member has something new to write (or has ended)."""
        self._changed.set()

    async def _serve(self) -> None:
        """Start each write as soon as its limits allow. Writes of different members run side
        by side (a call that waits on its platform holds up only its own answer), one member's
        one after another (its edits arrive in order), and first texts one after another (they
        appear in the order asked)."""
        try:
            while self._members or self._writing:
                self._changed.clear()
                choice, wait, reserve = self._choose(self._clock.now())
                if choice is None:
                    await self._pause(wait)
                    continue
                member, write = choice
                for limit in write.limits:
                    self._scheduler.state(limit).take(self._clock.now())
                context = write.context or contextvars.copy_context()
                loop = asyncio.get_running_loop()
                self._writing[member] = write
                self._tasks.add(
                    task := loop.create_task(self._perform(member, write, reserve), context=context)
                )
                task.add_done_callback(self._tasks.discard)
        finally:
            for task in list(self._tasks):
                task.cancel()
            self._scheduler._forget(self)

    def _choose(self, now: float) -> tuple[tuple[Writer, Write] | None, float, int]:
        """The most urgent write its limits allow now, else how long until one may go; and
        the writes the room's answers still owe."""
        wanted = [
            (w, m)
            for m in self._members
            if m not in self._writing and (w := m.next_write(now)) is not None
        ]
        wanted.sort(key=lambda pair: (pair[0].urgency, pair[0].order))
        reserve = sum(m.owed for m in self._members)
        held: set[str] = set()  # limits a more urgent write is waiting for
        soonest = math.inf
        # First texts appear in the order asked: one at a time, like a queue at the counter.
        first_text_going = any(w.urgency is Urgency.FIRST_TEXT for w in self._writing.values())
        for write, member in wanted:
            if first_text_going and write.urgency is Urgency.FIRST_TEXT:
                continue
            own_wait = write.not_before - now
            limit_wait = max(
                (
                    self._scheduler.state(limit).wait(
                        now, routine=write.urgency.routine, reserve=reserve
                    )
                    for limit in write.limits
                ),
                default=0.0,
            )
            keys = {limit.key for limit in write.limits}
            if keys & held:
                continue  # it waits for the more urgent write holding its limits
            if own_wait <= 0 and limit_wait <= 0:
                return (member, write), 0.0, reserve
            if own_wait <= 0:
                held |= keys
            soonest = min(soonest, max(own_wait, limit_wait))
        return None, soonest, reserve

    async def _pause(self, seconds: float) -> None:
        """Until `seconds` pass or a member has news."""
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        await wait_for_event(self._clock, self._changed, seconds)

    async def _perform(self, member: Writer, write: Write, reserve: int) -> None:
        """Make the call (its limits were taken), release them, tell the member how it went."""
        shared, ticket = self._scheduler.shared, None
        if shared is not None:
            try:
                verdict = await shared.take(
                    write.limits, routine=write.urgency.routine, reserve=reserve
                )
            except Exception:  # the shared count is a courtesy: a bug there must not stall
                log.exception("the shared write limits failed in %s", self.key)
                verdict = Verdict(None)
            if verdict.ticket is None and verdict.wait > 0:
                self._back_off(member, write, verdict)
                return
            ticket = verdict.ticket
        error: SurfaceError | None = None
        try:
            await write.call()
        except SurfaceError as exc:
            error = exc
        except Exception as exc:  # a bug in one write must not stop the room's other answers
            log.exception("a write in %s failed", self.key)
            error = SurfaceError(repr(exc))
        finally:
            now = self._clock.now()
            retry_after = error.retry_after if isinstance(error, SurfaceRateLimited) else 0.0
            for limit in write.limits:
                state = self._scheduler.state(limit)
                state.release(now)
                if retry_after:
                    state.penalize(now, retry_after)
            self._writing.pop(member, None)
            self.wake()
        member.written(write, error)
        if shared is not None and ticket is not None:
            try:
                await shared.release(ticket, write.limits, retry_after=retry_after)
            except Exception:  # it counts there until it expires
                log.exception("the shared write limits failed in %s", self.key)

    def _back_off(self, member: Writer, write: Write, verdict: Verdict) -> None:
        """Other processes' writes fill a limit: the write did not start; the limit waits."""
        now = self._clock.now()
        for limit in write.limits:
            self._scheduler.state(limit).untake()
        if verdict.limit is not None:
            self._scheduler.state(verdict.limit).hold(now + verdict.wait)
        self._writing.pop(member, None)
        self.wake()


_asked = itertools.count()


def asking_order() -> int:
    """A number that grows with each answer asked (the order of first texts)."""
    return next(_asked)


@dataclass(eq=False)
class _OneWrite:
    """A single write of an adapter's own, as a room member."""

    call: Callable[[], Awaitable[object]]
    limits: tuple[Limit, ...]
    attempts: int
    order: int
    done: asyncio.Event = field(default_factory=asyncio.Event)
    result: object = None
    _retry_at: float = 0.0

    @property
    def owed(self) -> int:
        return 0 if self.done.is_set() else 1

    def next_write(self, now: float) -> Write | None:
        if self.done.is_set():
            return None
        return Write(Urgency.FIRST_TEXT, self.limits, self._run, self._retry_at, self.order)

    async def _run(self) -> None:
        self.result = await self.call()

    def written(self, write: Write, error: SurfaceError | None) -> None:
        self.attempts -= 1
        if error is None or self.attempts <= 0:
            if error is not None:
                log.warning("could not write: %r", error)
            self.done.set()
        elif isinstance(error, SurfaceUnavailable):
            self._retry_at = 0.0
        elif not isinstance(error, SurfaceRateLimited):
            log.warning("could not write: %r", error)
            self.done.set()
