"""The adapter's running handlers, so that shutting down ends their answers instead of leaking them.

discord.py runs every event and command in a task of its own and does not wait for them when the
client closes. The adapter counts those tasks here; on shutdown the bridge stops every answer
(each ends with its usual final edit, "⏹ Stopped.", and answers not started yet are refused),
the handlers get a grace period to finish, and what is left is cancelled, all before the
connection closes.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from core.bridge import Bridge

log = logging.getLogger(__name__)


class InFlight:
    """Handler tasks that are still running."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def track_current(self) -> None:
        """Count the current task (an event or command handler); it is dropped when it ends."""
        task = asyncio.current_task()
        if task is not None and task not in self._tasks:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def shutdown(self, bridge: Bridge, *, grace: float) -> None:
        """Stop every answer, give the handlers `grace` seconds to finish, cancel the rest."""
        bridge.shutdown()
        tasks = [t for t in self._tasks if t is not asyncio.current_task()]
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=grace)
            if late:
                log.info("Discord: cancelling %d handlers that did not finish in time", len(late))
            for task in late:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
