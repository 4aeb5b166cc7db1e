"""The one rule for a write the platform forbids: explained once per room, for every platform.

A bot that lacks permissions in a chat (or was blocked there) would otherwise log, and try to tell
the user, on every answer. `ForbiddenNotices` is shared by all surfaces of one bot: the first
refusal in a room (`SurfaceLimits.room`) logs one warning and lets the adapter tell the user if it
can; later ones in that room stay quiet. It remembers a bounded number of rooms.
"""

from __future__ import annotations

import logging
from collections import OrderedDict

log = logging.getLogger(__name__)

REMEMBERED_ROOMS = 4096


class ForbiddenNotices:
    """The rooms whose refused writes were explained already (the most recent `size`)."""

    def __init__(self, size: int = REMEMBERED_ROOMS) -> None:
        self._size = size
        self._told: OrderedDict[str, None] = OrderedDict()

    def first(self, room: str, detail: str) -> bool:
        """Note a refused write in `room`: the first time, log a warning and return True (the
        adapter then tells the user if it can); after that, False."""
        if room in self._told:
            self._told.move_to_end(room)
            return False
        self._told[room] = None
        while len(self._told) > self._size:
            self._told.popitem(last=False)
        log.warning(
            "the platform refused a write in %s (%s); check the bot's permissions", room, detail
        )
        return True
