"""Asking: a question, the same question again, the rest of a cut answer."""

from __future__ import annotations

from collections.abc import Sequence

from core.attachments import (
    Attachment,
    StoredImage,
    sort_attachments,
)
from core.bridge.answer import AnswerInProgress
from core.bridge.base import BridgeBase, apologizes, check_prompt, inflight_key, message_key
from core.continuation import CONTINUE_PROMPT, NOTHING_TO_CONTINUE
from core.conversations import History, Origin, build_history, find_parent
from core.logs import follows_answer
from core.render.surface import MessageSurface
from core.results import (
    Answered,
    Refusal,
    RefusalReason,
)
from core.store.base import Turn
from core.text import clean_text


class Asking(BridgeBase):
    """A question, the same question again, or the rest of a cut answer."""

    @follows_answer
    @apologizes
    async def ask(
        self,
        origin: Origin,
        prompt: str,
        surface: MessageSurface,
        *,
        reply_to: str | None = None,
        model: str | None = None,
        attachments: Sequence[Attachment] = (),
        web_search: bool | None = None,
    ) -> Answered | Refusal:
        """Answer `prompt` on `surface`, continuing the conversation the rules pick;
        `attachments` (images, text files) go with it (core.attachments); `web_search`: let
        the model search the web (None: this chat's setting, see `set_web_search`)."""
        prompt = clean_text(prompt).strip()
        refusal = check_prompt(prompt, "Please write a question after the command.")
        # --- issue 12: attachments ---
        files = sort_attachments(attachments, max_image_bytes=self.settings.g4f_image_max_bytes)
        if attachments and not (files.images or files.texts):
            refusal = refusal or Refusal(RefusalReason.UNSUPPORTED, " ".join(files.refused))
        if refusal is None and files.texts:
            prompt = files.prompt_with_files(prompt)
        # --- end issue 12 ---
        if refusal is None:
            refusal = await self._admit(origin)
        if refusal is not None:
            return refusal
        if reply_to is not None:
            await self._linked(origin, reply_to)
        parent = await find_parent(
            self.store,
            origin,
            reply_to=reply_to,
            now=self.clock.wall(),
            idle_seconds=self.settings.bridge_conversation_idle_minutes * 60,
        )
        return await self._answer(
            origin, surface, parent, prompt, model, user_turn=None,
            images=files.images, notes=files.refused, web_search=web_search,
        )  # fmt: skip

    @follows_answer
    @apologizes
    async def regenerate(
        self, origin: Origin, message_id: str, surface: MessageSurface
    ) -> Answered | Refusal:
        """Answer the question behind an earlier answer again, as a new branch."""
        refusal = await self._admit(origin)
        if refusal is not None:
            return refusal
        turn_id = await self._turn_shown_in(origin, message_id)
        answer = await self.store.get_turn(turn_id) if turn_id is not None else None
        question = (
            await self.store.get_turn(answer.parent_id)
            if answer is not None and answer.parent_id is not None
            else None
        )
        if answer is None or question is None or question.role != "user":
            return Refusal(RefusalReason.NOT_FOUND, "I no longer know what that answer replied to.")
        return await self._answer(
            origin, surface, question.parent_id, question.content, None, user_turn=question
        )

    async def _turn_shown_in(self, origin: Origin, message_id: str) -> int | None:
        """The stored answer a message shows."""
        await self._linked(origin, message_id)
        return await self.store.turn_for_message(origin.message(message_id))

    async def _linked(self, origin: Origin, message_id: str) -> None:
        """Return once `message_id` is linked to its stored answer, if that answer's final
        writes are under way here (a reply or a press on its last message, made at once)."""
        finishing = self._running.get(message_key(origin, message_id))
        if finishing is not None and finishing.renderer.ended:
            await finishing.settled.wait()

    @follows_answer
    @apologizes
    async def continue_answer(
        self, origin: Origin, surface: MessageSurface, *, message_id: str | None = None
    ) -> Answered | Refusal:
        """Ask for the rest of an answer cut at the length limit: a new answer replying to it
        (the answer showing in `message_id`, else this chat's latest answer)."""
        refusal = await self._admit(origin)
        if refusal is not None:
            return refusal
        if message_id is not None:
            turn_id = await self._turn_shown_in(origin, message_id)
        else:
            head = await self.store.get_head(origin.chat)
            turn_id = head.turn_id if head is not None else None
        answer = await self.store.get_turn(turn_id) if turn_id is not None else None
        if answer is None or answer.role != "assistant":
            return Refusal(RefusalReason.NOT_FOUND, NOTHING_TO_CONTINUE)
        return await self._answer(
            origin, surface, answer.id, CONTINUE_PROMPT, answer.model, user_turn=None
        )

    async def _answer(
        self,
        origin: Origin,
        surface: MessageSurface,
        parent: int | None,
        prompt: str,
        model: str | None,
        *,
        user_turn: Turn | None,
        images: Sequence[StoredImage] = (),
        notes: Sequence[str] = (),
        web_search: bool | None = None,
    ) -> Answered | Refusal:
        lease = await self.locks.try_acquire(
            inflight_key(origin), ttl=self.settings.g4f_timeout_total + 60
        )
        if lease is None:
            return Refusal(
                RefusalReason.BUSY,
                "You already have an answer coming in this chat. "
                "Wait for it to finish or press Stop.",
            )
        try:
            chosen = model or await self.model_for(origin)
            if user_turn is not None:  # a question asked again brings its images again
                kept = await self.store.images_of([user_turn.id])
                images = [StoredImage(*image) for image in kept.get(user_turn.id, [])]
            history = await self._history(origin, parent, prompt, images)
            if user_turn is None:
                user_turn = await self.store.add_turn(
                    parent_id=parent,
                    role="user",
                    content=prompt,
                    model=None,
                    created_at=self.clock.wall(),
                )
                if images:  # stored once, with the question
                    await self.store.add_images(
                        user_turn.id, [(i.content_type, i.data) for i in images]
                    )
            answer = AnswerInProgress(self, origin, user_turn, lease, chosen)
            answer.notes = list(notes)
            answer.web_search = (
                await self.web_search_for(origin) if web_search is None else web_search
            )
            return await answer.stream(history, surface)
        finally:
            await self.locks.release(lease)

    async def _history(
        self, origin: Origin, parent: int | None, prompt: str, images: Sequence[StoredImage] = ()
    ) -> History:
        s = self.settings
        # One turn more than fits tells whether anything was left out.
        limit = s.bridge_history_max_messages + 1
        earlier = await self.store.chain(parent, limit=limit) if parent else []
        kept = await self.store.images_of([t.id for t in earlier if t.role == "user"])
        return build_history(
            await self.system_prompt_for(origin),
            earlier,
            prompt,
            max_messages=s.bridge_history_max_messages,
            max_chars=s.bridge_history_max_chars,
            images={turn: [StoredImage(*i) for i in found] for turn, found in kept.items()},
            new_images=images,
        )
