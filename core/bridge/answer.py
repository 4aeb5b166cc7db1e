"""One answer on its way: it streams, shows, records itself in case the process dies, and is
stored."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import replace

from core.api_models import ChatMessage, StreamDelta
from core.attachments import ImagesNotSupported
from core.bridge.base import (
    INTERRUPTED_NOTE,
    QUEUE_LINE,
    RECORD_REFRESH,
    REGENERATE_BUTTON,
    TRIMMED_NOTICE,
    BridgeBase,
    inflight_key,
    message_key,
    user_scope,
)
from core.clock import wait_for_event
from core.continuation import mark_cut
from core.conversations import History, Origin
from core.errors import (
    ModelNotOffered,
    ModelUnavailable,
    RequestRejected,
)
from core.limits import Lease
from core.render.renderer import (
    Outcome,
    RenderOptions,
    StreamRenderer,
)
from core.render.surface import (
    MessageRef,
    MessageSurface,
)
from core.results import Answered
from core.sources import SourceCollector, sources_line
from core.store.base import StreamingAnswer, Turn
from core.usage import AnswerTally

log = logging.getLogger(__name__)


class AnswerInProgress:
    """One answer on its way: what it continues, where it shows, and what it became.

    `stream` renders it; the renderer calls back `shown` for each message it sends (so Stop
    finds the answer by the message) and `ended` once the stream is over, before the final
    write: the answer is stored and the asker's in-flight lease released before the user sees
    the whole answer, so a reply to it, Regenerate, or their next question work at once.
    """

    def __init__(
        self, bridge: BridgeBase, origin: Origin, user_turn: Turn, lease: Lease, model: str
    ) -> None:
        self.bridge = bridge
        self.origin = origin
        self.user_turn = user_turn
        self.lease = lease
        self.model = model  # updated when a fallback model answers
        self.messages: list[MessageRef] = []
        self.turn_id: int | None = None
        self.linked = 0  # how many of the messages are linked to the stored turn
        self.keys = [inflight_key(origin)]
        self.renderer: StreamRenderer
        self._showing: list[tuple[MessageRef, str]] | None = None  # to record, latest first
        self._recorder: asyncio.Task[None] | None = None
        self._recorded = False
        self._answered = False
        self._news = asyncio.Event()
        self.options: RenderOptions
        self.buttons = True  # the surface shows buttons (else /continue stands in)
        self.notes: list[str] = []  # issue 12: lines after the answer (attachments not read)
        self.web_search = False  # issue 12: g4f searches the web; its sources follow the answer
        self.sources = SourceCollector()
        self.tally = AnswerTally(())  # issue 12: finish reason and tokens, set in `stream`
        self.settled = asyncio.Event()  # every message it shows is linked to its stored turn

    async def stream(self, history: History, surface: MessageSurface) -> Answered:
        bridge = self.bridge
        self.tally = AnswerTally(history.messages)
        self.buttons = surface.limits.buttons
        self.options = RenderOptions(
            show_reasoning=bridge.settings.bridge_show_reasoning,
            final_buttons=(REGENERATE_BUTTON,),
            extra_lines=[*self.notes, *([TRIMMED_NOTICE] if history.trimmed else [])],
            on_message=self.shown,
            on_shown=self.showing,
            on_ended=self.ended,
        )
        self.renderer = StreamRenderer(
            self._deltas(history.messages),
            surface,
            scheduler=bridge.writes,
            clock=bridge.clock,
            options=self.options,
        )
        bridge._track(self.keys[0], self)
        bridge._all_ended.clear()
        if bridge._closing:  # shut down while this answer was being prepared
            self.renderer.stop(INTERRUPTED_NOTE)
        try:
            result = await self.renderer.run()
            # Linked before it leaves the running answers: a Regenerate pressed on its last
            # message at once finds the answer here, waits for `settled`, then finds its turn.
            await self._link_late_messages()
        finally:
            self.settled.set()
            for key in self.keys:
                bridge._untrack(key)
            if not bridge._running:
                bridge._all_ended.set()
            await self._forget_streaming()
        bridge.metrics.answer_finished(self.origin.platform, result)
        return Answered(
            outcome=result.outcome,
            text=result.text,
            model=self.model,
            messages=tuple(result.messages),
            turn_id=self.turn_id,
            history_trimmed=history.trimmed,
            error=result.error.user_message if result.error else None,
            finish_reason=self.tally.finish_reason,
            tokens=self.tally.tokens() if self.turn_id is not None else None,
        )

    def shown(self, ref: MessageRef) -> None:
        self.messages.append(ref)
        self.keys.append(message_key(self.origin, ref.id))
        self.bridge._track(self.keys[-1], self)

    # --- what the messages show, in case this process dies mid-answer -----------------------
    def showing(self, shown: list[tuple[MessageRef, str]], answered: bool) -> None:
        """The messages show `shown` now: record it (in the background, latest wins)."""
        self._showing = shown
        self._answered = answered
        self._news.set()
        if self._recorder is None:
            self._recorder = asyncio.create_task(self._record())

    async def _record(self) -> None:
        """Save the latest of what the messages show; refresh the record now and then while
        nothing changes, so that other processes sharing the store see the answer is alive."""
        store, clock = self.bridge.store, self.bridge.clock
        latest: list[tuple[MessageRef, str]] = []
        while True:
            latest, self._showing = self._showing or latest, None
            self._news.clear()
            try:
                await store.save_streaming(self._streaming(latest))
                self._recorded = True
            except Exception:  # a lost record only costs the recovery of this answer
                log.warning("could not record a streaming answer", exc_info=True)
            await wait_for_event(clock, self._news, RECORD_REFRESH)

    def _streaming(self, shown: list[tuple[MessageRef, str]]) -> StreamingAnswer:
        return StreamingAnswer(
            self.origin.chat,
            self.origin.user_id,
            self.user_turn.id,
            self.model,
            tuple((ref.id, text) for ref, text in shown),
            self.bridge.clock.wall(),
            self._answered,
        )

    async def _forget_streaming(self) -> None:
        """The final write is done (or the messages are gone): nothing left to recover."""
        self._showing = None
        if self._recorder is not None:
            self._recorder.cancel()
            await asyncio.gather(self._recorder, return_exceptions=True)
        if self._recorded:
            key = self._streaming([]).key
            try:
                await self.bridge.store.drop_streaming(key)
            except Exception:
                log.warning("could not drop a streaming record", exc_info=True)

    async def ended(self, outcome: Outcome, text: str) -> None:
        bridge = self.bridge
        self.turn_id = await bridge._remember(
            self.origin, self.user_turn, text, self.model, self.messages
        )
        self.linked = len(self.messages)
        await bridge.locks.release(self.lease)
        # issue 12: a cut answer says so and offers Continue; tokens stored with the turn.
        if outcome is Outcome.DONE and self.tally.cut_by_length:
            mark_cut(self.options, buttons=self.buttons)
        if (links := sources_line(self.sources.sources)) is not None:
            self.options.extra_lines.insert(0, links)
        tokens = self.tally.tokens()
        if tokens.estimated:
            bridge.metrics.tokens_estimated(tokens.prompt, tokens.completion)
        if self.turn_id is not None:
            await bridge.store.record_tokens(
                self.turn_id,
                user_scope=user_scope(self.origin, per_chat=False),
                prompt_tokens=tokens.prompt,
                completion_tokens=tokens.completion,
                estimated=tokens.estimated,
                created_at=bridge.clock.wall(),
            )

    async def _deltas(self, messages: list[ChatMessage]) -> AsyncIterator[StreamDelta]:
        """Wait for a slot under the concurrency cap (showing the position), then stream."""
        bridge = self.bridge

        async def on_position(position: int) -> None:
            self.renderer.set_status(QUEUE_LINE.format(position=position))

        async with bridge.gate.slot(on_position=on_position):
            self.renderer.set_status(None)
            stream = bridge.client.chat_stream(
                messages, model=self.model, web_search=True if self.web_search else None
            )
            try:
                async for delta in stream:
                    self.model = stream.model
                    self.tally.observe(delta)
                    if self.web_search and delta.content:  # its source lines go after it
                        delta = replace(delta, content=self.sources.feed(delta.content))
                    yield delta
                if self.web_search and (rest := self.sources.flush()):
                    yield StreamDelta(content=rest)
            except (ModelUnavailable, RequestRejected) as exc:
                # issue 12: a model that cannot see images fails like a broken provider
                if isinstance(exc, ModelNotOffered) or not any(m.has_images for m in messages):
                    raise
                raise ImagesNotSupported(self.model, detail=str(exc)) from exc
            finally:
                await stream.aclose()

    async def _link_late_messages(self) -> None:
        """Link the parts that the final write added after the turn was stored."""
        if self.turn_id is not None:
            for ref in self.messages[self.linked :]:
                await self.bridge.store.link_message(self.origin.message(ref.id), self.turn_id)
