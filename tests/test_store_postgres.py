"""The PostgreSQL store's own behaviour: URLs, versioned migrations, the pool, and real faults.

Every test runs against the machine's PostgreSQL in a fresh schema (see `postgres_url` in
conftest.py); the faults are real: a port nobody listens on, a database that does not exist, the
server ending the store's connections, a read-only session, a table locked by another client.
What every store does is in test_store_contract.py.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import asyncpg
import pytest

from core.errors import (
    StoreBusy,
    StoreDiskError,
    StoreOpenFailed,
    StoreReadOnly,
    StoreUnavailable,
    StoreUnreachable,
)
from core.settings import SettingsError, load_settings
from core.store.base import StoreError, open_store
from core.store.postgres import (
    MIGRATIONS,
    SCHEMA_VERSION,
    PostgresConversationStore,
    apply_migrations,
    parse_postgres_url,
    redacted_url,
    schema_version,
    unavailable_error,
)
from tests.fakes.redis_server import free_port
from tests.test_store_contract import T0, check_version_1_data_is_kept

pytestmark = pytest.mark.postgres

PASSWORD = "hunter2-pg-secret"


def with_password(url: str) -> str:
    """`url` with a password added (the server trusts loopback, so any password logs in)."""
    parts = urlsplit(url)
    netloc = parts.netloc.replace("postgres@", f"postgres:{PASSWORD}@", 1)
    return parts._replace(netloc=netloc).geturl()


@pytest.fixture
async def conn(postgres_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A plain connection into the test's schema, to look at or tamper with the tables."""
    c = await asyncpg.connect(postgres_url)
    yield c
    await c.close()


@pytest.fixture
async def store(postgres_url: str) -> AsyncIterator[PostgresConversationStore]:
    s = PostgresConversationStore(with_password(postgres_url))
    await s.open()
    yield s
    await s.close()


def assert_no_password(*texts: object) -> None:
    for text in texts:
        assert PASSWORD not in str(text), text


# --- URLs ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url", ["postgresql://bridge:pw@db:5432/bridge", "postgres://db/bridge", "POSTGRESQL:///x"]
)
def test_both_schemes_open_a_postgres_store(url: str) -> None:
    assert isinstance(open_store(url), PostgresConversationStore)


def test_the_password_stays_out_of_reprs_and_display() -> None:
    url = f"postgresql://bridge:{PASSWORD}@db.internal:6432/bridge?sslmode=require"
    s = open_store(url)
    assert isinstance(s, PostgresConversationStore)
    assert s.url == "postgresql://bridge@db.internal:6432/bridge"
    assert redacted_url(f"postgres://:{PASSWORD}@[::1]/x") == "postgres://[::1]/x"
    assert_no_password(repr(s), s.url)


def test_a_bad_port_is_refused_without_repeating_the_url(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="port is not a number") as caught:
        parse_postgres_url(f"postgresql://bridge:{PASSWORD}@db:54x2/bridge")
    assert_no_password(caught.value)
    monkeypatch.setenv("BRIDGE_STORE_URL", f"postgresql://bridge:{PASSWORD}@db:54x2/bridge")
    with pytest.raises(SettingsError) as settings_error:
        load_settings(None)
    assert "BRIDGE_STORE_URL" in str(settings_error.value)
    assert_no_password(settings_error.value)


def test_settings_accept_postgres_urls_and_keep_them_out_of_the_repr(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BRIDGE_STORE_URL", f"postgresql://bridge:{PASSWORD}@db/bridge")
    settings = load_settings(None)
    assert settings.bridge_store_url.endswith("@db/bridge")
    assert_no_password(repr(settings), str(settings))


# --- migrations ---------------------------------------------------------------------------


async def test_open_records_every_migration(
    store: PostgresConversationStore, conn: asyncpg.Connection
) -> None:
    assert await schema_version(conn) == SCHEMA_VERSION
    rows = await conn.fetch("SELECT version FROM schema_version ORDER BY version")
    assert [r["version"] for r in rows] == list(range(1, SCHEMA_VERSION + 1))
    tables = {
        r["table_name"]
        for r in await conn.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
        )
    }
    assert tables == {
        "turns",
        "message_links",
        "chat_heads",
        "preferences",
        "turn_tokens",
        "turn_images",
        "streaming",
        "schema_version",
    }


async def test_a_version_1_database_is_upgraded(
    postgres_url: str, conn: asyncpg.Connection
) -> None:
    assert await apply_migrations(conn, MIGRATIONS[:1]) == 1
    await conn.execute(
        "INSERT INTO turns (id, parent_id, role, content, model, created_at) "
        "VALUES (1, NULL, 'user', 'old question', NULL, $1), "
        "(2, 1, 'assistant', 'old answer', 'm0', $2)",
        T0,
        T0 + 1,
    )
    # Explicit ids, as an import would write them: the sequence must move past them.
    await conn.execute("SELECT setval(pg_get_serial_sequence('turns', 'id'), 2)")
    await conn.execute("INSERT INTO message_links VALUES ('alpha', '100', '7', 2)")
    await conn.execute("INSERT INTO chat_heads VALUES ('alpha', '100', 2, $1)", T0 + 1)
    assert await conn.fetchval("SELECT to_regclass('preferences')") is None

    s = PostgresConversationStore(postgres_url)
    await s.open()
    try:
        assert await schema_version(conn) == SCHEMA_VERSION
        await check_version_1_data_is_kept(s)
        new = await s.add_turn(
            parent_id=2, role="user", content="new", model=None, created_at=T0 + 2
        )
        assert new.id == 3
    finally:
        await s.close()


async def test_migrations_are_applied_once(conn: asyncpg.Connection) -> None:
    assert await apply_migrations(conn) == SCHEMA_VERSION
    assert await apply_migrations(conn) == SCHEMA_VERSION
    assert await conn.fetchval("SELECT count(*) FROM schema_version") == SCHEMA_VERSION


async def test_replicas_opening_at_once_migrate_once(postgres_url: str) -> None:
    stores = [PostgresConversationStore(postgres_url) for _ in range(4)]
    await asyncio.gather(*(s.open() for s in stores))
    try:
        turn = await stores[0].add_turn(
            parent_id=None, role="user", content="q", model=None, created_at=T0
        )
        assert await stores[3].get_turn(turn.id) == turn
    finally:
        await asyncio.gather(*(s.close() for s in stores))
    c = await asyncpg.connect(postgres_url)
    try:
        assert await c.fetchval("SELECT count(*) FROM schema_version") == SCHEMA_VERSION
    finally:
        await c.close()


async def test_a_failed_migration_is_rolled_back(conn: asyncpg.Connection) -> None:
    broken = (*MIGRATIONS, ("CREATE TABLE extra (x INTEGER)", "THIS IS NOT SQL"))
    with pytest.raises(asyncpg.PostgresSyntaxError):
        await apply_migrations(conn, broken)
    assert await schema_version(conn) == SCHEMA_VERSION
    assert await conn.fetchval("SELECT to_regclass('extra')") is None
    assert not conn.is_in_transaction()


async def test_a_newer_database_is_refused(postgres_url: str, conn: asyncpg.Connection) -> None:
    await apply_migrations(conn)
    await conn.execute("INSERT INTO schema_version (version) VALUES ($1)", SCHEMA_VERSION + 1)
    s = PostgresConversationStore(postgres_url)
    with pytest.raises(StoreError, match="newer"):
        await s.open()
    with pytest.raises(StoreError, match="not open"):
        await s.get_turn(1)


# --- faults -------------------------------------------------------------------------------


async def test_a_server_nobody_runs_fails_open_in_one_line_without_the_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    url = f"postgresql://bridge:{PASSWORD}@127.0.0.1:{free_port()}/bridge"
    s = open_store(url)
    with pytest.raises(StoreOpenFailed) as caught:
        await s.open()
    message = caught.value.user_message
    assert message.startswith("The conversation store postgresql://bridge@127.0.0.1:")
    assert "cannot be reached" in message and "BRIDGE_STORE_URL" in message
    assert "\n" not in message
    assert "ConnectionRefusedError" in caught.value.detail
    assert caught.value.__cause__ is None
    assert_no_password(message, caught.value.detail, repr(caught.value), caplog.text)


async def test_a_missing_database_is_named_at_open(postgres_database: str) -> None:
    url = with_password(f"{postgres_database}_missing")
    with pytest.raises(StoreOpenFailed, match="names a database that does not exist") as caught:
        await open_store(url).open()
    assert_no_password(caught.value, caught.value.detail)


async def waiting_on_a_lock(conn: asyncpg.Connection, application: str, count: int) -> list[int]:
    """The pids of `application`'s connections once `count` of them wait on a lock."""
    pids: list[int] = []
    for _ in range(500):
        rows = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE application_name = $1 "
            "AND wait_event_type = 'Lock'",
            application,
        )
        pids = [int(r["pid"]) for r in rows]
        if len(pids) >= count:
            return pids
        await asyncio.sleep(0.01)
    rows = await conn.fetch(
        "SELECT a.state, l.relation::regclass::text, l.mode, l.granted FROM pg_stat_activity a "
        "JOIN pg_locks l ON l.pid = a.pid WHERE application_name = $1 AND NOT l.granted",
        application,
    )
    raise AssertionError(f"{len(pids)} of {count} of {application} wait on a lock: {rows}")


async def test_a_connection_dropped_mid_statement_raises_unreachable_and_the_pool_recovers(
    postgres_url: str, conn: asyncpg.Connection
) -> None:
    s = PostgresConversationStore(with_password(f"{postgres_url}&application_name=g4f_dropped"))
    await s.open()
    try:
        turn = await s.add_turn(parent_id=None, role="user", content="q", model=None, created_at=T0)
        async with conn.transaction():
            await conn.execute("LOCK TABLE turns IN SHARE MODE")
            write = asyncio.create_task(s.set_turn_content(turn.id, "changed"))
            (pid,) = await waiting_on_a_lock(conn, "g4f_dropped", 1)
            assert await conn.fetchval("SELECT pg_terminate_backend($1)", pid)
            with pytest.raises(StoreUnreachable) as caught:
                await write
        assert caught.value.user_message.startswith("I can't reach my conversation store")
        assert "ConnectionDoesNotExistError" in caught.value.detail
        assert_no_password(caught.value, caught.value.detail)
        # The pool replaces the dead connection: the store works again without a restart.
        await s.set_turn_content(turn.id, "changed again")
        stored = await s.get_turn(turn.id)
        assert stored is not None and stored.content == "changed again"
    finally:
        await s.close()


async def test_a_read_only_server_raises_read_only_and_still_reads(postgres_url: str) -> None:
    writable = PostgresConversationStore(postgres_url)
    await writable.open()
    turn = await writable.add_turn(
        parent_id=None, role="user", content="q", model=None, created_at=T0
    )
    await writable.close()

    s = PostgresConversationStore(f"{postgres_url}&default_transaction_read_only=on")
    await s.open()  # up to date: opening writes nothing
    try:
        assert await s.get_turn(turn.id) == turn
        with pytest.raises(StoreReadOnly) as caught:
            await s.set_turn_content(turn.id, "changed")
        assert "ReadOnlySQLTransactionError" in caught.value.detail
    finally:
        await s.close()


async def test_a_table_locked_elsewhere_raises_busy_after_the_timeout(
    store: PostgresConversationStore, postgres_url: str
) -> None:
    s = PostgresConversationStore(postgres_url, command_timeout=0.3)
    await s.open()
    other = await asyncpg.connect(postgres_url)
    try:
        async with other.transaction():
            await other.execute("LOCK TABLE turns IN ACCESS EXCLUSIVE MODE")
            with pytest.raises(StoreBusy):
                await s.add_turn(
                    parent_id=None, role="user", content="q", model=None, created_at=T0
                )
        turn = await s.add_turn(parent_id=None, role="user", content="q", model=None, created_at=T0)
        assert await s.get_turn(turn.id) == turn
    finally:
        await other.close()
        await s.close()


async def test_the_pool_bounds_connections_and_serves_many_tasks(
    postgres_url: str, conn: asyncpg.Connection
) -> None:
    s = PostgresConversationStore(
        f"{postgres_url}&application_name=g4f_pool", min_size=3, max_size=3
    )
    await s.open()
    try:
        root = await s.add_turn(parent_id=None, role="user", content="r", model=None, created_at=T0)
        async with conn.transaction():
            # Every write waits on this lock, so each holds its connection until it is released.
            await conn.execute("LOCK TABLE turns IN SHARE MODE")
            writes = [
                asyncio.create_task(
                    s.add_turn(
                        parent_id=root.id, role="user", content=f"m{i}", model=None, created_at=T0
                    )
                )
                for i in range(12)
            ]
            assert len(await waiting_on_a_lock(conn, "g4f_pool", 3)) == 3
            assert not any(w.done() for w in writes)
        turns = await asyncio.gather(*writes)
        assert len({t.id for t in turns}) == 12
        opened = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'g4f_pool'"
        )
        assert opened == 3
    finally:
        await s.close()


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (asyncpg.DiskFullError("could not extend file"), StoreDiskError),
        (asyncpg.exceptions.PostgresIOError("could not read block"), StoreDiskError),
        (asyncpg.exceptions.DataCorruptedError("invalid page"), StoreDiskError),
        (asyncpg.exceptions.DeadlockDetectedError("deadlock detected"), StoreBusy),
        (asyncpg.exceptions.TooManyConnectionsError("too many clients"), StoreBusy),
        (asyncpg.exceptions.QueryCanceledError("statement timeout"), StoreBusy),
        (asyncpg.exceptions.AdminShutdownError("terminating connection"), StoreUnreachable),
        (asyncpg.exceptions.CannotConnectNowError("the database is starting up"), StoreUnreachable),
        (asyncpg.exceptions.InsufficientPrivilegeError("permission denied"), StoreReadOnly),
        (ConnectionResetError(104, "Connection reset by peer"), StoreUnreachable),
        (TimeoutError(), StoreBusy),
    ],
)
def test_server_failures_the_live_tests_cannot_provoke_map_onto_the_family(
    error: BaseException, kind: type[StoreUnavailable]
) -> None:
    typed = unavailable_error(error, scrub=PASSWORD)
    assert type(typed) is kind
    assert typed.user_message.startswith("I can't reach my conversation store")


def test_errors_that_are_bugs_stay_themselves() -> None:
    assert unavailable_error(asyncpg.exceptions.UndefinedTableError("no table")) is None
    assert unavailable_error(asyncpg.exceptions.UniqueViolationError("duplicate key")) is None
    assert unavailable_error(ValueError("x")) is None


def test_a_password_the_server_echoes_is_scrubbed() -> None:
    typed = unavailable_error(OSError(f"cannot connect with {PASSWORD}"), scrub=PASSWORD)
    assert typed is not None
    assert_no_password(typed.detail, typed)
    decoded = unavailable_error(OSError("sent p@ss/word"), scrub="p%40ss%2Fword")
    assert decoded is not None and "p@ss/word" not in decoded.detail


async def test_nul_characters_of_hostile_input_are_stored_as_replacement_characters(
    store: PostgresConversationStore,
) -> None:
    turn = await store.add_turn(
        parent_id=None, role="user", content="a\x00b", model=None, created_at=T0
    )
    assert turn.content == "a\ufffdb"
    await store.set_turn_content(turn.id, "\x00end")
    stored = await store.get_turn(turn.id)
    assert stored is not None and stored.content == "\ufffdend"
    await store.set_preference("chat:alpha:1", "system_prompt", "be\x00brief")
    assert await store.get_preference("chat:alpha:1", "system_prompt") == "be\ufffdbrief"
