"""The adapter's running handlers, so that shutting down ends their answers instead of leaking them.

discord.py runs every event and command in a task of its own and does not wait for them when the
client closes. The adapter counts those tasks here; on shutdown it presses Stop on every answer
still streaming (each ends with its usual final edit, "⏹ Stopped."), waits a grace period for the
handlers to finish, and cancels what is left, all before the connection closes.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

from core.bridge import Bridge
from core.conversations import Where
from core.render.surface import MessageRef

log = logging.getLogger(__name__)


class SentMessages(Protocol):
    """A surface that remembers the messages it sent."""

    @property
    def sent(self) -> list[MessageRef]: ...


class InFlight:
    """Handler tasks that are still running, and the answers they are streaming."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self._answers: dict[asyncio.Task[Any], tuple[Where, SentMessages]] = {}

    def __len__(self) -> int:
        return len(self._tasks)

    def enter(self) -> None:
        """Count the current task (an event or command handler) until it ends."""
        task = asyncio.current_task()
        if task is not None and task not in self._tasks:
            self._tasks.add(task)
            task.add_done_callback(self._forget)

    def answering(self, where: Where, surface: SentMessages) -> None:
        """The current handler streams an answer for `where` onto `surface`."""
        self.enter()
        task = asyncio.current_task()
        if task is not None:
            self._answers[task] = (where, surface)

    def _forget(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        self._answers.pop(task, None)

    async def shutdown(self, bridge: Bridge, *, grace: float) -> None:
        """Stop every answer, give the handlers `grace` seconds to finish, cancel the rest."""
        for where, surface in list(self._answers.values()):
            for ref in surface.sent:
                bridge.stop(where, ref.id)
        tasks = [t for t in self._tasks if t is not asyncio.current_task()]
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=grace)
        if pending:
            log.info("Discord: cancelling %d handlers that did not finish in time", len(pending))
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
