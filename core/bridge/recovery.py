"""After a crash: answers a dead process left streaming are ended in place."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from core.bridge.base import (
    CRASH_NOTE,
    JUST_STARTED,
    REGENERATE_BUTTON,
    STALE_AFTER,
    BridgeBase,
    record_keys,
)
from core.conversations import Origin
from core.limits_redis import RedisDown
from core.render.renderer import (
    INDICATOR,
    utf16_length,
)
from core.render.split import join_parts
from core.render.surface import (
    MessageRef,
    MessageSurface,
)
from core.store.base import StreamingAnswer

log = logging.getLogger(__name__)


class Recovering(BridgeBase):
    """Answers a process that died left streaming, ended in place."""

    async def end_interrupted(
        self, platform: str, surface_for: Callable[[str], MessageSurface | None]
    ) -> int:
        """End in place the answers a process that died left streaming on `platform`: each
        keeps its text, its marker and Stop give way to "Interrupted: ask again." and
        Regenerate, and the question and the partial answer stay in the conversation, so a
        reply to it continues. `surface_for(chat_id)` is where a chat's messages are edited
        (None: they cannot be). Adapters call it once connected; returns how many it ended."""
        self._surface_for[platform] = surface_for
        if self.limits_health is not None and platform not in self._sweeps:
            # Replicas share the store: an answer another one streams is not ours to end. Only
            # answers no live replica holds are, and they are looked for now and then.
            self._sweeps[platform] = asyncio.create_task(self._sweep(platform, surface_for))
            return 0
        return await self._end_left_streaming(platform, surface_for, shared=False)

    async def _sweep(
        self, platform: str, surface_for: Callable[[str], MessageSurface | None]
    ) -> None:
        every = self.settings.bridge_replica_lease / 3 if self.answers else STALE_AFTER / 2
        while True:
            await self._end_left_streaming(platform, surface_for, shared=True)
            await self.clock.sleep(every)

    async def _abandoned(
        self, record: StreamingAnswer, *, min_age: float, dead: str | None = None
    ) -> bool:
        """Whether no process streams the recorded answer any more. With the running answers
        in Redis: no live replica holds its keys (`dead`: one known to be gone, its leases not
        yet run out) and its record is `min_age` old. Without them, or while Redis is down:
        its record is `STALE_AFTER` old."""
        keys = record_keys(record)
        if any(key in self._running for key in keys):
            return False
        age = self.clock.wall() - record.updated_at
        if self.answers is not None:
            try:
                return age >= min_age and not await self.answers.alive(keys, dead=dead)
            except RedisDown:
                pass
        return age >= STALE_AFTER

    async def _end_abandoned(
        self, origin: Origin, message_id: str, *, dead: str | None = None
    ) -> bool:
        """End the answer showing in `message_id` now if no live replica streams it."""
        surface_for = self._surface_for.get(origin.platform)
        if surface_for is None:
            return False
        try:
            recorded = await self.store.streaming_answers(origin.platform)
        except Exception:
            log.warning("could not read the answers left streaming", exc_info=True)
            return False
        for record in recorded:
            shows = any(shown_id == message_id for shown_id, _ in record.messages)
            # A record this young may be an answer its replica has not registered yet.
            min_age = 0.0 if dead else JUST_STARTED
            here = record.chat.chat_id == origin.chat_id and shows
            if here and await self._abandoned(record, min_age=min_age, dead=dead):
                await self._end_recorded([record], surface_for)
                return True
        return False

    async def _end_left_streaming(
        self,
        platform: str,
        surface_for: Callable[[str], MessageSurface | None],
        *,
        shared: bool,
    ) -> int:
        try:
            recorded = await self.store.streaming_answers(platform)
        except Exception:
            log.warning("could not read the answers left streaming", exc_info=True)
            return 0
        lease = self.settings.bridge_replica_lease
        answers = [a for a in recorded if not shared or await self._abandoned(a, min_age=lease)]
        await self._end_recorded(answers, surface_for)
        if answers:
            log.info("ended %d answers a previous run left streaming", len(answers))
        return len(answers)

    async def _end_recorded(
        self,
        answers: list[StreamingAnswer],
        surface_for: Callable[[str], MessageSurface | None],
    ) -> None:
        for answer in answers:
            # Replicas sweeping at once: one of them ends each answer.
            lease = await self.locks.try_acquire(f"ending:{answer.key}", ttl=60.0)
            if lease is None:
                continue
            try:
                await self._end_interrupted(answer, surface_for(answer.chat.chat_id))
            except Exception:
                log.warning("could not end an interrupted answer", exc_info=True)
            finally:
                with contextlib.suppress(Exception):
                    await self.store.drop_streaming(answer.key)

    async def _end_interrupted(
        self, answer: StreamingAnswer, surface: MessageSurface | None
    ) -> None:
        chat = answer.chat
        origin = Origin(chat.platform, chat.chat_id, answer.user_id)
        shown = [(MessageRef(message_id), text) for message_id, text in answer.messages]
        texts = [text.removesuffix(INDICATOR) for _, text in shown]
        if (
            answer.answered
            and await self.store.turn_for_message(origin.message(shown[-1][0].id)) is None
        ):
            question = await self.store.get_turn(answer.question_id)
            if question is not None:
                refs = [ref for ref, _ in shown]
                await self._remember(origin, question, join_parts(texts), answer.model, refs)
        if surface is None:
            return
        last_ref, _ = shown[-1]
        body = texts[-1] if answer.answered else ""
        final = f"{body}\n\n{CRASH_NOTE}" if body.strip() else CRASH_NOTE
        limits = surface.limits
        length = utf16_length if limits.measure == "utf16" else len
        buttons = (REGENERATE_BUTTON,)
        if length(final) > limits.max_length:  # no room for the note: it goes below
            await self.writes.write_once(
                limits.room, limits.writes.edit, lambda: surface.edit(last_ref, body)
            )
            await self.writes.write_once(
                limits.room, limits.writes.send, lambda: surface.send(CRASH_NOTE, buttons=buttons)
            )
            return
        await self.writes.write_once(
            limits.room, limits.writes.edit, lambda: surface.edit(last_ref, final, buttons=buttons)
        )
