"""The stream renderer: a stream of deltas becomes a sequence of message sends and edits.

Two tasks per answer. The reader drains the upstream stream into a buffer and never waits on the
platform. The writer makes the messages match the buffer, one platform call at a time, each call
taking the chat's write budget first and carrying the latest text (so edits coalesce). Text past a
message's limit continues in the next message (see core.render.split). While streaming, the last
message ends with an indicator and carries a Stop button; the final write removes the indicator,
and carries the complete text plus, when the answer failed or was stopped, one status line.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterable, Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum

from core.api_models import StreamDelta
from core.clock import Clock
from core.errors import UpstreamError
from core.render.budget import BudgetRegistry, RateBudget
from core.render.split import split_text
from core.render.surface import (
    Button,
    MessageRef,
    MessageSurface,
    SurfaceError,
    SurfaceForbidden,
    SurfaceMessageGone,
    SurfaceRateLimited,
    SurfaceUnavailable,
)

log = logging.getLogger(__name__)

INDICATOR = " ▌"
FIRST_TEXT_COALESCE = 0.1
KEEPALIVE_INTERVAL = 4.0  # chat actions ("typing") fade after about 5 s
DRAFT_REFRESH = 20.0  # live drafts vanish after about 30 s without an update
TRANSIENT_RETRIES = 4  # transient platform failures in a row before an answer gives up
TRANSIENT_BACKOFF = 2.0  # seconds, times the number of failures in a row
THINKING_NOTE = "💭 Thinking…"
EMPTY_ANSWER = "(The model returned an empty answer.)"
STOP_BUTTON = Button("stop", "⏹ Stop")

_Call = Callable[[], Awaitable[None]]
_Desired = list[tuple[str, tuple[Button, ...]]]


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
    error: UpstreamError | None
    messages: list[MessageRef]
    first_token_at: float | None = None
    first_visible_at: float | None = None
    writes: int = 0
    rate_limited: int = 0


def utf16_length(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


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
    # Called once when the stream has ended, before the final write, with how it ended and the
    # text: what the answer says is known (and can be stored) before the user sees it complete.
    on_ended: Callable[[Outcome, str], Awaitable[None]] | None = None


class StreamRenderer:
    """Renders one answer onto one surface. Use `run()` once; `stop()` from anywhere."""

    def __init__(
        self,
        deltas: AsyncIterable[StreamDelta],
        surface: MessageSurface,
        *,
        budgets: BudgetRegistry,
        clock: Clock,
        options: RenderOptions | None = None,
    ) -> None:
        self._deltas = deltas
        self._surface = surface
        self._clock = clock
        self._options = options or RenderOptions()
        limits = surface.limits
        self._budget: RateBudget = budgets.get(
            limits.budget_key, limits.min_edit_interval, limits.burst
        )
        self._use_draft = limits.supports_draft
        self._length: Callable[[str], int] = utf16_length if limits.measure == "utf16" else len
        self._placeholder = limits.placeholder
        self._max = limits.max_length - self._length(INDICATOR)
        self._answer: list[str] = []
        self._reasoning: list[str] = []
        self._changed = asyncio.Event()
        self._ended = False
        self._outcome = Outcome.DONE
        self._error: UpstreamError | None = None
        self._shown: list[_Shown] = []
        self._draft_text: str | None = None
        self._draft_at = 0.0
        self._status: str | None = None
        self._ended_reported = False
        self._failures_in_a_row = 0
        self._reader: asyncio.Task[None] | None = None
        self._result = RenderResult(Outcome.DONE, "", "", None, [])

    # --- control ----------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop the answer: cancel the upstream request and keep what was written."""
        if not self._ended:
            self._finish(Outcome.STOPPED)
            if self._reader is not None:
                self._reader.cancel()

    def set_status(self, status: str | None) -> None:
        """A line shown while no text has arrived yet (e.g. the queue position)."""
        self._status = status
        self._changed.set()

    @property
    def text(self) -> str:
        return "".join(self._answer)

    async def run(self) -> RenderResult:
        """Stream the answer to the surface and return how it ended."""
        self._reader = asyncio.create_task(self._read())
        keepalive = asyncio.create_task(self._keepalive())
        try:
            await self._write_loop()
            await self._report_ended()
        finally:
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
            if self._ended:
                return  # stopped before it started: never open the upstream request
            async for delta in self._deltas:
                if delta.content or delta.reasoning:
                    if self._result.first_token_at is None:
                        self._result.first_token_at = self._clock.now()
                    if delta.content:
                        self._answer.append(delta.content)
                    if delta.reasoning:
                        self._reasoning.append(delta.reasoning)
                    self._changed.set()
            self._finish(Outcome.DONE)
        except UpstreamError as exc:
            self._error = exc
            self._finish(Outcome.FAILED)
        except asyncio.CancelledError:
            self._finish(Outcome.STOPPED)
            raise
        finally:
            close = getattr(self._deltas, "aclose", None)
            if close is not None:
                await close()

    async def _keepalive(self) -> None:
        """Until something is visible, show "typing"; while drafting, keep the draft alive."""
        while not self._ended:
            if not self._shown and self._draft_text is None:
                try:
                    await self._surface.activity("typing")
                except SurfaceError:
                    return
            elif self._use_draft:
                self._changed.set()  # the writer re-sends a draft that is about to fade
            await self._clock.sleep(KEEPALIVE_INTERVAL)

    async def _report_ended(self) -> None:
        if not self._ended_reported and self._options.on_ended is not None:
            self._ended_reported = True
            await self._options.on_ended(self._outcome, self.text)

    def _finish(self, outcome: Outcome) -> None:
        if not self._ended:
            self._ended = True
            self._outcome = outcome
        self._changed.set()

    # --- writing ----------------------------------------------------------------------------
    async def _write_loop(self) -> None:
        if self._placeholder is not None and not self._use_draft:
            try:
                await self._write_until_synced(placeholder=True)
            except _Abort:
                return
        while True:
            await self._changed.wait()
            self._changed.clear()
            ended = self._ended
            if not ended and self._answer and not self._shown and self._draft_text is None:
                await self._clock.sleep(FIRST_TEXT_COALESCE)
            try:
                await self._write_until_synced()
            except _Abort:
                return
            if ended:
                return

    async def _write_until_synced(self, *, placeholder: bool = False) -> None:
        """Write, one call per budget token, until the platform shows the desired state."""
        while True:
            final = self._ended
            if final:
                await self._report_ended()
            if self._next_write(self._desired(final, placeholder), final) is None:
                return
            await self._budget.acquire()
            if not final and self._ended:
                await self._report_ended()
            final = self._ended
            write = self._next_write(self._desired(final, placeholder), final)
            if write is None:
                return
            try:
                await write()
            except SurfaceRateLimited as exc:
                self._budget.done()
                self._result.rate_limited += 1
                log.info("rate limited, retrying in %.1fs", exc.retry_after)
                self._budget.penalize(exc.retry_after)
            except SurfaceUnavailable as exc:
                self._budget.done()
                self._failures_in_a_row += 1
                if self._failures_in_a_row > TRANSIENT_RETRIES:
                    log.warning("giving up on this answer's messages: %r", exc)
                    self._abort(Outcome.FORBIDDEN)
                log.info("write failed (%r), retrying", exc)
                await self._clock.sleep(TRANSIENT_BACKOFF * self._failures_in_a_row)
            except SurfaceMessageGone:
                self._abort(Outcome.DELETED)
            except SurfaceForbidden:
                self._abort(Outcome.FORBIDDEN)
            except SurfaceError as exc:
                log.warning("giving up on this answer's messages: %r", exc)
                self._abort(Outcome.FORBIDDEN)
            else:
                self._budget.done()
                self._failures_in_a_row = 0
                self._result.writes += 1
                if self._result.first_visible_at is None and self._answer:
                    self._result.first_visible_at = self._clock.now()

    def _abort(self, outcome: Outcome) -> None:
        self._ended = True
        self._outcome = outcome
        if self._reader is not None:
            self._reader.cancel()
        raise _Abort

    def _desired(self, final: bool, placeholder: bool) -> _Desired:
        """What the messages should show now, one entry per message."""
        opts = self._options
        texts: list[str] = []
        if opts.show_reasoning and self._reasoning:
            texts += split_text(_quote("".join(self._reasoning)), self._max, length=self._length)
        body = self.text
        if final:
            body += self._status_suffix(body)
        elif not body:
            if self._reasoning and not opts.show_reasoning:
                body = THINKING_NOTE
            elif self._status:
                body = self._status
            elif self._shown or placeholder:
                body = self._placeholder or "…"
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
            notes.append("⏹ Stopped.")
        elif self._outcome is Outcome.FAILED and self._error is not None:
            notes.append(f"⚠️ {self._error.user_message}")
        elif not body:
            notes.append(EMPTY_ANSWER)
        suffix = "\n".join(notes)
        if body and suffix:
            return "\n\n" + suffix
        return suffix

    def _next_write(self, desired: _Desired, final: bool) -> _Call | None:
        """The one platform call that brings the messages closest to `desired`, or None."""
        for index, (text, buttons) in enumerate(desired):
            is_last = index == len(desired) - 1
            if index < len(self._shown):
                shown = self._shown[index]
                if shown.text == text and shown.buttons == buttons:
                    continue
                return self._edit_call(shown, text, buttons)
            if self._use_draft and is_last and not final:
                fresh = self._clock.now() - self._draft_at < DRAFT_REFRESH
                if self._draft_text == text and fresh:
                    return None
                return self._draft_call(text)
            return self._send_call(text, buttons)
        return None

    def _edit_call(self, shown: _Shown, text: str, buttons: tuple[Button, ...]) -> _Call:
        async def call() -> None:
            await self._surface.edit(shown.ref, text, buttons=buttons)
            shown.text, shown.buttons = text, buttons

        return call

    def _send_call(self, text: str, buttons: tuple[Button, ...]) -> _Call:
        async def call() -> None:
            ref = await self._surface.send(text, buttons=buttons)
            self._shown.append(_Shown(ref, text, buttons))
            self._draft_text = None
            if self._options.on_message is not None:
                self._options.on_message(ref)

        return call

    def _draft_call(self, text: str) -> _Call:
        async def call() -> None:
            await self._surface.draft(text)
            self._draft_text = text
            self._draft_at = self._clock.now()

        return call


class _Abort(Exception):
    """The surface is gone; stop writing."""


def _quote(reasoning: str) -> str:
    lines = reasoning.strip("\n").splitlines() or [""]
    return "💭 Thinking\n" + "\n".join(f"> {line}" if line else ">" for line in lines)
