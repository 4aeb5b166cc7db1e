"""/status: what the bot uses here and how it is doing."""

from __future__ import annotations

from core.bridge.base import BridgeBase, apologizes, inflight_key, user_key, user_scope
from core.conversations import Origin
from core.results import (
    Refusal,
    Status,
)
from core.usage import start_of_day


class Reporting(BridgeBase):
    """What /status shows."""

    @apologizes
    async def status(self, origin: Origin) -> Status | Refusal:
        """The user's model, limits left, and this chat's conversation."""
        refusal = self.check_access(origin)
        if refusal is not None:
            return refusal
        rate = self.settings.user_rate
        decision = await self.limiter.peek(user_key(origin), rate)
        head = await self.store.get_head(origin.chat)
        idle = self.settings.bridge_conversation_idle_minutes * 60
        turns = 0
        conversation_tokens = 0
        if head is not None and (idle <= 0 or self.clock.wall() - head.updated_at <= idle):
            chain = await self.store.chain(head.turn_id, limit=10_000)
            turns = len(chain)
            conversation_tokens = await self.store.tokens_of_turns([t.id for t in chain])
        tokens_today = await self.store.tokens_since(
            user_scope(origin, per_chat=False), start_of_day(self.clock.wall())
        )
        busy = await self.locks.held(inflight_key(origin))
        return Status(
            model=await self.model_for(origin),
            image_model=self.settings.g4f_image_model,
            requests_left=decision.remaining,
            rate=str(rate),
            conversation_turns=turns,
            system_prompt=await self.system_prompt_for(origin),
            busy=busy,
            queue_waiting=self.gate.waiting,
            limits_degraded=self.limits_degraded,
            web_search=await self.web_search_for(origin),
            tokens_today=tokens_today,
            conversation_tokens=conversation_tokens,
        )
