"""The SQLite conversation store: turns and branches, links, heads, preferences, restarts,
migrations, concurrency and the URL factory."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiosqlite
import pytest

from core.store.base import (
    ChatKey,
    ConversationStore,
    Head,
    MessageKey,
    Role,
    StoreError,
    Turn,
    TurnNotFoundError,
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

T0 = 1_800_000_000.0
CHAT = ChatKey("alpha", "100")


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "store.sqlite3"


@pytest.fixture
async def store(db_path: Path) -> AsyncIterator[SqliteConversationStore]:
    s = SqliteConversationStore(db_path)
    await s.open()
    yield s
    await s.close()


async def add(
    store: ConversationStore, parent: Turn | None, content: str, role: Role = "user"
) -> Turn:
    return await store.add_turn(
        parent_id=None if parent is None else parent.id,
        role=role,
        content=content,
        model="m1" if role == "assistant" else None,
        created_at=T0 + len(content),
    )


async def read_version(path: Path) -> int:
    async with aiosqlite.connect(path) as conn:
        return await user_version(conn)


# --- turns and chains ---------------------------------------------------------------------


async def test_add_turn_returns_the_stored_turn(store: SqliteConversationStore) -> None:
    turn = await store.add_turn(
        parent_id=None, role="system", content="be brief", model=None, created_at=T0
    )
    assert turn == Turn(
        id=turn.id, parent_id=None, role="system", content="be brief", model=None, created_at=T0
    )
    assert await store.get_turn(turn.id) == turn
    assert await store.get_turn(turn.id + 1000) is None


async def test_chain_is_oldest_first_and_limited_to_the_newest(
    store: SqliteConversationStore,
) -> None:
    a = await add(store, None, "a")
    b = await add(store, a, "bb", "assistant")
    c = await add(store, b, "ccc")
    d = await add(store, c, "dddd", "assistant")

    assert [t.content for t in await store.chain(d.id, limit=10)] == ["a", "bb", "ccc", "dddd"]
    assert [t.content for t in await store.chain(d.id, limit=2)] == ["ccc", "dddd"]
    assert [t.content for t in await store.chain(d.id, limit=1)] == ["dddd"]
    assert [t.content for t in await store.chain(b.id, limit=10)] == ["a", "bb"]
    assert await store.chain(d.id, limit=0) == []
    assert await store.chain(d.id + 1000, limit=10) == []
    assert (await store.chain(d.id, limit=10))[1] == b


async def test_two_children_of_one_turn_fork_two_chains(store: SqliteConversationStore) -> None:
    root = await add(store, None, "question")
    first = await add(store, root, "answer one", "assistant")
    second = await add(store, root, "answer two", "assistant")
    follow = await add(store, first, "follow-up")

    assert [t.id for t in await store.chain(follow.id, limit=10)] == [root.id, first.id, follow.id]
    assert [t.id for t in await store.chain(second.id, limit=10)] == [root.id, second.id]


async def test_set_turn_content_replaces_the_text(store: SqliteConversationStore) -> None:
    turn = await add(store, None, "", "assistant")
    await store.set_turn_content(turn.id, "final answer")
    stored = await store.get_turn(turn.id)
    assert stored is not None
    assert stored.content == "final answer"
    assert stored.model == "m1"


async def test_writes_naming_an_unknown_turn_raise(store: SqliteConversationStore) -> None:
    with pytest.raises(TurnNotFoundError) as info:
        await store.add_turn(parent_id=999, role="user", content="x", model=None, created_at=T0)
    assert info.value.turn_id == 999
    with pytest.raises(TurnNotFoundError):
        await store.set_turn_content(999, "x")
    with pytest.raises(TurnNotFoundError):
        await store.link_message(MessageKey("alpha", "1", "2"), 999)
    with pytest.raises(TurnNotFoundError):
        await store.set_head(CHAT, 999, T0)
    assert await store.chain(999, limit=5) == []


async def test_unknown_role_is_refused(store: SqliteConversationStore) -> None:
    with pytest.raises(ValueError, match="role"):
        await store.add_turn(
            parent_id=None,
            role="tool",  # type: ignore[arg-type]
            content="x",
            model=None,
            created_at=T0,
        )


# --- message links ------------------------------------------------------------------------


async def test_link_lookup_and_overwrite(store: SqliteConversationStore) -> None:
    q = await add(store, None, "q")
    a = await add(store, q, "a", "assistant")
    part1 = MessageKey("alpha", "100", "501")
    part2 = MessageKey("alpha", "100", "502")

    await store.link_message(part1, a.id)
    await store.link_message(part2, a.id)
    assert await store.turn_for_message(part1) == a.id
    assert await store.turn_for_message(part2) == a.id

    await store.link_message(part1, q.id)
    assert await store.turn_for_message(part1) == q.id
    assert await store.turn_for_message(part2) == a.id


async def test_links_are_keyed_by_platform_chat_and_message(
    store: SqliteConversationStore,
) -> None:
    t = await add(store, None, "q")
    await store.link_message(MessageKey("alpha", "100", "1"), t.id)
    assert await store.turn_for_message(MessageKey("beta", "100", "1")) is None
    assert await store.turn_for_message(MessageKey("alpha", "101", "1")) is None
    assert await store.turn_for_message(MessageKey("alpha", "100", "2")) is None


# --- heads --------------------------------------------------------------------------------


async def test_head_set_get_overwrite_and_clear(store: SqliteConversationStore) -> None:
    one = await add(store, None, "one")
    two = await add(store, one, "two", "assistant")
    other = ChatKey("beta", "100")

    assert await store.get_head(CHAT) is None
    await store.set_head(CHAT, one.id, T0)
    assert await store.get_head(CHAT) == Head(turn_id=one.id, updated_at=T0)
    await store.set_head(CHAT, two.id, T0 + 5)
    assert await store.get_head(CHAT) == Head(turn_id=two.id, updated_at=T0 + 5)
    assert await store.get_head(other) is None

    await store.clear_head(CHAT)
    assert await store.get_head(CHAT) is None
    await store.clear_head(CHAT)  # clearing again is harmless


# --- preferences --------------------------------------------------------------------------


async def test_preferences_set_overwrite_delete(store: SqliteConversationStore) -> None:
    scope = "chat:alpha:5"
    assert await store.get_preference(scope, "model") is None
    await store.set_preference(scope, "model", "m1")
    await store.set_preference("user:alpha:7", "model", "m2")
    assert await store.get_preference(scope, "model") == "m1"

    await store.set_preference(scope, "model", "m3")
    assert await store.get_preference(scope, "model") == "m3"
    assert await store.get_preference("user:alpha:7", "model") == "m2"

    await store.set_preference(scope, "model", None)
    assert await store.get_preference(scope, "model") is None
    await store.set_preference(scope, "model", None)  # deleting again is harmless
    assert await store.get_preference("user:alpha:7", "model") == "m2"


async def test_empty_preference_value_is_kept(store: SqliteConversationStore) -> None:
    await store.set_preference("s", "system_prompt", "")
    assert await store.get_preference("s", "system_prompt") == ""


# --- lifecycle ----------------------------------------------------------------------------


async def test_everything_survives_a_restart(db_path: Path) -> None:
    first = SqliteConversationStore(db_path)
    await first.open()
    q = await add(first, None, "q")
    a = await add(first, q, "a", "assistant")
    await first.set_turn_content(a.id, "final")
    await first.link_message(MessageKey("alpha", "100", "9"), a.id)
    await first.set_head(CHAT, a.id, T0 + 1)
    await first.set_preference("user:alpha:7", "model", "m2")
    await first.close()

    second = SqliteConversationStore(db_path)
    await second.open()
    try:
        assert [t.content for t in await second.chain(a.id, limit=10)] == ["q", "final"]
        assert await second.turn_for_message(MessageKey("alpha", "100", "9")) == a.id
        assert await second.get_head(CHAT) == Head(turn_id=a.id, updated_at=T0 + 1)
        assert await second.get_preference("user:alpha:7", "model") == "m2"
        newer = await add(second, a, "next")
        assert newer.id > a.id
    finally:
        await second.close()
    assert await read_version(db_path) == SCHEMA_VERSION


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


async def test_use_before_open_or_after_close_raises(db_path: Path) -> None:
    s = SqliteConversationStore(db_path)
    with pytest.raises(StoreError, match="not open"):
        await s.get_turn(1)
    await s.open()
    with pytest.raises(StoreError, match="already open"):
        await s.open()
    await s.close()
    await s.close()  # idempotent
    with pytest.raises(StoreError, match="not open"):
        await s.set_preference("s", "n", "v")


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
        chain = await s.chain(2, limit=10)
        assert chain == [
            Turn(1, None, "user", "old question", None, T0),
            Turn(2, 1, "assistant", "old answer", "m0", T0 + 1),
        ]
        assert await s.turn_for_message(MessageKey("alpha", "100", "7")) == 2
        assert await s.get_head(CHAT) == Head(2, T0 + 1)
        await s.set_preference("chat:alpha:100", "model", "m1")
        assert await s.get_preference("chat:alpha:100", "model") == "m1"
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


# --- concurrency --------------------------------------------------------------------------


async def test_200_concurrent_add_turn_all_persist_with_unique_ids(db_path: Path) -> None:
    s = SqliteConversationStore(db_path)
    await s.open()
    root = await add(s, None, "root")

    async def one(i: int) -> Turn:
        turn = await s.add_turn(
            parent_id=root.id, role="user", content=f"m{i}", model=None, created_at=T0 + i
        )
        await s.link_message(MessageKey("alpha", "100", str(i)), turn.id)
        await s.set_head(CHAT, turn.id, T0 + i)
        return turn

    turns = await asyncio.gather(*(one(i) for i in range(200)))
    await s.close()

    assert len({t.id for t in turns}) == 200
    s = SqliteConversationStore(db_path)
    await s.open()
    try:
        for i, turn in enumerate(turns):
            assert await s.get_turn(turn.id) == turn
            assert turn.content == f"m{i}"
            assert await s.turn_for_message(MessageKey("alpha", "100", str(i))) == turn.id
        head = await s.get_head(CHAT)
        assert head is not None
        assert head.turn_id in {t.id for t in turns}
    finally:
        await s.close()


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
        ("postgres://user:pw@db/x", r"PostgreSQL \(postgres://\) is not supported yet.*sqlite://"),
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


def test_keys_render_as_strings() -> None:
    assert str(CHAT) == "alpha:100"
    key = MessageKey("alpha", "100", "7")
    assert str(key) == "alpha:100:7"
    assert key.chat == CHAT


async def test_tokens_are_kept_per_turn_per_user_and_by_time(
    store: SqliteConversationStore,
) -> None:
    question = await store.add_turn(
        parent_id=None, role="user", content="q", model=None, created_at=1.0
    )
    answers = [
        await store.add_turn(
            parent_id=question.id, role="assistant", content=f"a{i}", model="m", created_at=1.0
        )
        for i in range(3)
    ]
    day = 86_400.0
    await store.record_tokens(
        answers[0].id, user_scope="u1", prompt_tokens=3, completion_tokens=4,
        estimated=False, created_at=day - 1,
    )  # fmt: skip
    await store.record_tokens(
        answers[1].id, user_scope="u1", prompt_tokens=10, completion_tokens=20,
        estimated=True, created_at=day + 5,
    )  # fmt: skip
    await store.record_tokens(
        answers[2].id, user_scope="u2", prompt_tokens=100, completion_tokens=1,
        estimated=False, created_at=day + 6,
    )  # fmt: skip
    assert await store.tokens_since("u1", day) == 30  # yesterday's answer is left out
    assert await store.tokens_since("u1", 0.0) == 37
    assert await store.tokens_since("nobody", 0.0) == 0
    ids = [question.id, *(a.id for a in answers)]
    assert await store.tokens_of_turns(ids) == 138
    assert await store.tokens_of_turns([answers[0].id]) == 7
    assert await store.tokens_of_turns([]) == 0
    # Recording a turn again replaces its counts; its turn must exist.
    await store.record_tokens(
        answers[0].id, user_scope="u1", prompt_tokens=1, completion_tokens=1,
        estimated=False, created_at=day - 1,
    )  # fmt: skip
    assert await store.tokens_of_turns([answers[0].id]) == 2
    with pytest.raises(TurnNotFoundError):
        await store.record_tokens(
            9999, user_scope="u1", prompt_tokens=1, completion_tokens=1,
            estimated=False, created_at=1.0,
        )  # fmt: skip


async def test_images_are_kept_with_their_turn_in_order(store: SqliteConversationStore) -> None:
    first = await add(store, None, "look")
    second = await add(store, first, "and this")
    await store.add_images(first.id, [("image/png", b"one"), ("image/jpeg", b"two")])
    await store.add_images(second.id, [("image/gif", b"three")])
    assert await store.images_of([first.id, second.id, 9999]) == {
        first.id: [("image/png", b"one"), ("image/jpeg", b"two")],
        second.id: [("image/gif", b"three")],
    }
    assert await store.images_of([]) == {}
    with pytest.raises(TurnNotFoundError):
        await store.add_images(9999, [("image/png", b"x")])
