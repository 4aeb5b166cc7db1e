"""The `async with` shape the emulators share: enter starts the server, exit stops it."""

from __future__ import annotations

from types import TracebackType
from typing import Self


class Served:
    """A server with `start()` and `stop()`, used as `async with Server(...) as server:`."""

    async def start(self) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
