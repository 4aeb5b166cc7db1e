"""Stop: the answer ends where it is, on whichever replica streams it."""

from __future__ import annotations

from core.bridge.base import inflight_key, message_key
from core.bridge.recovery import Recovering
from core.conversations import Where
from core.limits_redis import RedisDown
from core.results import StopResult


class Stopping(Recovering):
    """Stop, on whichever replica streams the answer."""

    async def stop(self, where: Where, message_id: str) -> StopResult:
        """Stop the answer showing in `message_id` (its asker or an admin may), wherever it
        streams: here, or on another replica sharing Redis."""
        key = message_key(where, message_id)
        answer = self._running.get(key)
        if answer is None:
            return await self._stop_elsewhere(where, key, message_id)
        if answer.renderer.ended:  # a late press: its final write is under way
            return StopResult.FINISHED
        if answer.where.user_id != where.user_id and not self.is_admin(where):
            return StopResult.NOT_YOURS
        answer.renderer.stop()
        return StopResult.STOPPED

    async def stop_current(self, where: Where) -> bool:
        """Stop the user's own answer streaming in this chat (e.g. a /stop command), on this
        replica or another."""
        if self.stop_current_here(where):
            return True
        found = await self._stop_elsewhere(where, inflight_key(where), None)
        return found is StopResult.STOPPED

    def stop_current_here(self, where: Where) -> bool:
        """Stop the user's own answer in this chat if it streams in this process."""
        answer = self._running.get(inflight_key(where))
        if answer is None:
            return False
        answer.renderer.stop()
        return True

    async def _stop_elsewhere(self, where: Where, key: str, message_id: str | None) -> StopResult:
        """Send Stop to the replica streaming the answer found by `key`; or, when no live
        replica streams the answer showing in `message_id`, end it in place now."""
        if self.answers is None:
            return StopResult.FINISHED
        try:
            owner = await self.answers.owner(key)
        except RedisDown:
            return StopResult.FINISHED
        if owner is None:
            if message_id is not None and await self._end_abandoned(where, message_id):
                return StopResult.STOPPED
            return StopResult.FINISHED
        if owner.user_id != where.user_id and not self.is_admin(where):
            return StopResult.NOT_YOURS
        if owner.replica == self.answers.replica:  # ours, and it ended meanwhile
            return StopResult.FINISHED
        sent = await self.answers.stop(owner, key)
        return StopResult.STOPPED if sent else StopResult.FINISHED
