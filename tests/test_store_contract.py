"""The store contract: every `ConversationStore` backend (SQLite and PostgreSQL) behaves alike.

Each test runs once per backend over the `store` (or `store_url`) fixture: turns and branches,
links, heads, preferences, streaming records, restarts, use outside open/close and concurrency.
Backend-only behaviour (migrations, pragmas, faults, URLs) is in test_store_sqlite.py and
test_store_postgres.py. PostgreSQL tests skip with the reason when the server is not reachable
(and fail in CI, G4F_BRIDGE_REQUIRE_SERVICES=1).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from core.store.base import (
    ChatKey,
    ConversationStore,
    Head,
    MessageKey,
    Role,
    StoreError,
    StreamingAnswer,
    Turn,
    TurnNotFoundError,
    open_store,
)

T0 = 1_800_000_000.0
CHAT = ChatKey("alpha", "100")


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a store of each backend lives; a fresh, empty one for every test."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.sqlite3'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[ConversationStore]:
    s = open_store(store_url)
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


async def check_version_1_data_is_kept(store: ConversationStore) -> list[Turn]:
    """After upgrading a version-1 database holding turns 1 and 2 (message 7 and the head of
    CHAT showing turn 2): that data is still there and preferences (version 2) work. Returns
    the chain ending at turn 2."""
    chain = await store.chain(2, limit=10)
    assert chain == [
        Turn(1, None, "user", "old question", None, T0),
        Turn(2, 1, "assistant", "old answer", "m0", T0 + 1),
    ]
    assert await store.turn_for_message(MessageKey("alpha", "100", "7")) == 2
    assert await store.get_head(CHAT) == Head(2, T0 + 1)
    await store.set_preference("chat:alpha:100", "model", "m1")
    assert await store.get_preference("chat:alpha:100", "model") == "m1"
    return chain


def streaming(question: Turn, chat: ChatKey = CHAT, **changes: object) -> StreamingAnswer:
    values: dict[str, object] = {
        "chat": chat,
        "user_id": "u7",
        "question_id": question.id,
        "model": "m1",
        "messages": (("501", "Once upon a time ▌"),),
        "updated_at": T0,
        "answered": True,
    }
    values.update(changes)
    return StreamingAnswer(**values)  # type: ignore[arg-type]


# --- turns and chains ---------------------------------------------------------------------


async def test_add_turn_returns_the_stored_turn(store: ConversationStore) -> None:
    turn = await store.add_turn(
        parent_id=None, role="system", content="be brief", model=None, created_at=T0
    )
    assert turn == Turn(
        id=turn.id, parent_id=None, role="system", content="be brief", model=None, created_at=T0
    )
    assert await store.get_turn(turn.id) == turn
    assert await store.get_turn(turn.id + 1000) is None


async def test_chain_is_oldest_first_and_limited_to_the_newest(
    store: ConversationStore,
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


async def test_two_children_of_one_turn_fork_two_chains(store: ConversationStore) -> None:
    root = await add(store, None, "question")
    first = await add(store, root, "answer one", "assistant")
    second = await add(store, root, "answer two", "assistant")
    follow = await add(store, first, "follow-up")

    assert [t.id for t in await store.chain(follow.id, limit=10)] == [root.id, first.id, follow.id]
    assert [t.id for t in await store.chain(second.id, limit=10)] == [root.id, second.id]


async def test_set_turn_content_replaces_the_text(store: ConversationStore) -> None:
    turn = await add(store, None, "", "assistant")
    await store.set_turn_content(turn.id, "final answer")
    stored = await store.get_turn(turn.id)
    assert stored is not None
    assert stored.content == "final answer"
    assert stored.model == "m1"


async def test_writes_naming_an_unknown_turn_raise(store: ConversationStore) -> None:
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


async def test_unknown_role_is_refused(store: ConversationStore) -> None:
    with pytest.raises(ValueError, match="role"):
        await store.add_turn(
            parent_id=None,
            role="tool",  # type: ignore[arg-type]
            content="x",
            model=None,
            created_at=T0,
        )


# --- message links ------------------------------------------------------------------------


async def test_link_lookup_and_overwrite(store: ConversationStore) -> None:
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
    store: ConversationStore,
) -> None:
    t = await add(store, None, "q")
    await store.link_message(MessageKey("alpha", "100", "1"), t.id)
    assert await store.turn_for_message(MessageKey("beta", "100", "1")) is None
    assert await store.turn_for_message(MessageKey("alpha", "101", "1")) is None
    assert await store.turn_for_message(MessageKey("alpha", "100", "2")) is None


# --- heads --------------------------------------------------------------------------------


async def test_head_set_get_overwrite_and_clear(store: ConversationStore) -> None:
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


async def test_preferences_set_overwrite_delete(store: ConversationStore) -> None:
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


async def test_empty_preference_value_is_kept(store: ConversationStore) -> None:
    await store.set_preference("s", "system_prompt", "")
    assert await store.get_preference("s", "system_prompt") == ""


# --- tokens and images ----------------------------------------------------------------------


async def test_tokens_are_kept_per_turn_per_user_and_by_time(
    store: ConversationStore,
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


async def test_images_are_kept_with_their_turn_in_order(store: ConversationStore) -> None:
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


# --- streaming records ----------------------------------------------------------------------


async def test_streaming_answers_are_saved_updated_listed_and_dropped(
    store: ConversationStore,
) -> None:
    q1 = await add(store, None, "q1")
    q2 = await add(store, None, "q2")
    first = streaming(q1, updated_at=T0 + 2)
    second = streaming(q2, ChatKey("alpha", "200"), answered=False, messages=(), updated_at=T0)
    elsewhere = streaming(q1, ChatKey("beta", "100"))
    for answer in (first, second, elsewhere):
        await store.save_streaming(answer)

    assert await store.streaming_answers("alpha") == [second, first]  # oldest first
    assert await store.streaming_answers("beta") == [elsewhere]
    assert await store.streaming_answers("gamma") == []

    grown = streaming(
        q1,
        model="m2",
        messages=(("501", "Once upon a time there was"), ("502", "a «bridge» 🌉 ▌")),
        updated_at=T0 + 9,
    )
    await store.save_streaming(grown)  # the same key: updated in place
    assert await store.streaming_answers("alpha") == [second, grown]

    await store.drop_streaming(first.key)
    assert await store.streaming_answers("alpha") == [second]
    await store.drop_streaming(first.key)  # dropping again is harmless
    await store.drop_streaming("alpha:nothing:1")
    assert await store.streaming_answers("beta") == [elsewhere]


async def test_streaming_record_of_an_unknown_question_is_refused(
    store: ConversationStore,
) -> None:
    ghost = Turn(999, None, "user", "x", None, T0)
    with pytest.raises(TurnNotFoundError) as info:
        await store.save_streaming(streaming(ghost))
    assert info.value.turn_id == 999
    assert await store.streaming_answers("alpha") == []


async def test_streaming_records_survive_a_restart(store_url: str) -> None:
    first = open_store(store_url)
    await first.open()
    q = await add(first, None, "q")
    answer = streaming(q, messages=(("7", "half an answer ▌"),))
    await first.save_streaming(answer)
    await first.close()

    second = open_store(store_url)
    await second.open()
    try:
        assert await second.streaming_answers("alpha") == [answer]
    finally:
        await second.close()


# --- lifecycle ----------------------------------------------------------------------------


async def test_everything_survives_a_restart(store_url: str) -> None:
    first = open_store(store_url)
    await first.open()
    q = await add(first, None, "q")
    a = await add(first, q, "a", "assistant")
    await first.set_turn_content(a.id, "final")
    await first.link_message(MessageKey("alpha", "100", "9"), a.id)
    await first.set_head(CHAT, a.id, T0 + 1)
    await first.set_preference("user:alpha:7", "model", "m2")
    await first.close()

    second = open_store(store_url)
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


async def test_use_before_open_or_after_close_raises(store_url: str) -> None:
    s = open_store(store_url)
    with pytest.raises(StoreError, match="not open"):
        await s.get_turn(1)
    await s.open()
    with pytest.raises(StoreError, match="already open"):
        await s.open()
    await s.close()
    await s.close()  # idempotent
    with pytest.raises(StoreError, match="not open"):
        await s.set_preference("s", "n", "v")


# --- concurrency --------------------------------------------------------------------------


async def test_200_concurrent_add_turn_all_persist_with_unique_ids(store_url: str) -> None:
    s = open_store(store_url)
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
    s = open_store(store_url)
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


def test_keys_render_as_strings() -> None:
    assert str(CHAT) == "alpha:100"
    key = MessageKey("alpha", "100", "7")
    assert str(key) == "alpha:100:7"
    assert key.chat == CHAT
