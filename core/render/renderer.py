"""The stream renderer: a stream of deltas becomes what an answer's messages should show.

One `StreamRenderer` per answer. Its reader drains the upstream stream into a buffer and never
waits on the platform. It is a member of its room in the write scheduler (core.render.scheduler),
which asks it for its next write whenever a write is free and makes the call: the one call that
brings the messages closest to the buffer, always with the latest text (so edits coalesce). Text
past a message's limit continues in the next message (see core.render.split).

What an answer shows, in order: nothing but the free "typing" signal until its first text (which
waits up to `FIRST_TEXT_COALESCE` for more words, then goes out as the first message); a
placeholder or queue line only when no text has come for `STATUS_DELAY`; while streaming, the last
message ends with an indicator and carries a Stop button; the final write removes the indicator
and carries the complete text plus, when the answer failed or was stopped, one status line.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import AsyncIterable, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from core.api_models import StreamDelta
from core.clock import Clock
from core.errors import BridgeError, InternalFault
from core.render.scheduler import Urgency, Write, WriteScheduler, asking_order
from core.render.split import split_text
from core.render.surface import (
    Activity,
    Button,
    MessageRef,
    MessageSurface,
    SurfaceError,
    SurfaceForbidden,
    SurfaceMessageGone,
    SurfaceRateLimited,
    SurfaceUnavailable,
    WriteKind,
)

log = logging.getLogger(__name__)

INDICATOR = " ▌"
FIRST_TEXT_COALESCE = 0.1  # the first text waits this long for more words
STATUS_DELAY = 1.5  # a placeholder or queue line only after this long without text
KEEPALIVE_INTERVAL = 4.0  # activities ("typing") fade after about 5 s
STOPPED_NOTE = "⏹ Stopped."
TRANSIENT_RETRIES = 4  # transient failures in a row on one message before it is given up
TRANSIENT_BACKOFF = 2.0  # seconds, times the number of failures in a row
THINKING_NOTE = "💭 Thinking…"
EMPTY_ANSWER = "⚠️ The model returned an empty answer. Try asking again, or another model."
NOT_SAVED_NOTE = "⚠️ I could not save this answer, so a reply to it starts a new conversation."
STOP_BUTTON = Button("stop", "⏹ Stop")


async def keep_active(
    surface: MessageSurface,
    kind: Activity,
    clock: Clock,
    *,
    until: Callable[[], bool] = lambda: False,
) -> None:
    """Show that the bot is busy with `kind` every KEEPALIVE_INTERVAL seconds until `until()`
    (checked before each showing), the surface refuses, or the task is cancelled."""
    while not until():
        try:
            await surface.activity(kind)
        except SurfaceError:
            return
        await clock.sleep(KEEPALIVE_INTERVAL)


_Desired = list[tuple[str, tuple[Button, ...]]]
_Call = Callable[[], Coroutine[Any, Any, None]]  # one platform call, made by the scheduler


class Outcome(StrEnum):
    DONE = "done"
    STOPPED = "stopped"
    FAILED = "failed"  # upstream error; partial text kept
    DELETED = "deleted"  # the user deleted the message: ended quietly
    FORBIDDEN = "forbidden"  # the bot may no longer write there


@dataclass(slots=True)
class RenderResult:
    """How an answer ended and what the user sees."""

    outcome: Outcome
    text: str
    reasoning: str
    error: BridgeError | None
    messages: list[MessageRef]
    first_token_at: float | None = None
    first_visible_at: float | None = None
    writes: int = 0
    rate_limited: int = 0


def utf16_length(text: str) -> int:
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


@dataclass(slots=True)
class _Shown:
    ref: MessageRef
    text: str
    buttons: tuple[Button, ...]


@dataclass(slots=True)
class RenderOptions:
    """Per-answer choices of the caller (the use case)."""

    show_reasoning: bool = False
    stop_button: bool = True
    final_buttons: tuple[Button, ...] = ()
    extra_lines: list[str] = field(default_factory=list)  # notices shown after the answer
    on_message: Callable[[MessageRef], None] | None = None  # each message the answer sends
    # After each write while streaming: what every message of the answer shows now, and whether
    # that is answer text (not only a placeholder or status line).
    on_shown: Callable[[list[tuple[MessageRef, str]], bool], None] | None = None
    # Called once when the stream has ended, before the final write, with how it ended and the
    # text: what the answer says is known (and can be stored) before the user sees it complete.
    on_ended: Callable[[Outcome, str], Awaitable[None]] | None = None


class _Phase(StrEnum):
    STREAMING = "streaming"  # interim writes
    ENDING = "ending"  # the stream ended; the use case is told before the final write
    FINAL = "final"  # final writes until the messages show the whole answer
    SETTLED = "settled"  # nothing left to write (or the surface is gone)


class StreamRenderer:
    """Renders one answer onto one surface. Use `run()` once; `stop()` from anywhere."""

    def __init__(
        self,
        deltas: AsyncIterable[StreamDelta],
        surface: MessageSurface,
        *,
        scheduler: WriteScheduler,
        clock: Clock,
        options: RenderOptions | None = None,
    ) -> None:
        self._deltas = deltas
        self._surface = surface
        self._clock = clock
        self._options = options or RenderOptions()
        limits = surface.limits
        self._room = scheduler.room(limits.room)
        self._previews = limits.previews
        self._preview_refresh = limits.preview_refresh
        self._placeholder = limits.placeholder or ""
        self._length: Callable[[str], int] = utf16_length if limits.measure == "utf16" else len
        self._max = limits.max_length - self._length(INDICATOR)
        self._asked = asking_order()
        self._context = contextvars.copy_context()  # its writes log as part of this answer
        self._started = clock.now()
        self._answer: list[str] = []
        self._reasoning: list[str] = []
        self._phase = _Phase.STREAMING
        self._ended = asyncio.Event()  # the stream is over (done, failed, stopped, aborted)
        self._settled = asyncio.Event()
        self._ended_at = 0.0
        self._outcome = Outcome.DONE
        self._stop_note = STOPPED_NOTE
        self._error: BridgeError | None = None
        self._shown: list[_Shown] = []
        self._preview_text: str | None = None
        self._preview_at = 0.0
        self._last_write_at = 0.0
        self._status: str | None = None
        self._idle = True  # the room last heard "nothing to write" from us
        self._failures_in_a_row = 0
        self._retry_at = 0.0
        self._editing: int | None = None  # the message the write being made edits
        self._given_up = 0  # messages given up on (the answer went on in a fresh one)
        self._reader: asyncio.Task[None] | None = None
        self._result = RenderResult(Outcome.DONE, "", "", None, [])

    # --- control ----------------------------------------------------------------------------
    def stop(self, note: str = STOPPED_NOTE) -> None:
        """Stop the answer: cancel the upstream request and keep what was written; the final
        write ends with `note`."""
        if not self._ended.is_set():
            self._stop_note = note
            self._end(Outcome.STOPPED)
            if self._reader is not None:
                self._reader.cancel()

    def set_status(self, status: str | None) -> None:
        """A line shown while no text has arrived yet (e.g. the queue position)."""
        self._status = status
        self._news()

    @property
    def text(self) -> str:
        return "".join(self._answer)

    @property
    def ended(self) -> bool:
        """Whether the stream is over (done, failed, stopped, aborted): `stop` changes nothing."""
        return self._ended.is_set()

    async def run(self) -> RenderResult:
        """Stream the answer to the surface and return how it ended."""
        self._reader = asyncio.create_task(self._read())
        keepalive = asyncio.create_task(self._keepalive())
        self._room.join(self)
        try:
            await self._ended.wait()
            if self._phase is _Phase.STREAMING:
                self._phase = _Phase.ENDING
                await self._report_ended()
                if self._phase is _Phase.ENDING:
                    self._phase = _Phase.FINAL
                    self._news()
            await self._settled.wait()
        finally:
            self._room.leave(self)
            keepalive.cancel()
            if not self._reader.done():
                self._reader.cancel()
            await asyncio.gather(self._reader, keepalive, return_exceptions=True)
        r = self._result
        r.outcome, r.text, r.reasoning, r.error = (
            self._outcome,
            self.text,
            "".join(self._reasoning),
            self._error,
        )
        r.messages = [s.ref for s in self._shown]
        return r

    # --- reading ----------------------------------------------------------------------------
    async def _read(self) -> None:
        try:
            if self._ended.is_set():
                return  # stopped before it started: never open the upstream request
            async for delta in self._deltas:
                if delta.content or delta.reasoning:
                    if self._result.first_token_at is None:
                        self._result.first_token_at = self._clock.now()
                    # The room hears of text that changes what it waits for: the first words
                    # (urgent now), or any words after it had nothing to write for us.
                    news = self._idle or (bool(delta.content) and not self._answer)
                    if delta.content:
                        self._answer.append(delta.content)
                    if delta.reasoning:
                        self._reasoning.append(delta.reasoning)
                    if news:
                        self._news()
            self._end(Outcome.DONE)
        except BridgeError as exc:
            self._error = exc
            self._end(Outcome.FAILED)
        except asyncio.CancelledError:
            self._end(Outcome.STOPPED)
            raise
        except Exception:  # a bug below: the answer ends in place, the bridge goes on
            log.exception("reading the answer failed")
            self._error = InternalFault()
            self._end(Outcome.FAILED)
        finally:
            close = getattr(self._deltas, "aclose", None)
            if close is not None:
                await close()

    async def _keepalive(self) -> None:
        """Until something is visible, show "typing" (free: it takes no write)."""
        await keep_active(
            self._surface,
            "typing",
            self._clock,
            until=lambda: (
                self._ended.is_set() or bool(self._shown) or self._preview_text is not None
            ),
        )

    async def _report_ended(self) -> None:
        """Tell the use case how the answer ended; if that fails, the user is told too."""
        if self._options.on_ended is None:
            return
        try:
            await self._options.on_ended(self._outcome, self.text)
        except Exception:
            log.exception("the end of an answer could not be recorded")
            self._options.extra_lines.append(NOT_SAVED_NOTE)

    def _end(self, outcome: Outcome) -> None:
        if not self._ended.is_set():
            self._outcome = outcome
            self._ended_at = self._clock.now()
            self._ended.set()
        self._news()

    def _news(self) -> None:
        self._idle = False
        self._room.wake()

    def _settle(self) -> None:
        self._phase = _Phase.SETTLED
        self._settled.set()

    def _abort(self, outcome: Outcome) -> None:
        """The surface is gone: end without writing more."""
        if not self._ended.is_set():
            self._end(outcome)
        else:
            self._outcome = outcome
        if self._reader is not None:
            self._reader.cancel()
        self._settle()

    # --- the scheduler's questions ----------------------------------------------------------
    @property
    def owed(self) -> int:
        """Writes this answer will still make for sure: its first text and its final write."""
        if self._phase is _Phase.SETTLED:
            return 0
        return 1 + (not self._shown and self._preview_text is None)

    def next_write(self, now: float) -> Write | None:
        """The one call that brings the messages closest to what they should show."""
        if self._phase in (_Phase.ENDING, _Phase.SETTLED):
            return None
        final = self._phase is _Phase.FINAL
        desired = self._desired(final)
        for index, (text, buttons) in enumerate(desired):
            if index < len(self._shown):
                shown = self._shown[index]
                if shown.text != text or shown.buttons != buttons:
                    self._editing = index
                    return self._write("edit", self._edit_call(shown, text, buttons), final)
                continue
            self._editing = None
            if self._previews and index == len(desired) - 1 and not final:
                if self._preview_text == text:  # only to keep it from fading: new text is news
                    self._idle = True
                    if self._preview_refresh is None:
                        return None
                    refresh_at = self._preview_at + self._preview_refresh
                    return self._write("preview", self._preview_call(text), final, refresh_at)
                return self._write("preview", self._preview_call(text), final)
            return self._write("send", self._send_call(text, buttons), final)
        if final:
            self._settle()
        self._idle = True
        return None

    def _write(self, kind: WriteKind, call: _Call, final: bool, at: float = 0.0) -> Write:
        """A write of this answer, as urgent as what it shows."""
        visible = bool(self._shown) or self._preview_text is not None
        if final:
            urgency, order = Urgency.FINAL, self._ended_at
        elif not visible and self._answer:
            urgency, order = Urgency.FIRST_TEXT, float(self._asked)
            first = self._result.first_token_at or self._started
            at = max(at, first + FIRST_TEXT_COALESCE)
        elif not visible:
            urgency, order = Urgency.STATUS, float(self._asked)
            if self._reasoning:  # the model is thinking: say so as soon as it starts
                at = max(at, (self._result.first_token_at or self._started) + FIRST_TEXT_COALESCE)
            else:
                at = max(at, self._started + STATUS_DELAY)
        else:
            urgency, order = Urgency.INTERIM, self._last_write_at
        limits = self._surface.limits.writes.of(kind)
        return Write(urgency, limits, call, max(at, self._retry_at), order, self._context)

    def written(self, write: Write, error: SurfaceError | None) -> None:
        """The scheduler made `write`; react to how it went."""
        now = self._clock.now()
        if error is None:
            self._failures_in_a_row = 0
            self._last_write_at = now
            self._result.writes += 1
            shown = self._options.on_shown
            if shown is not None and self._phase is _Phase.STREAMING and self._shown:
                shown([(s.ref, s.text) for s in self._shown], bool(self._answer))
            if self._result.first_visible_at is None and self._answer:
                self._result.first_visible_at = now
        elif isinstance(error, SurfaceRateLimited):
            self._result.rate_limited += 1  # the scheduler holds the room's limits back
            log.info("rate limited, retrying in %.1fs", error.retry_after)
        elif isinstance(error, SurfaceUnavailable):
            self._failures_in_a_row += 1
            if self._failures_in_a_row <= TRANSIENT_RETRIES:
                log.info("write failed (%r), retrying", error)
                self._retry_at = now + TRANSIENT_BACKOFF * self._failures_in_a_row
            elif self._editing is not None and not self._given_up:
                # The platform keeps refusing edits of this message: the answer goes on, with
                # the text it has, in a fresh message.
                log.warning("giving up on editing a message (%r); continuing in a new one", error)
                self._given_up += 1
                self._failures_in_a_row = 0
                del self._shown[self._editing :]
            else:
                log.warning("giving up on this answer's messages: %r", error)
                self._abort(Outcome.FORBIDDEN)
        elif isinstance(error, SurfaceMessageGone):
            self._abort(Outcome.DELETED)
        elif isinstance(error, SurfaceForbidden):
            self._abort(Outcome.FORBIDDEN)
        else:
            log.warning("giving up on this answer's messages: %r", error)
            self._abort(Outcome.FORBIDDEN)

    # --- what the messages should show ------------------------------------------------------
    def _desired(self, final: bool) -> _Desired:
        """What the messages should show now, one entry per message."""
        opts = self._options
        texts: list[str] = []
        if opts.show_reasoning and self._reasoning:
            texts += split_text(_quote("".join(self._reasoning)), self._max, length=self._length)
        body = self.text if not self.text.isspace() else ""  # nothing to show is nothing
        if final:
            body += self._status_suffix(body)
        elif not body:
            if self._reasoning and not opts.show_reasoning:
                body = THINKING_NOTE
            elif self._status:
                body = self._status
            elif self._shown or not self._previews:
                body = self._placeholder
        texts += split_text(body, self._max, length=self._length) if body else []
        if not texts:
            return []
        buttons: tuple[Button, ...] = ()
        if not final and opts.stop_button:
            buttons = (STOP_BUTTON,)
        elif final and self._outcome in (Outcome.DONE, Outcome.FAILED, Outcome.STOPPED):
            buttons = opts.final_buttons
        no_buttons: tuple[Button, ...] = ()
        desired = [(t, no_buttons) for t in texts[:-1]]
        last = texts[-1] if final else texts[-1] + INDICATOR
        desired.append((last, buttons))
        return desired

    def _status_suffix(self, body: str) -> str:
        notes = list(self._options.extra_lines)
        if self._outcome is Outcome.STOPPED:
            notes.append(self._stop_note)
        elif self._outcome is Outcome.FAILED and self._error is not None:
            notes.append(f"⚠️ {self._error.user_message}")
        elif not body:
            notes.append(EMPTY_ANSWER)
        suffix = "\n".join(notes)
        if body and suffix:
            return "\n\n" + suffix
        return suffix

    # --- the calls --------------------------------------------------------------------------
    def _edit_call(self, shown: _Shown, text: str, buttons: tuple[Button, ...]) -> _Call:
        async def call() -> None:
            await self._surface.edit(shown.ref, text, buttons=buttons)
            shown.text, shown.buttons = text, buttons

        return call

    def _send_call(self, text: str, buttons: tuple[Button, ...]) -> _Call:
        async def call() -> None:
            ref = await self._surface.send(text, buttons=buttons)
            self._shown.append(_Shown(ref, text, buttons))
            self._preview_text = None
            if self._options.on_message is not None:
                self._options.on_message(ref)

        return call

    def _preview_call(self, text: str) -> _Call:
        async def call() -> None:
            await self._surface.preview(text)
            self._preview_text = text
            self._preview_at = self._clock.now()

        return call


def _quote(reasoning: str) -> str:
    lines = reasoning.strip("\n").splitlines() or [""]
    return "💭 Thinking\n" + "\n".join(f"> {line}" if line else ">" for line in lines)
