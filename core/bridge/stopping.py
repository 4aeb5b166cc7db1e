"""Stop: the answer ends where it is, on whichever replica streams it."""

from __future__ import annotations

from core.bridge.base import inflight_key, message_key
from core.bridge.recovery import Recovering
from core.conversations import Origin
from core.limits_redis import RedisDown
from core.results import StopResult
from core.shared.answers import Delivery


class Stopping(Recovering):
    """Stop, on whichever replica streams the answer."""

    async def stop(self, origin: Origin, message_id: str) -> StopResult:
        """Stop the answer showing in `message_id` (its asker or an admin may), wherever it
        streams: here, or on another replica sharing Redis."""
        key = message_key(origin, message_id)
        answer = self._running.get(key)
        if answer is None:
            return await self._stop_elsewhere(origin, key, message_id)
        if answer.renderer.ended:  # a late press: its final write is under way
            return StopResult.FINISHED
        if answer.origin.user_id != origin.user_id and not self.is_admin(origin):
            return StopResult.NOT_YOURS
        answer.renderer.stop()
        return StopResult.STOPPED

    async def stop_current(self, origin: Origin) -> bool:
        """Stop the user's own answer streaming in this chat (e.g. a /stop command), on this
        replica or another."""
        if self.stop_current_here(origin):
            return True
        found = await self._stop_elsewhere(origin, inflight_key(origin), None)
        return found is StopResult.STOPPED

    def stop_current_here(self, origin: Origin) -> bool:
        """Stop the user's own answer in this chat if it streams in this process."""
        answer = self._running.get(inflight_key(origin))
        if answer is None:
            return False
        answer.renderer.stop()
        return True

    async def _stop_elsewhere(self, origin: Origin, key: str, message_id: str | None) -> StopResult:
        """Send Stop to the replica streaming the answer found by `key`; or, when no live
        replica streams the answer showing in `message_id`, end it in place now."""
        if self.answers is None:
            return StopResult.FINISHED
        try:
            owner = await self.answers.owner(key)
        except RedisDown:
            return StopResult.FINISHED
        if owner is None:
            if message_id is not None and await self._end_abandoned(origin, message_id):
                return StopResult.STOPPED
            return StopResult.FINISHED
        if owner.user_id != origin.user_id and not self.is_admin(origin):
            return StopResult.NOT_YOURS
        if owner.replica == self.answers.replica:  # ours, and it ended meanwhile
            return StopResult.FINISHED
        delivery = await self.answers.stop(owner, key)
        if delivery is Delivery.HEARD:
            return StopResult.STOPPED
        if delivery is Delivery.GONE and message_id is not None:
            # Its replica died (its leases still run): end the answer in place at once.
            ended = await self._end_abandoned(origin, message_id, dead=owner.replica)
            return StopResult.STOPPED if ended else StopResult.FINISHED
        return StopResult.FINISHED
