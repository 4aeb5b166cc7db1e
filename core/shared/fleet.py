"""Everything replicas share through one Redis, opened and closed together."""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass

from redis.asyncio import Redis

from core.clock import Clock
from core.limits_redis import RedisLink
from core.shared.answers import AnswerRegistry
from core.shared.bus import Bus
from core.shared.gate import SharedGate
from core.shared.writes import SharedWrites


@dataclass(frozen=True, slots=True)
class Fleet:
    """This replica's view of the fleet: its name, the shared write ledger, the fleet-wide
    concurrency cap and the registry of running answers."""

    replica: str
    writes: SharedWrites
    gate: SharedGate
    answers: AnswerRegistry
    bus: Bus

    async def aclose(self) -> None:
        await self.answers.aclose()
        await self.bus.aclose()


def replica_name() -> str:
    """A name for this process that no other replica has: host, pid and a random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


async def open_fleet(
    redis: Redis,
    link: RedisLink,
    clock: Clock,
    *,
    max_concurrency: int,
    lease: float,
    prefix: str = "g4f-bridge:",
    replica: str | None = None,
) -> Fleet:
    """Join the fleet on `redis` (never fails while Redis is down: each part then stands in
    per process). `lease`: seconds a replica that stopped refreshing still counts as alive."""
    replica = replica or replica_name()
    bus = Bus(redis, link, clock)
    writes = SharedWrites(redis, link, clock, prefix=prefix, replica=replica)
    gate = SharedGate(
        redis, link, bus, clock, max_concurrency, prefix=prefix, replica=replica, lease=lease
    )
    answers = AnswerRegistry(redis, link, bus, clock, prefix=prefix, replica=replica, lease=lease)
    await bus.start()
    await answers.start()
    return Fleet(replica=replica, writes=writes, gate=gate, answers=answers, bus=bus)
