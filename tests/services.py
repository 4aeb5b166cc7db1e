"""The machine's Redis and PostgreSQL, borrowed by tests and benchmarks and given back clean.

`scratch_redis_db` claims a whole Redis database that nobody uses (for bridge *processes*, which
keep their keys under the fixed prefix ``g4f-bridge:``; tests in this process use a random prefix
in db 15 instead). `scratch_postgres` makes a database of its own and drops it afterwards.
Both raise `ServiceMissing` (with the reason) when the server cannot be reached.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
# The machine's PostgreSQL (trust auth); tests make their own database and drop it.
POSTGRES_SERVER = "postgresql://postgres@127.0.0.1:5432"
CLAIM_KEY = "g4f-bridge-test:claimed"  # marks a Redis database as taken by one test or bench
CLAIM_SECONDS = 900  # a claim left by a killed run expires (its leftover keys keep the db taken)
BRIDGE_KEYS = "g4f-bridge:*"  # what bridge processes write (core.limits_redis's prefix)
CLAIMABLE_DBS = range(14, 0, -1)  # db 0 is everyone's default, db 15 the in-process tests'


class ServiceMissing(Exception):
    """Redis or PostgreSQL cannot be reached (or has no room for another claim)."""


async def admin_sql(sql: str) -> None:
    """Run one statement on the server's `postgres` database."""
    conn = await asyncpg.connect(f"{POSTGRES_SERVER}/postgres", timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@asynccontextmanager
async def scratch_postgres() -> AsyncIterator[str]:
    """The URL of a new, empty database on the machine's PostgreSQL; dropped afterwards."""
    name = f"g4f_bridge_test_{secrets.token_hex(6)}"
    try:
        await admin_sql(f'CREATE DATABASE "{name}"')
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        raise ServiceMissing(
            f"no PostgreSQL at {POSTGRES_SERVER}: {type(exc).__name__}: {exc}"
        ) from exc
    try:
        yield f"{POSTGRES_SERVER}/{name}"
    finally:
        await admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@asynccontextmanager
async def scratch_redis_db() -> AsyncIterator[str]:
    """The URL (redis://127.0.0.1:6379/N) of a Redis database that held no key when claimed;
    the bridge's keys and the claim are deleted afterwards.

    The claim is a key set with NX, so two runs never take the same database, and a database
    holding anything else (someone else's keys) is never taken.
    """
    token = secrets.token_hex(8)
    claimed: tuple[int, Redis] | None = None
    try:
        for db in CLAIMABLE_DBS:
            client = Redis(host=REDIS_HOST, port=REDIS_PORT, db=db)
            if await client.set(CLAIM_KEY, token, nx=True, ex=CLAIM_SECONDS):
                if await client.dbsize() == 1:
                    claimed = (db, client)
                    break
                await client.delete(CLAIM_KEY)  # in use by something else: leave it be
            await client.aclose()
    except (RedisConnectionError, OSError) as exc:
        raise ServiceMissing(f"no Redis at {REDIS_HOST}:{REDIS_PORT}: {exc}") from exc
    if claimed is None:
        raise ServiceMissing(f"no empty Redis database among {list(CLAIMABLE_DBS)} to claim")
    db, client = claimed
    try:
        yield f"redis://{REDIS_HOST}:{REDIS_PORT}/{db}"
    finally:
        try:
            keys = [key async for key in client.scan_iter(match=BRIDGE_KEYS, count=1000)]
            for start in range(0, len(keys), 500):
                await client.delete(*keys[start : start + 500])
            if await client.get(CLAIM_KEY) == token.encode():
                await client.delete(CLAIM_KEY)
        except RedisError:
            pass  # Redis went away: the claim expires on its own
        finally:
            await client.aclose()
