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
from core.shared.bus import Bus, Membership
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
    member = Membership(redis, link, bus, clock, prefix, replica, lease)
    answers = AnswerRegistry(member)
    fleet = Fleet(replica, SharedWrites(member), SharedGate(member, max_concurrency), answers, bus)
    await bus.start()
    await answers.start()
    return fleet
