"""The SQLite conversation store (aiosqlite: one connection on its own thread).

The schema is versioned with ``PRAGMA user_version``: `MIGRATIONS[n - 1]` takes a database from
version n - 1 to n, and `open` applies every missing migration in order, each in its own
transaction together with its version bump. Migrations are only ever appended, never edited.

Every statement the store runs is a single autocommitted statement issued while holding one
`asyncio.Lock`, and multi-statement work (migrations) holds the same lock for the whole
transaction, so the transactions of concurrent tasks never interleave on the shared connection.

Failures of the database itself are typed (core.errors): another writer holding it past the busy
timeout raises `StoreBusy`, a refused write `StoreReadOnly`, an I/O error, full disk or damaged
file `StoreDiskError` (all `StoreUnavailable`, with a user message). `open` first checks that the
directory, the database and its ``-wal`` and ``-shm`` files (those that exist) are writable and
raises `StoreOpenFailed` (one line naming BRIDGE_STORE_URL) when one is not: SQLite never maps a
read-only ``-shm``, whose shared memory can bring the process down with SIGBUS. The store never
opens a database read-only: it has to write every answer.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite

from core.errors import (
    StoreBusy,
    StoreDiskError,
    StoreOpenFailed,
    StoreReadOnly,
    StoreUnavailable,
)
from core.store.base import (
    STREAMING_COLUMNS,
    TURN_COLUMNS,
    ChatKey,
    Head,
    MessageKey,
    Role,
    StoreError,
    StreamingAnswer,
    Turn,
    TurnNotFoundError,
    as_role,
    chain_sql,
    check_schema_version,
    images_by_turn,
    streaming_from_rows,
    turn_from_row,
)

MEMORY = ":memory:"
URL_PREFIX = "sqlite:///"
# Ordinary contention (another process's write, a checkpoint, a backup step) lasts milliseconds;
# this much waiting covers slow disks without leaving a user waiting much longer.
BUSY_TIMEOUT = 10.0  # seconds

# SQLite primary result codes that mean the database cannot be used now, by the error they become.
_UNAVAILABLE: dict[int, type[StoreUnavailable]] = {
    5: StoreBusy,  # SQLITE_BUSY
    6: StoreBusy,  # SQLITE_LOCKED
    3: StoreReadOnly,  # SQLITE_PERM
    8: StoreReadOnly,  # SQLITE_READONLY
    14: StoreReadOnly,  # SQLITE_CANTOPEN
    10: StoreDiskError,  # SQLITE_IOERR
    11: StoreDiskError,  # SQLITE_CORRUPT
    13: StoreDiskError,  # SQLITE_FULL
    15: StoreDiskError,  # SQLITE_PROTOCOL
    26: StoreDiskError,  # SQLITE_NOTADB
}
_AT_OPEN: dict[type[StoreUnavailable], str] = {
    StoreBusy: "is locked by another process",
    StoreReadOnly: "cannot be written",
    StoreDiskError: "could not be read or written (a disk error or a damaged file)",
}

Migration = Sequence[str]

MIGRATIONS: tuple[Migration, ...] = (
    # 1: conversation trees, message links and chat heads.
    (
        """
        CREATE TABLE turns (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            parent_id INTEGER REFERENCES turns(id) ON DELETE CASCADE,
            role TEXT NOT NULL CHECK (role IN ('system', 'user', 'assistant')),
            content TEXT NOT NULL,
            model TEXT,
            created_at REAL NOT NULL
        )
        """,
        "CREATE INDEX turns_parent_id ON turns(parent_id)",
        """
        CREATE TABLE message_links (
            platform TEXT NOT NULL,
            chat_id TEXT NOT NULL,
            message_id TEXT NOT NULL,
            turn_id INTEGER NOT NULL REFERENCES turns(id) ON DELETE CASCADE,
            PRIMARY KEY (platform, chat_id, message_id)
        ) WITHOUT ROWID
        """,
        "CREATE INDEX message_links_turn_id ON message_links(turn_id)",
        """
        CREATE TABLE chat_heads (
            platform TEXT NOT NULL,
            chat_id TEXT NOT NULL,
            turn_id INTEGER NOT NULL REFERENCES turns(id) ON DELETE CASCADE,
            updated_at REAL NOT NULL,
            PRIMARY KEY (platform, chat_id)
        ) WITHOUT ROWID
        """,
        "CREATE INDEX chat_heads_turn_id ON chat_heads(turn_id)",
    ),
    # 2: per-user and per-chat preferences.
    (
        """
        CREATE TABLE preferences (
            scope TEXT NOT NULL,
            name TEXT NOT NULL,
            value TEXT NOT NULL,
            PRIMARY KEY (scope, name)
        ) WITHOUT ROWID
        """,
    ),
    # 3: tokens per answer (reported by the server, or estimated), by the user who asked.
    (
        """
        CREATE TABLE turn_tokens (
            turn_id INTEGER PRIMARY KEY REFERENCES turns(id) ON DELETE CASCADE,
            user_scope TEXT NOT NULL,
            prompt_tokens INTEGER NOT NULL,
            completion_tokens INTEGER NOT NULL,
            estimated INTEGER NOT NULL,
            created_at REAL NOT NULL
        )
        """,
        "CREATE INDEX turn_tokens_user ON turn_tokens(user_scope, created_at)",
    ),
    # 4: images a user sent with a question, stored once with its turn.
    (
        """
        CREATE TABLE turn_images (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            turn_id INTEGER NOT NULL REFERENCES turns(id) ON DELETE CASCADE,
            content_type TEXT NOT NULL,
            data BLOB NOT NULL
        )
        """,
        "CREATE INDEX turn_images_turn_id ON turn_images(turn_id)",
    ),
    # 5: answers streaming now, so a crash leaves nothing showing a streaming marker.
    (
        """
        CREATE TABLE streaming (
            answer_key TEXT PRIMARY KEY,
            platform TEXT NOT NULL,
            chat_id TEXT NOT NULL,
            user_id TEXT NOT NULL,
            question_id INTEGER NOT NULL REFERENCES turns(id) ON DELETE CASCADE,
            model TEXT NOT NULL,
            messages TEXT NOT NULL,
            answered INTEGER NOT NULL,
            updated_at REAL NOT NULL
        ) WITHOUT ROWID
        """,
        "CREATE INDEX streaming_platform ON streaming(platform)",
    ),
)


SCHEMA_VERSION = len(MIGRATIONS)

_CHAIN_SQL = chain_sql("?", "?")


def sqlite_path_from_url(url: str) -> str:
    """The database path in a ``sqlite:///...`` URL (``sqlite:////abs/path`` is absolute)."""
    if not url.lower().startswith(URL_PREFIX):
        raise ValueError(
            f"SQLite store URL must look like {URL_PREFIX}path/to/file.sqlite3 "
            f"or {URL_PREFIX}{MEMORY}, got {url!r}"
        )
    path = url[len(URL_PREFIX) :]
    if not path:
        raise ValueError(f"SQLite store URL {url!r} names no database file")
    if "?" in path:
        raise ValueError(f"SQLite store URL {url!r}: query parameters are not supported")
    return path


async def user_version(conn: aiosqlite.Connection) -> int:
    """The schema version recorded in the database."""
    rows = list(await conn.execute_fetchall("PRAGMA user_version"))
    return int(rows[0][0])


async def apply_migrations(
    conn: aiosqlite.Connection, migrations: Sequence[Migration] = MIGRATIONS
) -> int:
    """Bring the database up to ``len(migrations)`` and return that version.

    Each missing migration runs in its own ``BEGIN IMMEDIATE`` transaction with its version bump,
    and the version is read inside that transaction, so two processes opening one database
    never apply a migration twice. `conn` must be in autocommit mode (``isolation_level=None``).
    A database newer than the code raises `StoreError`.
    """
    version = await user_version(conn)
    check_schema_version(version, len(migrations))
    for number in range(version + 1, len(migrations) + 1):
        await _apply_one(conn, number, migrations[number - 1])
    return await user_version(conn)


async def _apply_one(conn: aiosqlite.Connection, number: int, statements: Migration) -> None:
    async with _transaction(conn):
        if await user_version(conn) >= number:
            return
        for statement in statements:
            await conn.execute(statement)
        await conn.execute(f"PRAGMA user_version = {int(number)}")


@asynccontextmanager
async def _transaction(conn: aiosqlite.Connection) -> AsyncIterator[None]:
    """An explicit write transaction: committed on success, rolled back on any exception."""
    await conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if conn.in_transaction:
            await conn.execute("ROLLBACK")
        raise
    await conn.execute("COMMIT")


def _is_foreign_key_error(exc: sqlite3.IntegrityError) -> bool:
    name = getattr(exc, "sqlite_errorname", "")
    return name == "SQLITE_CONSTRAINT_FOREIGNKEY" or "FOREIGN KEY" in str(exc)


def unavailable_error(exc: sqlite3.Error) -> StoreUnavailable | None:
    """The typed error for a database that cannot be used now; None for anything else (a bug)."""
    code = getattr(exc, "sqlite_errorcode", None)
    kind = _UNAVAILABLE.get(code & 0xFF) if isinstance(code, int) else None
    if kind is None:
        return None
    name = getattr(exc, "sqlite_errorname", "SQLITE_ERROR")
    return kind(detail=f"{name}: {exc}")


def unwritable_part(path: Path) -> str | None:
    """What stops SQLite from writing the database at `path` (and its -wal and -shm), or None."""
    directory = path.parent
    if not os.access(directory, os.W_OK | os.X_OK):
        return f"is in a directory that cannot be written ({directory})"
    for part in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        if part.exists() and not os.access(part, os.W_OK):
            return f"cannot be written: {part.name} is read-only"
    return None


class SqliteConversationStore:
    """`ConversationStore` on one SQLite file (WAL mode, foreign keys on, busy timeout set).

    `path` is a file path (its directory is created when missing) or ``":memory:"``.
    """

    def __init__(self, path: str | Path, *, busy_timeout: float = BUSY_TIMEOUT) -> None:
        self._path = str(path)
        self._busy_timeout = busy_timeout
        self._conn: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()

    @property
    def path(self) -> str:
        """The database path given at construction."""
        return self._path

    async def open(self) -> None:
        """Connect, set the connection's pragmas and apply missing migrations."""
        async with self._lock:
            if self._conn is not None:
                raise StoreError("store is already open")
            await self._check_writable()
            try:
                conn = await aiosqlite.connect(
                    self._path, timeout=self._busy_timeout, isolation_level=None
                )
            except sqlite3.Error as exc:
                raise self._open_failed(exc) from exc
            try:
                await self._configure(conn)
                await apply_migrations(conn)
            except sqlite3.Error as exc:
                await conn.close()
                raise self._open_failed(exc) from exc
            except BaseException:
                await conn.close()
                raise
            self._conn = conn

    async def close(self) -> None:
        """Close the connection (waiting for the running statement); idempotent."""
        async with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None:
                await conn.close()

    async def add_turn(
        self,
        *,
        parent_id: int | None,
        role: Role,
        content: str,
        model: str | None,
        created_at: float,
    ) -> Turn:
        """Insert a turn; raises `TurnNotFoundError` when `parent_id` is unknown."""
        rows = await self._write(
            f"INSERT INTO turns (parent_id, role, content, model, created_at) "
            f"VALUES (?, ?, ?, ?, ?) RETURNING {TURN_COLUMNS}",
            (parent_id, as_role(role), content, model, float(created_at)),
            turn_id=parent_id,
        )
        return turn_from_row(rows[0])

    async def set_turn_content(self, turn_id: int, content: str) -> None:
        """Replace a turn's text; raises `TurnNotFoundError` when the turn is unknown."""
        rows = await self._write(
            "UPDATE turns SET content = ? WHERE id = ? RETURNING id", (content, turn_id)
        )
        if not rows:
            raise TurnNotFoundError(turn_id)

    async def get_turn(self, turn_id: int) -> Turn | None:
        """The turn with this id, or None."""
        rows = await self._read(f"SELECT {TURN_COLUMNS} FROM turns WHERE id = ?", (turn_id,))
        return turn_from_row(rows[0]) if rows else None

    async def chain(self, turn_id: int, *, limit: int) -> list[Turn]:
        """The branch ending at `turn_id`, oldest first, at most `limit` newest turns."""
        if limit <= 0:
            return []
        rows = await self._read(_CHAIN_SQL, (turn_id, limit))
        return [turn_from_row(row) for row in rows]

    async def link_message(self, key: MessageKey, turn_id: int) -> None:
        """Link a platform message to a turn, replacing an earlier link of the same message."""
        await self._write(
            "INSERT INTO message_links (platform, chat_id, message_id, turn_id) "
            "VALUES (?, ?, ?, ?) "
            "ON CONFLICT (platform, chat_id, message_id) DO UPDATE SET turn_id = excluded.turn_id",
            (key.platform, key.chat_id, key.message_id, turn_id),
            turn_id=turn_id,
        )

    async def turn_for_message(self, key: MessageKey) -> int | None:
        """The turn a platform message shows, or None."""
        rows = await self._read(
            "SELECT turn_id FROM message_links "
            "WHERE platform = ? AND chat_id = ? AND message_id = ?",
            (key.platform, key.chat_id, key.message_id),
        )
        return int(rows[0][0]) if rows else None

    async def get_head(self, chat: ChatKey) -> Head | None:
        """The chat's latest turn, or None."""
        rows = await self._read(
            "SELECT turn_id, updated_at FROM chat_heads WHERE platform = ? AND chat_id = ?",
            (chat.platform, chat.chat_id),
        )
        return Head(turn_id=int(rows[0][0]), updated_at=float(rows[0][1])) if rows else None

    async def set_head(self, chat: ChatKey, turn_id: int, updated_at: float) -> None:
        """Point the chat's head at `turn_id`; raises `TurnNotFoundError` when it is unknown."""
        await self._write(
            "INSERT INTO chat_heads (platform, chat_id, turn_id, updated_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (platform, chat_id) "
            "DO UPDATE SET turn_id = excluded.turn_id, updated_at = excluded.updated_at",
            (chat.platform, chat.chat_id, turn_id, float(updated_at)),
            turn_id=turn_id,
        )

    async def clear_head(self, chat: ChatKey) -> None:
        """Forget the chat's head (nothing happens when it has none)."""
        await self._write(
            "DELETE FROM chat_heads WHERE platform = ? AND chat_id = ?",
            (chat.platform, chat.chat_id),
        )

    async def get_preference(self, scope: str, name: str) -> str | None:
        """A stored preference, or None."""
        rows = await self._read(
            "SELECT value FROM preferences WHERE scope = ? AND name = ?", (scope, name)
        )
        return str(rows[0][0]) if rows else None

    async def set_preference(self, scope: str, name: str, value: str | None) -> None:
        """Store a preference, or delete it when `value` is None."""
        if value is None:
            await self._write("DELETE FROM preferences WHERE scope = ? AND name = ?", (scope, name))
            return
        await self._write(
            "INSERT INTO preferences (scope, name, value) VALUES (?, ?, ?) "
            "ON CONFLICT (scope, name) DO UPDATE SET value = excluded.value",
            (scope, name, value),
        )

    async def save_streaming(self, answer: StreamingAnswer) -> None:
        """Record (or update) an answer that is streaming now."""
        await self._write(
            "INSERT INTO streaming (answer_key, platform, chat_id, user_id, question_id, model, "
            "messages, answered, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (answer_key) DO UPDATE SET messages = excluded.messages, "
            "model = excluded.model, answered = excluded.answered, "
            "updated_at = excluded.updated_at",
            (
                answer.key,
                answer.chat.platform,
                answer.chat.chat_id,
                answer.user_id,
                answer.question_id,
                answer.model,
                json.dumps([list(m) for m in answer.messages], ensure_ascii=False),
                int(answer.answered),
                float(answer.updated_at),
            ),
            turn_id=answer.question_id,
        )

    async def drop_streaming(self, key: str) -> None:
        """The answer with `key` is no longer streaming."""
        await self._write("DELETE FROM streaming WHERE answer_key = ?", (key,))

    async def streaming_answers(self, platform: str) -> list[StreamingAnswer]:
        """The answers recorded as streaming on `platform`, oldest first."""
        rows = await self._read(
            f"SELECT {STREAMING_COLUMNS} FROM streaming WHERE platform = ?"
            " ORDER BY updated_at, answer_key",
            (platform,),
        )
        return streaming_from_rows(platform, rows)

    async def record_tokens(
        self,
        turn_id: int,
        *,
        user_scope: str,
        prompt_tokens: int,
        completion_tokens: int,
        estimated: bool,
        created_at: float,
    ) -> None:
        """Store what an answer used; raises `TurnNotFoundError` when the turn is unknown."""
        await self._write(
            "INSERT INTO turn_tokens (turn_id, user_scope, prompt_tokens, completion_tokens, "
            "estimated, created_at) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (turn_id) DO UPDATE SET prompt_tokens = excluded.prompt_tokens, "
            "completion_tokens = excluded.completion_tokens, estimated = excluded.estimated",
            (
                turn_id,
                user_scope,
                int(prompt_tokens),
                int(completion_tokens),
                int(estimated),
                float(created_at),
            ),
            turn_id=turn_id,
        )

    async def tokens_since(self, user_scope: str, since: float) -> int:
        """Tokens of the user's answers stored at or after `since` (wall-clock seconds)."""
        rows = await self._read(
            "SELECT COALESCE(SUM(prompt_tokens + completion_tokens), 0) FROM turn_tokens "
            "WHERE user_scope = ? AND created_at >= ?",
            (user_scope, float(since)),
        )
        return int(rows[0][0])

    async def tokens_of_turns(self, turn_ids: Sequence[int]) -> int:
        """Tokens of the answers among `turn_ids` (turns without a count add nothing)."""
        total = 0
        ids = list(turn_ids)
        for start in range(0, len(ids), 500):  # within SQLite's limit of bound parameters
            chunk = ids[start : start + 500]
            marks = ", ".join("?" for _ in chunk)
            rows = await self._read(
                "SELECT COALESCE(SUM(prompt_tokens + completion_tokens), 0) FROM turn_tokens "
                f"WHERE turn_id IN ({marks})",
                chunk,
            )
            total += int(rows[0][0])
        return total

    async def add_images(self, turn_id: int, images: Sequence[tuple[str, bytes]]) -> None:
        """Keep images (content type, bytes) with a turn; `TurnNotFoundError` when unknown."""
        for content_type, data in images:
            await self._write(
                "INSERT INTO turn_images (turn_id, content_type, data) VALUES (?, ?, ?)",
                (turn_id, content_type, data),
                turn_id=turn_id,
            )

    async def images_of(self, turn_ids: Sequence[int]) -> dict[int, list[tuple[str, bytes]]]:
        """The images kept with each of `turn_ids` that has any, in the order they were added."""
        rows: list[Any] = []
        ids = list(turn_ids)
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ", ".join("?" for _ in chunk)
            rows += await self._read(
                f"SELECT turn_id, content_type, data FROM turn_images WHERE turn_id IN ({marks}) "
                "ORDER BY id",
                chunk,
            )
        return images_by_turn(rows)

    async def _check_writable(self) -> None:
        """Create the directory when missing; `StoreOpenFailed` when anything is unwritable."""
        if self._path == MEMORY or self._path.startswith("file:"):
            return
        path = Path(self._path)
        try:
            await asyncio.to_thread(path.parent.mkdir, parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreOpenFailed(
                self._path,
                f"cannot be created: its directory {path.parent} cannot be made "
                f"({exc.strerror or exc})",
                detail=repr(exc),
            ) from exc
        problem = await asyncio.to_thread(unwritable_part, path)
        if problem is not None:
            raise StoreOpenFailed(self._path, problem)

    def _open_failed(self, exc: sqlite3.Error) -> BaseException:
        typed = unavailable_error(exc)
        if typed is None:
            return exc
        return StoreOpenFailed(self._path, _AT_OPEN[type(typed)], detail=typed.detail)

    async def _configure(self, conn: aiosqlite.Connection) -> None:
        await conn.execute(f"PRAGMA busy_timeout = {round(self._busy_timeout * 1000)}")
        await conn.execute("PRAGMA foreign_keys = ON")
        await conn.execute_fetchall("PRAGMA journal_mode = WAL")
        await conn.execute("PRAGMA synchronous = NORMAL")

    def _connection(self) -> aiosqlite.Connection:
        if self._conn is None:
            raise StoreError("store is not open; call `await store.open()` first")
        return self._conn

    async def _read(self, sql: str, params: Iterable[Any]) -> list[Any]:
        async with self._lock:
            conn = self._connection()
            try:
                return list(await conn.execute_fetchall(sql, tuple(params)))
            except sqlite3.Error as exc:
                typed = unavailable_error(exc)
                if typed is None:
                    raise
                raise typed from exc

    async def _write(
        self, sql: str, params: Iterable[Any], *, turn_id: int | None = None
    ) -> list[Any]:
        """Run one autocommitted statement; a foreign-key failure names `turn_id` as missing."""
        async with self._lock:
            conn = self._connection()
            try:
                return list(await conn.execute_fetchall(sql, tuple(params)))
            except sqlite3.IntegrityError as exc:
                if turn_id is not None and _is_foreign_key_error(exc):
                    raise TurnNotFoundError(turn_id) from exc
                raise
            except sqlite3.Error as exc:
                typed = unavailable_error(exc)
                if typed is None:
                    raise
                raise typed from exc
