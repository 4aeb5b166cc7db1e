"""Shared fixtures. Tests are hermetic: no developer .env, no inherited bridge variables."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import asyncpg
import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError

from core.bridge import Bridge
from core.client import G4FClient
from core.clock import Clock
from core.render.renderer import INDICATOR
from core.render.surface import MessageRef
from core.settings import Settings, SettingsSection
from core.store.base import ChatKey, StreamingAnswer, open_store
from tests.fakes.clock import ScaledClock
from tests.fakes.g4f_server import FakeG4F
from tests.fakes.surface import RecordingSurface
from tests.services import POSTGRES_SERVER, ServiceMissing, admin_sql, scratch_redis_db

SETTING_PREFIXES = ("G4F_", "DISCORD_", "TELEGRAM_", "BRIDGE_", "ALLOWED_", "ADMIN_")
# Read at import: `_hermetic` drops every G4F_ variable before a test runs.
REQUIRE_SERVICES = bool(os.environ.get("G4F_BRIDGE_REQUIRE_SERVICES"))


def service_missing(reason: str) -> NoReturn:
    """Skip a test that needs a missing service, or fail it when services are required (CI)."""
    if REQUIRE_SERVICES:
        pytest.fail(f"required service missing (G4F_BRIDGE_REQUIRE_SERVICES=1): {reason}")
    pytest.skip(reason)


async def until_ready(task: asyncio.Task[None], ready: asyncio.Event) -> None:
    """Wait for a started `serve()` to set `ready`; fail with its own error when it ends first."""
    waiter = asyncio.create_task(ready.wait())
    await asyncio.wait({task, waiter}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    if task.done():
        task.result()  # serve failed: show why
    assert ready.is_set(), "serve() did not become ready"


async def cancel_task(task: asyncio.Task[None]) -> None:
    """Cancel a running task and wait until it has ended."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


@pytest.fixture(autouse=True)
def _hermetic(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Drop bridge variables from the environment and run in an empty directory (no .env)."""
    for name in list(os.environ):
        if name.upper().startswith(SETTING_PREFIXES):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def discord_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    """serve() points discord.py at the emulator; this restores discord.py's defaults afterwards."""
    import discord

    monkeypatch.setattr(discord.http.Route, "BASE", discord.http.Route.BASE)
    monkeypatch.setattr(
        discord.gateway.DiscordWebSocket,
        "DEFAULT_GATEWAY",
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY,
    )


@pytest.fixture
async def g4f() -> AsyncIterator[FakeG4F]:
    """The emulated G4F server on a random loopback port."""
    async with FakeG4F() as server:
        yield server


MakeSettings = Callable[..., Settings]
S = TypeVar("S", bound=SettingsSection)


def split_section(section: type[S], overrides: dict[str, Any]) -> tuple[S, dict[str, Any]]:
    """An adapter's settings section (no .env) from the overrides that are its fields, and the
    rest (core's)."""
    own = {k: v for k, v in overrides.items() if k in section.model_fields}
    rest = {k: v for k, v in overrides.items() if k not in own}
    return section(_env_file=None, **own), rest  # type: ignore[call-arg]


@pytest.fixture
def make_settings(g4f: FakeG4F, tmp_path: Path) -> MakeSettings:
    """Settings pointing at the emulated server; keyword arguments override fields."""

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "g4f_base_url": g4f.base_url,
            "g4f_retries": 0,
            "bridge_store_url": f"sqlite:///{tmp_path / 'store.sqlite3'}",
        }
        values.update(overrides)
        return Settings(_env_file=None, **values)  # type: ignore[call-arg]

    return make


OpenBridge = Callable[..., Any]


@pytest.fixture
def clock() -> ScaledClock:
    """Real time, 20 times faster: a 1 s write interval passes in 50 ms (modules with other
    needs define their own `clock`)."""
    return ScaledClock(factor=20)


@pytest.fixture
async def open_bridge(make_settings: MakeSettings, clock: Clock) -> AsyncIterator[OpenBridge]:
    """Open Bridges on the emulated server (`open_bridge(clock=..., allowed_spaces=...,
    **settings)`); all are closed after the test."""
    opened: list[Bridge] = []

    async def open_(
        clock: Clock = clock, allowed_spaces: Iterable[str] = (), **overrides: Any
    ) -> Bridge:
        settings = make_settings(**overrides)
        store = open_store(settings.bridge_store_url)
        await store.open()
        bridge = Bridge(
            settings,
            client=G4FClient(settings, clock=clock),
            store=store,
            clock=clock,
            allowed_spaces=allowed_spaces,
        )
        opened.append(bridge)
        return bridge

    yield open_
    for bridge in opened:
        await bridge.close()


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A database of this test session's own on the machine's PostgreSQL; dropped at the end.

    Skipped with the reason when the server cannot be reached (failed in CI).
    """
    name = f"g4f_bridge_test_{secrets.token_hex(6)}"
    try:
        asyncio.run(admin_sql(f'CREATE DATABASE "{name}"'))
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        service_missing(f"no PostgreSQL at {POSTGRES_SERVER}: {type(exc).__name__}: {exc}")
    yield f"{POSTGRES_SERVER}/{name}"
    asyncio.run(admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
async def postgres_url(postgres_database: str) -> AsyncIterator[str]:
    """A store URL whose tables go in a fresh schema of their own; the schema is dropped after.

    One database for the session and a schema for each test keeps tests apart (ids start at 1)
    without the cost of a CREATE DATABASE each.
    """
    schema = f"t_{secrets.token_hex(6)}"
    conn = await asyncpg.connect(postgres_database, timeout=5)
    try:
        await conn.execute(f'CREATE SCHEMA "{schema}"')
        yield f"{postgres_database}?search_path={schema}"
    finally:
        await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await conn.close()


# The machine's Redis (database 15); each test gets its own key prefix, removed afterwards.
REDIS_URL = "redis://127.0.0.1:6379/15"


@dataclass(frozen=True)
class RedisDb:
    """A client of the machine's Redis and a key prefix no other test uses."""

    client: Redis
    prefix: str
    url: str = REDIS_URL


@pytest.fixture
async def redis_db() -> AsyncIterator[RedisDb]:
    """The machine's Redis for one test (skipped when absent, required in CI)."""
    client = Redis.from_url(REDIS_URL)
    try:
        await client.ping()
    except (RedisError, OSError) as exc:
        await client.aclose()
        service_missing(f"no Redis at {REDIS_URL}: {exc}")
    prefix = f"g4f-bridge-test-{secrets.token_hex(4)}:"
    yield RedisDb(client, prefix)
    keys = [k async for k in client.scan_iter(match=f"{prefix}*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


@pytest.fixture
async def redis_process_db() -> AsyncIterator[str]:
    """The URL of a whole Redis database of this test's own, for bridge processes (they keep
    their keys under the fixed prefix ``g4f-bridge:``); its keys are deleted afterwards."""
    try:
        async with scratch_redis_db() as url:
            yield url
    except ServiceMissing as exc:
        service_missing(str(exc))


async def leave_streaming(
    bridge: Bridge, surface: RecordingSurface, name: str, updated_at: float
) -> MessageRef:
    """What a replica streaming an answer leaves behind: a message "<name> text" with the
    streaming indicator, and the store's record of it (question `name`, user u1 in the chat
    test/room) last refreshed at `updated_at`. Returns the message."""
    ref = await surface.send(f"{name} text" + INDICATOR)
    question = await bridge.store.add_turn(
        parent_id=None, role="user", content=name, model=None, created_at=bridge.clock.wall()
    )
    await bridge.store.save_streaming(
        StreamingAnswer(
            ChatKey("test", "room"), "u1", question.id, "m",
            ((ref.id, f"{name} text" + INDICATOR),), updated_at,
        )
    )  # fmt: skip
    return ref
