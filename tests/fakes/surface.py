"""A recording message surface that enforces a per-chat write limit like a platform would.

Used by the renderer tests (with a ManualClock) and by the streaming benchmark.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from core.api_models import StreamDelta
from core.clock import Clock
from core.render.limits import Bucket
from core.render.surface import (
    Button,
    MessageRef,
    SurfaceLimits,
    SurfaceMessageGone,
    SurfaceRateLimited,
    SurfaceUnavailable,
    WriteLimits,
)


@dataclass(slots=True)
class Write:
    kind: str  # "send" | "edit" | "preview" | "upload"
    at: float
    message_id: str
    text: str
    buttons: tuple[str, ...] = ()


@dataclass(frozen=True)
class RollingLimit:
    """A platform rule: at most `count` writes (of `kinds`, or any) per chat in any `seconds`."""

    count: int
    seconds: float
    kinds: frozenset[str] = frozenset()


@dataclass
class ChatServer:
    """The platform side of one or more chats: messages, and write limits per chat: a token
    bucket (`burst`, one per `interval`) and any `rolling` limits, counted at receipt."""

    clock: Clock
    interval: float = 1.0
    burst: int = 1
    enforce: bool = True
    call_latency: float = 0.0
    writes: list[Write] = field(default_factory=list)
    messages: dict[str, str] = field(default_factory=dict)
    buttons: dict[str, tuple[str, ...]] = field(default_factory=dict)
    deleted: set[str] = field(default_factory=set)
    rate_limited: int = 0
    forced_retry_after: list[float] = field(default_factory=list)  # next writes answer 429
    unavailable: int = 0  # this many next writes fail as a transient error (not applied)
    failing_edits: set[str] = field(default_factory=set)  # edits of these fail as transient
    _tokens: dict[str, tuple[float, float]] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    in_flight: dict[str, int] = field(default_factory=dict)
    max_in_flight_per_message: int = 0
    keep_writes: bool = True  # the benchmark turns the write log off
    rolling: tuple[RollingLimit, ...] = ()
    _received: dict[tuple[str, RollingLimit], list[float]] = field(default_factory=dict)

    def _check_rate(self, key: str, kind: str = "send") -> None:
        now = self.clock.now()
        if self.unavailable:
            self.unavailable -= 1
            raise SurfaceUnavailable("connection reset")
        if self.forced_retry_after:
            self.rate_limited += 1
            raise SurfaceRateLimited(self.forced_retry_after.pop(0))
        if not self.enforce:
            return
        tokens, updated = self._tokens.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - updated) / self.interval)
        if tokens < 1.0 - 1e-9:
            self.rate_limited += 1
            self._tokens[key] = (tokens, now)
            raise SurfaceRateLimited(round((1.0 - tokens) * self.interval, 3))
        counted = [r for r in self.rolling if not r.kinds or kind in r.kinds]
        for rule in counted:
            times = [t for t in self._received.get((key, rule), []) if t > now - rule.seconds]
            self._received[(key, rule)] = times
            if len(times) >= rule.count:
                self.rate_limited += 1
                raise SurfaceRateLimited(round(times[0] + rule.seconds - now, 3))
        for rule in counted:
            self._received[(key, rule)].append(now)
        self._tokens[key] = (tokens - 1.0, now)

    def shown(self, ids: list[MessageRef]) -> list[str]:
        return [self.messages[r.id] for r in ids]


class RecordingSurface:
    """One answer's view of a `ChatServer` chat."""

    def __init__(
        self,
        server: ChatServer,
        *,
        chat: str = "chat-1",
        max_length: int = 100,
        previews: bool = False,
        preview_refresh: float | None = None,
        placeholder: str | None = None,
        writes: WriteLimits | None = None,
    ) -> None:
        """`writes`: the limits each kind of write draws from (default: every write draws from
        the server's per-chat bucket)."""
        self.server = server
        self.chat = chat
        self.previews: list[str] = []
        if writes is None:
            bucket = (Bucket(chat, server.burst, server.interval),)
            writes = WriteLimits(send=bucket, edit=bucket, preview=bucket)
        self._limits = SurfaceLimits(
            max_length=max_length,
            room=chat,
            writes=writes,
            previews=previews,
            preview_refresh=preview_refresh,
            placeholder=placeholder,
        )
        self.activities: list[str] = []
        self.uploads: list[tuple[str, str, bytes]] = []

    @property
    def limits(self) -> SurfaceLimits:
        return self._limits

    async def _latency(self, message_id: str) -> None:
        s = self.server
        s.in_flight[message_id] = s.in_flight.get(message_id, 0) + 1
        s.max_in_flight_per_message = max(s.max_in_flight_per_message, s.in_flight[message_id])
        try:
            if s.call_latency:
                await s.clock.sleep(s.call_latency)
            else:
                await asyncio.sleep(0)
        finally:
            s.in_flight[message_id] -= 1

    def _record(self, kind: str, message_id: str, text: str, buttons: tuple[Button, ...]) -> None:
        if self.server.keep_writes:
            labels = tuple(b.action for b in buttons)
            self.server.writes.append(
                Write(kind, self.server.clock.now(), message_id, text, labels)
            )

    async def send(self, text: str, *, buttons: tuple[Button, ...] = ()) -> MessageRef:
        assert 0 < len(text) <= self._limits.max_length, f"bad length {len(text)}"
        message_id = f"{self.chat}/{next(self.server._ids)}"
        await self._latency(message_id)
        self.server._check_rate(self.chat)
        self.server.messages[message_id] = text
        self.server.buttons[message_id] = tuple(b.action for b in buttons)
        self._record("send", message_id, text, buttons)
        return MessageRef(message_id)

    async def edit(self, ref: MessageRef, text: str, *, buttons: tuple[Button, ...] = ()) -> None:
        assert 0 < len(text) <= self._limits.max_length, f"bad length {len(text)}"
        await self._latency(ref.id)
        if ref.id in self.server.deleted:
            raise SurfaceMessageGone(ref.id)
        if ref.id in self.server.failing_edits:
            raise SurfaceUnavailable("502 Bad Gateway")
        labels = tuple(b.action for b in buttons)
        same = self.server.messages[ref.id] == text and self.server.buttons[ref.id] == labels
        assert not same, "message is not modified"
        self.server._check_rate(self.chat, "edit")
        self.server.messages[ref.id] = text
        self.server.buttons[ref.id] = labels
        self._record("edit", ref.id, text, buttons)

    async def preview(self, text: str) -> None:
        await self._latency(f"{self.chat}/preview")
        self.server._check_rate(self.chat, "preview")
        self.previews.append(text)
        self._record("preview", "preview", text, ())

    async def activity(self, kind: str) -> None:
        self.activities.append(kind)

    async def upload(
        self,
        data: bytes,
        *,
        filename: str,
        content_type: str,
        caption: str,
        prompt: str,
        model: str,
    ) -> MessageRef:
        assert len(caption) <= self._limits.max_caption
        self.uploads.append((filename, content_type, data))
        message_id = f"{self.chat}/{next(self.server._ids)}"
        self.server._check_rate(self.chat)
        self.server.messages[message_id] = caption
        self._record("upload", message_id, caption, ())
        return MessageRef(message_id)


class ScriptedStream:
    """Deltas (or an exception) delivered at given clock offsets from the first read."""

    def __init__(self, clock: Clock, script: list[tuple[float, StreamDelta | Exception]]) -> None:
        self.clock = clock
        self.script = script
        self.closed = False
        self.finished = False

    def __aiter__(self) -> AsyncIterator[StreamDelta]:
        return self._run()

    async def _run(self) -> AsyncIterator[StreamDelta]:
        start = self.clock.now()
        try:
            for offset, item in self.script:
                await self.clock.sleep(start + offset - self.clock.now())
                if isinstance(item, Exception):
                    raise item
                yield item
            self.finished = True
        finally:
            self.closed = True


def words(
    text: str, *, start: float = 0.0, every: float = 0.05
) -> list[tuple[float, StreamDelta | Exception]]:
    """A script streaming `text` word by word (whitespace kept), one delta every `every` s."""
    import re

    pieces = re.findall(r"\S+\s*|\s+", text)
    return [(start + i * every, StreamDelta(content=p)) for i, p in enumerate(pieces)]
