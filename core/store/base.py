"""The conversation store: what the bridge remembers between messages and across restarts.

Conversations are trees of turns. Every turn points at its parent, so replying to an older
message forks a new branch and `chain` walks one branch back to its root. Platform messages are
linked to the turn they show, private chats remember their latest turn (the head), and users or
chats keep small preferences (a chosen model, a system prompt).

This module holds the interface, its data types and the few helpers every backend shares (turning
result rows into data types, the schema-version check); implementations live next to it and are
chosen by URL through `open_store`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, get_args

Role = Literal["system", "user", "assistant"]

ROLES: frozenset[str] = frozenset(get_args(Role))


class TurnNotFoundError(LookupError):
    """A write referred to a turn id the store does not hold."""

    def __init__(self, turn_id: int) -> None:
        super().__init__(f"no turn with id {turn_id}")
        self.turn_id = turn_id


class StoreError(RuntimeError):
    """The store cannot be used (not opened, closed, or written by a newer version)."""


@dataclass(frozen=True, slots=True)
class ChatKey:
    """One chat on one platform."""

    platform: str
    chat_id: str

    def __str__(self) -> str:
        return f"{self.platform}:{self.chat_id}"


@dataclass(frozen=True, slots=True)
class MessageKey:
    """One message in one chat on one platform."""

    platform: str
    chat_id: str
    message_id: str

    @property
    def chat(self) -> ChatKey:
        """The chat this message belongs to."""
        return ChatKey(self.platform, self.chat_id)

    def __str__(self) -> str:
        return f"{self.platform}:{self.chat_id}:{self.message_id}"


@dataclass(frozen=True, slots=True)
class Turn:
    """One message of a conversation; `created_at` is wall-clock seconds since the epoch."""

    id: int
    parent_id: int | None
    role: Role
    content: str
    model: str | None
    created_at: float


@dataclass(frozen=True, slots=True)
class Head:
    """A chat's latest turn and when it was set (wall-clock seconds)."""

    turn_id: int
    updated_at: float


@dataclass(frozen=True, slots=True)
class StreamingAnswer:
    """An answer whose messages still show a streaming marker: what each of them shows, so that
    after a crash the messages can be ended in place (see `Bridge.end_interrupted`)."""

    chat: ChatKey
    user_id: str
    question_id: int  # the user turn it answers
    model: str
    messages: tuple[tuple[str, str], ...]  # (message id, the text it shows), in order
    updated_at: float
    answered: bool = True  # the messages show answer text (not only a placeholder or status)

    @property
    def key(self) -> str:
        return f"{self.chat}:{self.question_id}"


def as_role(value: str) -> Role:
    """Return `value` as a `Role`, or raise ValueError for anything else."""
    if value == "system":
        return "system"
    if value == "user":
        return "user"
    if value == "assistant":
        return "assistant"
    raise ValueError(f"unknown role {value!r}; expected one of {sorted(ROLES)}")


# The columns of a turn, in the order `turn_from_row` reads them.
TURN_COLUMNS = "id, parent_id, role, content, model, created_at"


def chain_sql(turn_param: str, limit_param: str) -> str:
    """The query for `ConversationStore.chain`: the branch ending at the turn `turn_param`
    names, at most `limit_param` turns, oldest first; the parameters are the dialect's
    placeholders (``$1`` or ``?``)."""
    return f"""
WITH RECURSIVE branch({TURN_COLUMNS}, depth) AS (
    SELECT {TURN_COLUMNS}, 1 FROM turns WHERE id = {turn_param}
    UNION ALL
    SELECT t.id, t.parent_id, t.role, t.content, t.model, t.created_at, b.depth + 1
    FROM turns AS t JOIN branch AS b ON t.id = b.parent_id
    WHERE b.depth < {limit_param}
)
SELECT {TURN_COLUMNS} FROM branch ORDER BY depth DESC
"""


def turn_from_row(row: Any) -> Turn:
    """A `Turn` from a row of `TURN_COLUMNS`."""
    return Turn(
        id=int(row[0]),
        parent_id=None if row[1] is None else int(row[1]),
        role=as_role(str(row[2])),
        content=str(row[3]),
        model=None if row[4] is None else str(row[4]),
        created_at=float(row[5]),
    )


# The columns of a streaming record, in the order `streaming_from_rows` reads them.
STREAMING_COLUMNS = "chat_id, user_id, question_id, model, messages, answered, updated_at"


def streaming_from_rows(platform: str, rows: Iterable[Any]) -> list[StreamingAnswer]:
    """The `StreamingAnswer`s of rows of `STREAMING_COLUMNS` (messages as JSON) recorded on
    `platform`."""
    return [
        StreamingAnswer(
            ChatKey(platform, str(chat_id)),
            str(user_id),
            int(question_id),
            str(model),
            tuple((str(m), str(t)) for m, t in json.loads(messages)),
            float(updated_at),
            bool(answered),
        )
        for chat_id, user_id, question_id, model, messages, answered, updated_at in rows
    ]


def images_by_turn(rows: Iterable[Any]) -> dict[int, list[tuple[str, bytes]]]:
    """Rows (turn_id, content type, data) as each turn's images, in the rows' order."""
    found: dict[int, list[tuple[str, bytes]]] = {}
    for row in rows:
        found.setdefault(int(row[0]), []).append((str(row[1]), bytes(row[2])))
    return found


def check_schema_version(version: int, supported: int) -> None:
    """Raise `StoreError` when the database's schema `version` is newer than the code's."""
    if version > supported:
        raise StoreError(
            f"database schema version {version} is newer than this code supports "
            f"({supported}); upgrade g4f-bridge"
        )


class ConversationStore(Protocol):
    """Persistent conversations, message links, chat heads and preferences.

    Call `open` before anything else and `close` when done. Writes that name a turn
    (`add_turn` with a parent, `set_turn_content`, `link_message`, `set_head`) raise
    `TurnNotFoundError` when the turn does not exist. Safe for concurrent use by many tasks.

    When the storage cannot be used right now (locked by another writer, read-only, a disk
    error) every method raises a `core.errors.StoreUnavailable` (`StoreBusy`, `StoreReadOnly`,
    `StoreDiskError`), whose `user_message` is fit to show; `open` raises `StoreOpenFailed`,
    whose message names BRIDGE_STORE_URL, when the storage cannot be opened for writing.
    """

    async def open(self) -> None:
        """Connect and bring the storage up to date; must be called once before use."""
        ...

    async def close(self) -> None:
        """Release the storage; calling it again does nothing."""
        ...

    async def add_turn(
        self,
        *,
        parent_id: int | None,
        role: Role,
        content: str,
        model: str | None,
        created_at: float,
    ) -> Turn:
        """Store a new turn under `parent_id` (None starts a conversation) and return it."""
        ...

    async def set_turn_content(self, turn_id: int, content: str) -> None:
        """Replace a turn's text (an answer's final text after streaming)."""
        ...

    async def get_turn(self, turn_id: int) -> Turn | None:
        """The turn with this id, or None."""
        ...

    async def chain(self, turn_id: int, *, limit: int) -> list[Turn]:
        """The branch ending at `turn_id`, oldest first, at most its `limit` newest turns.

        Empty when the turn does not exist or `limit` is not positive.
        """
        ...

    async def link_message(self, key: MessageKey, turn_id: int) -> None:
        """Record that a platform message shows this turn; re-linking a key overwrites it.

        Several messages may show one turn (a long answer split into parts).
        """
        ...

    async def turn_for_message(self, key: MessageKey) -> int | None:
        """The turn a platform message shows, or None."""
        ...

    async def get_head(self, chat: ChatKey) -> Head | None:
        """The chat's latest conversation turn, or None."""
        ...

    async def set_head(self, chat: ChatKey, turn_id: int, updated_at: float) -> None:
        """Make `turn_id` the chat's latest conversation turn."""
        ...

    async def clear_head(self, chat: ChatKey) -> None:
        """Forget the chat's latest turn, so the next message starts a new conversation."""
        ...

    async def get_preference(self, scope: str, name: str) -> str | None:
        """A stored preference; `scope` is an opaque string built by the caller."""
        ...

    async def set_preference(self, scope: str, name: str, value: str | None) -> None:
        """Store a preference; None deletes it."""
        ...

    async def save_streaming(self, answer: StreamingAnswer) -> None:
        """Record (or update) an answer that is streaming now."""
        ...

    async def drop_streaming(self, key: str) -> None:
        """The answer with `key` is no longer streaming (nothing happens when unknown)."""
        ...

    async def streaming_answers(self, platform: str) -> list[StreamingAnswer]:
        """The answers recorded as streaming on `platform` (left by a process that died)."""
        ...

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
        """Store the tokens an answer (an assistant turn) used, for the user who asked
        (`user_scope`, opaque); recording a turn again replaces its counts."""
        ...

    async def tokens_since(self, user_scope: str, since: float) -> int:
        """The tokens of the user's answers recorded at or after `since` (wall-clock seconds)."""
        ...

    async def tokens_of_turns(self, turn_ids: Sequence[int]) -> int:
        """The tokens of those of `turn_ids` that have a count (e.g. one conversation's)."""
        ...

    async def add_images(self, turn_id: int, images: Sequence[tuple[str, bytes]]) -> None:
        """Keep images (content type, bytes) with a turn (a user's question)."""
        ...

    async def images_of(self, turn_ids: Sequence[int]) -> dict[int, list[tuple[str, bytes]]]:
        """The images kept with each of `turn_ids` that has any, oldest first."""
        ...


def _open_sqlite(url: str) -> ConversationStore:
    from core.store.sqlite import SqliteConversationStore, sqlite_path_from_url

    return SqliteConversationStore(sqlite_path_from_url(url))


def _check_sqlite(url: str) -> None:
    from core.store.sqlite import sqlite_path_from_url

    sqlite_path_from_url(url)


def _open_postgres(url: str) -> ConversationStore:
    from core.store.postgres import PostgresConversationStore

    return PostgresConversationStore(url)


def _check_postgres(url: str) -> None:
    from core.store.postgres import parse_postgres_url

    parse_postgres_url(url)


# scheme -> (check the URL, build the store). A new backend registers here.
_BACKENDS: dict[str, tuple[Callable[[str], None], Callable[[str], ConversationStore]]] = {
    "sqlite": (_check_sqlite, _open_sqlite),
    "postgresql": (_check_postgres, _open_postgres),
    "postgres": (_check_postgres, _open_postgres),
}
EXAMPLE_URL = "sqlite:///./data/g4f-bridge.sqlite3"
_NOT_YET = {"mysql": "MySQL"}


def check_store_url(url: str) -> str:
    """The URL's scheme when a store exists for it; else ValueError saying what to use.

    Messages name the scheme, never the rest of the URL (it may hold a password).
    """
    scheme, separator, _ = url.partition("://")
    scheme = scheme.lower()
    if not separator or not scheme:
        raise ValueError(
            f"has no scheme; use a URL such as {EXAMPLE_URL} (supported: {_supported()})"
        )
    backend = _BACKENDS.get(scheme)
    if backend is None:
        if scheme in _NOT_YET:
            raise ValueError(
                f"{_NOT_YET[scheme]} ({scheme}://) is not supported yet; "
                f"supported: {_supported()}, e.g. {EXAMPLE_URL}"
            )
        raise ValueError(f"unsupported store URL scheme {scheme!r}; supported: {_supported()}")
    backend[0](url)
    return scheme


def open_store(url: str) -> ConversationStore:
    """Build the store a URL names; the caller still has to `await store.open()`.

    Supported: ``sqlite:///relative/path.sqlite3``, ``sqlite:////absolute/path.sqlite3``,
    ``sqlite:///:memory:`` and ``postgresql://user:password@host:5432/database`` (or
    ``postgres://``). An unknown scheme raises ValueError naming the supported ones.
    """
    return _BACKENDS[check_store_url(url)][1](url)


def _supported() -> str:
    return ", ".join(f"{name}://" for name in sorted(_BACKENDS))
