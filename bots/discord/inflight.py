"""The adapter's running handlers, so that shutting down ends their answers instead of leaking them.

discord.py runs every event and command in a task of its own and does not wait for them when the
client closes. The adapter counts those tasks here; on shutdown it presses Stop on every answer
still streaming (each ends with its usual final edit, "⏹ Stopped."), waits a grace period for the
handlers to finish, and cancels what is left, all before the connection closes.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from core.bridge import Bridge
from core.conversations import Where

log = logging.getLogger(__name__)

STOP_POLL = 0.1  # seconds


class InFlight:
    """Handler tasks that are still running, and the answers they are streaming."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self._answers: dict[asyncio.Task[Any], Where] = {}

    def enter(self) -> None:
        """Count the current task (an event or command handler) until it ends."""
        task = asyncio.current_task()
        if task is not None and task not in self._tasks:
            self._tasks.add(task)
            task.add_done_callback(self._forget)

    def answering(self, where: Where) -> None:
        """The current handler streams (or is about to stream) an answer for `where`."""
        self.enter()
        task = asyncio.current_task()
        if task is not None:
            self._answers[task] = where

    def _forget(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        self._answers.pop(task, None)

    async def shutdown(self, bridge: Bridge, *, grace: float) -> None:
        """Stop every answer, give the handlers `grace` seconds to finish, cancel the rest.

        A handler may not have started its answer yet (waiting for the store or the in-flight
        lock), so answers are stopped again each `STOP_POLL` seconds while handlers still run.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        stopped: set[asyncio.Task[Any]] = set()
        while True:
            for task, where in list(self._answers.items()):
                if task not in stopped and bridge.stop_current(where):
                    stopped.add(task)
            tasks = [t for t in self._tasks if t is not asyncio.current_task()]
            left = deadline - loop.time()
            if not tasks or left <= 0:
                break
            await asyncio.wait(tasks, timeout=min(STOP_POLL, left))
        if tasks:
            log.info("Discord: cancelling %d handlers that did not finish in time", len(tasks))
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
