"""The SQLite conversation store's own behaviour: pragmas, files, migrations and its URLs.

What every store does (turns, links, heads, preferences, streaming records, restarts,
concurrency) is tested for both backends in test_store_contract.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiosqlite
import pytest

from core.store.base import (
    StoreError,
    open_store,
)
from core.store.sqlite import (
    BUSY_TIMEOUT,
    MIGRATIONS,
    SCHEMA_VERSION,
    SqliteConversationStore,
    apply_migrations,
    sqlite_path_from_url,
    user_version,
)
from tests.test_store_contract import T0, add, check_version_1_data_is_kept


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "store.sqlite3"


@pytest.fixture
async def store(db_path: Path) -> AsyncIterator[SqliteConversationStore]:
    s = SqliteConversationStore(db_path)
    await s.open()
    yield s
    await s.close()


async def read_version(path: Path) -> int:
    async with aiosqlite.connect(path) as conn:
        return await user_version(conn)


# --- SQLite only (the shared behaviour is in test_store_contract.py) ----------------------


async def test_open_uses_wal_and_foreign_keys(store: SqliteConversationStore) -> None:
    conn = store._connection()
    assert list(await conn.execute_fetchall("PRAGMA journal_mode")) == [("wal",)]
    assert list(await conn.execute_fetchall("PRAGMA foreign_keys")) == [(1,)]
    assert list(await conn.execute_fetchall("PRAGMA busy_timeout")) == [(int(BUSY_TIMEOUT * 1000),)]


async def test_open_creates_missing_parent_directories(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "bridge.sqlite3"
    s = SqliteConversationStore(path)
    await s.open()
    await add(s, None, "hello")
    await s.close()
    assert path.is_file()


async def test_memory_store_works() -> None:
    s = open_store("sqlite:///:memory:")
    await s.open()
    try:
        t = await add(s, None, "q")
        assert await s.chain(t.id, limit=3) == [t]
    finally:
        await s.close()


# --- migrations ---------------------------------------------------------------------------


async def test_a_version_1_database_is_upgraded(db_path: Path) -> None:
    async with aiosqlite.connect(db_path, isolation_level=None) as conn:
        assert await apply_migrations(conn, MIGRATIONS[:1]) == 1
        await conn.execute("PRAGMA foreign_keys = ON")
        await conn.execute(
            "INSERT INTO turns (id, parent_id, role, content, model, created_at) "
            "VALUES (1, NULL, 'user', 'old question', NULL, ?), "
            "(2, 1, 'assistant', 'old answer', 'm0', ?)",
            (T0, T0 + 1),
        )
        await conn.execute(
            "INSERT INTO message_links VALUES ('alpha', '100', '7', 2)",
        )
        await conn.execute("INSERT INTO chat_heads VALUES ('alpha', '100', 2, ?)", (T0 + 1,))
        tables = await conn.execute_fetchall("SELECT name FROM sqlite_master WHERE type='table'")
        assert "preferences" not in {row[0] for row in tables}
    assert await read_version(db_path) == 1

    s = SqliteConversationStore(db_path)
    await s.open()
    try:
        assert await read_version(db_path) == SCHEMA_VERSION
        chain = await check_version_1_data_is_kept(s)
        assert (await add(s, chain[-1], "new")).id == 3
    finally:
        await s.close()


async def test_migrations_are_applied_once(db_path: Path) -> None:
    async with aiosqlite.connect(db_path, isolation_level=None) as conn:
        assert await apply_migrations(conn) == SCHEMA_VERSION
        assert await apply_migrations(conn) == SCHEMA_VERSION


async def test_a_failed_migration_is_rolled_back(db_path: Path) -> None:
    broken = (*MIGRATIONS, ("CREATE TABLE extra (x INTEGER)", "THIS IS NOT SQL"))
    async with aiosqlite.connect(db_path, isolation_level=None) as conn:
        with pytest.raises(Exception, match="syntax error"):
            await apply_migrations(conn, broken)
        assert await user_version(conn) == SCHEMA_VERSION
        tables = await conn.execute_fetchall("SELECT name FROM sqlite_master WHERE type='table'")
        assert "extra" not in {row[0] for row in tables}
        assert not conn.in_transaction


async def test_a_newer_database_is_refused(db_path: Path) -> None:
    async with aiosqlite.connect(db_path, isolation_level=None) as conn:
        await conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    s = SqliteConversationStore(db_path)
    with pytest.raises(StoreError, match="newer"):
        await s.open()
    with pytest.raises(StoreError, match="not open"):
        await s.get_turn(1)


# --- URLs ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///data/bridge.sqlite3", "data/bridge.sqlite3"),
        ("sqlite:////var/lib/bridge/bridge.sqlite3", "/var/lib/bridge/bridge.sqlite3"),
        ("sqlite:///:memory:", ":memory:"),
        ("SQLITE:///x.db", "x.db"),
    ],
)
def test_open_store_parses_sqlite_urls(url: str, path: str) -> None:
    assert sqlite_path_from_url(url) == path
    s = open_store(url)
    assert isinstance(s, SqliteConversationStore)
    assert s.path == path


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis://localhost:6379/0", r"unsupported store URL scheme 'redis'.*sqlite://"),
        ("mysql://user:pw@db/x", r"MySQL \(mysql://\) is not supported yet.*postgresql://"),
        ("bridge.sqlite3", r"no scheme.*sqlite://"),
        ("://x", r"no scheme"),
        ("sqlite://relative.db", r"must look like sqlite:///"),
        ("sqlite:///", r"names no database file"),
        ("sqlite:///x.db?mode=ro", r"query parameters"),
    ],
)
def test_open_store_rejects_bad_urls(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        open_store(url)
